"""The model's quality from outcome feedback: labelled counts, their window, and the figures (pure Python).

The feedback query (``stream.quality``) joins each confirmed outcome to its
prediction and hands every micro-batch's labelled counts here: the confusion
matrix, the Brier sum, and a histogram of the exact probabilities by outcome,
from which the AUC is exact (ties count one half). Counts are kept per group:
``all``, and per sex and age band (``sex=Female``, ``age_band=50-60``) when the
outcomes say them, the model card's subgroups. They are kept as a window of
time buckets in the feedback progress file, which the exporter reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from stream.monitor import window


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


ALL = "all"


def add_groups(into: dict[str, Any], batch: Mapping[str, Any]) -> None:
    """Add one batch's labelled counts per group (``all``, ``sex=...``, ``age_band=...``)."""
    for group, counts in batch.items():
        add_quality(into.setdefault(group, empty_quality()), counts)


def subgroup_figures(groups: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per kind (sex, age band): each group's figures, and the gap (largest - smallest) of each figure."""
    out: dict[str, Any] = {}
    for name, counts in sorted(groups.items()):
        if name == ALL or "=" not in name:
            continue
        kind, value = name.split("=", 1)
        out.setdefault(kind, {"groups": {}, "gaps": {}})["groups"][value] = figures(counts)
    for kind in out.values():
        for figure in ("auc", "sensitivity", "specificity", "accuracy"):
            values = [g[figure] for g in kind["groups"].values() if g[figure] is not None]
            kind["gaps"][figure] = max(values) - min(values) if len(values) > 1 else None
    return out


# add a batch's counts (per group) to its time bucket; the sum of the buckets in the window ending now
add_to_window = partial(window.add_to_window, empty=dict, add=add_groups)
window_quality = partial(window.window_total, empty=dict, add=add_groups)
