"""The scorer's progress file (pure Python: the exporter reads it without pyspark).

The scorer's listener writes a small JSON file beside the checkpoint
(atomically: write, then rename); the sidecar exporter reads it. Totals in the
file are cumulative across scorer restarts, so they export as Prometheus counters.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from stream.contract.codes import ERROR_CODES
from stream.pipeline.columns import LATENCY_BUCKETS


def read_progress(path: Path) -> dict[str, Any] | None:
    """The last progress written, or None."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_progress(path: Path, data: dict[str, Any]) -> None:
    """Atomic replace, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".progress-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def empty_totals() -> dict[str, Any]:
    """Zeroed cumulative counters."""
    return {
        "batches": 0,
        "input_rows": 0,
        "predictions": 0,
        "dead_letters": dict.fromkeys(ERROR_CODES, 0),
        "latency_buckets": dict.fromkeys([str(b) for b in LATENCY_BUCKETS], 0),
        "latency_count": 0,
        "latency_sum_seconds": 0.0,
    }
