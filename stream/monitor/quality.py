"""The model's quality from outcome feedback: labelled counts, their window, and the figures (pure Python).

The feedback query (``stream.quality``) joins each confirmed outcome to its
prediction and hands every micro-batch's labelled counts here: the confusion
matrix, the Brier sum, and a histogram of the exact probabilities by outcome,
from which the AUC is exact (ties count one half). The counts are kept as a
window of time buckets in the feedback progress file, which the exporter reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def empty_quality() -> dict[str, Any]:
    """Labelled counts of no outcomes."""
    return {"matched": 0, "tp": 0, "fp": 0, "tn": 0, "fn": 0, "brier_sum": 0.0, "histogram": {}}


def add_quality(into: dict[str, Any], batch: Mapping[str, Any]) -> None:
    """Add one batch's labelled counts; the histogram maps repr(probability) to [positives, negatives]."""
    for k in ("matched", "tp", "fp", "tn", "fn"):
        into[k] += int(batch[k])
    into["brier_sum"] += float(batch["brier_sum"])
    hist = into["histogram"]
    for p, (pos, neg) in batch["histogram"].items():
        have = hist.setdefault(p, [0, 0])
        have[0] += int(pos)
        have[1] += int(neg)


def auc(histogram: Mapping[str, Sequence[int]]) -> float | None:
    """Area under the ROC curve: P(p of a positive > p of a negative), ties one half; None without both."""
    cells = sorted((float(p), int(c[0]), int(c[1])) for p, c in histogram.items())
    positives = sum(c[1] for c in cells)
    negatives = sum(c[2] for c in cells)
    if positives == 0 or negatives == 0:
        return None
    below, wins = 0, 0.0
    for _, pos, neg in cells:
        wins += pos * (below + 0.5 * neg)
        below += neg
    return wins / (positives * negatives)


def figures(q: Mapping[str, Any]) -> dict[str, float | None]:
    """Accuracy, sensitivity, specificity, Brier score and AUC of labelled counts (None where undefined)."""
    n = q["matched"]

    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    return {
        "outcomes": float(n),
        "accuracy": ratio(q["tp"] + q["tn"], n),
        "sensitivity": ratio(q["tp"], q["tp"] + q["fn"]),
        "specificity": ratio(q["tn"], q["tn"] + q["fp"]),
        "brier": ratio(q["brier_sum"], n),
        "auc": auc(q["histogram"]),
    }


def add_to_window(
    buckets: list[list[Any]], batch: Mapping[str, Any], now: float, bucket_s: float, window_s: float
) -> list[list[Any]]:
    """Add a batch's counts to its time bucket ([start, counts]); drop buckets older than the window."""
    start = math.floor(now / bucket_s) * bucket_s
    kept = [b for b in buckets if b[0] > now - window_s - bucket_s]
    if not kept or kept[-1][0] != start:
        kept.append([start, empty_quality()])
    add_quality(kept[-1][1], batch)
    return kept


def window_quality(buckets: Sequence[Sequence[Any]], now: float, window_s: float, bucket_s: float) -> dict[str, Any]:
    """The sum of the buckets that overlap the window ending now."""
    total = empty_quality()
    for start, counts in buckets:
        if start > now - window_s - bucket_s:
            add_quality(total, counts)
    return total
