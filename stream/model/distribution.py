"""The training distribution: per-field decile bins or category frequencies, kept in ``model.json``.

It is the reference a live stream's inputs are compared with (drift), and the
source of ``heartrisk produce --source synthetic``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from stream.contract.schema import clinical_fields
from stream.errors import ConfigError


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


class SyntheticPatients:
    """Draws patients field by field from a training distribution (``training_distribution``).

    A numeric value is drawn in a bin chosen by the bin's count, and lands in that
    bin as ``numpy.histogram`` drew it (``[lo, hi)``, the last closed): a whole
    number when the bin holds one, as the data set's values all are. So a large
    draw reproduces the training bins' shares, which the drift metrics compare
    with. ``shift`` adds to numeric fields (drift on purpose), kept within the
    event contract's range.
    """

    def __init__(self, distribution: dict[str, Any], seed: int = 7, shift: Mapping[str, float] | None = None) -> None:
        self.dist = distribution
        self.rng = random.Random(seed)
        self.shift = dict(shift or {})
        fields = {f.name: f for f in clinical_fields()}
        unknown = [n for n in self.shift if n not in fields or not fields[n].is_numeric]
        if unknown:
            numeric = [n for n, f in fields.items() if f.is_numeric]
            msg = f"cannot shift {unknown}: only the numeric clinical fields can be ({', '.join(numeric)})"
            raise ConfigError(msg)

    def _number(self, edges: Sequence[float], i: int) -> float:
        lo, hi = edges[i], edges[i + 1]
        last = i == len(edges) - 2
        whole = [k for k in range(math.ceil(lo), math.floor(hi) + 1) if k < hi or last]
        return float(self.rng.choice(whole)) if whole else self.rng.uniform(lo, hi)

    def draw(self) -> dict[str, Any]:
        """One patient."""
        out: dict[str, Any] = {}
        for f in clinical_fields():
            d = self.dist[f.name]
            if d["type"] == "numeric":
                i = self.rng.choices(range(len(d["counts"])), weights=d["counts"])[0]
                x = self._number(d["bin_edges"], i) + self.shift.get(f.name, 0.0)
                x = min(max(x, f.minimum if f.minimum is not None else x), f.maximum if f.maximum is not None else x)
                out[f.name] = int(round(x)) if f.kind == "integer" else float(x)
            else:
                cats = list(d["frequencies"])
                out[f.name] = self.rng.choices(cats, weights=list(d["frequencies"].values()))[0]
        return out
