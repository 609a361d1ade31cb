"""The training distribution: per-field decile bins or category frequencies, kept in ``model.json``.

It is the reference a live stream's inputs are compared with (drift), and the
source of ``heartrisk produce --source synthetic``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from stream.contract.schema import clinical_fields


def training_distribution(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per input field: decile bins and counts for numbers, frequencies for categories."""
    out: dict[str, Any] = {}
    for f in clinical_fields():
        values = [r[f.name] for r in rows]
        present = [v for v in values if v is not None]
        missing = len(values) - len(present)
        if f.is_numeric:
            arr = np.array(present, dtype=float)
            edges = np.unique(np.quantile(arr, np.linspace(0, 1, 11)))
            counts, _ = np.histogram(arr, bins=edges)
            out[f.name] = {
                "type": "numeric",
                "bin_edges": [round(float(e), 4) for e in edges],
                "counts": [int(c) for c in counts],
                "mean": round(float(arr.mean()), 4),
                "std": round(float(arr.std(ddof=1)), 4),
                "missing": missing,
            }
        else:
            freq: dict[str, int] = {}
            for v in present:
                freq[v] = freq.get(v, 0) + 1
            out[f.name] = {
                "type": "categorical",
                "frequencies": dict(sorted(freq.items())),
                "missing": missing,
            }
    return out
