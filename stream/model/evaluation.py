"""Model quality figures from labels and probabilities (pure numpy, no Spark).

Used by training for the model card and by the tests. The AUC is the
Mann-Whitney statistic with ties counted as half.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=float)
    pos, neg = p[y], p[~y]
    if len(pos) == 0 or len(neg) == 0:
        msg = "AUC needs both classes"
        raise ValueError(msg)
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    values = np.concatenate([pos, neg])[order]
    # average ranks for ties
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    rank_sum = ranks[: len(pos)].sum()
    return float((rank_sum - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg)))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of the probabilities."""
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def accuracy(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    """Share of correct predictions at a threshold."""
    return float(np.mean((np.asarray(p) >= threshold) == np.asarray(y, bool)))


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 5) -> list[dict[str, Any]]:
    """Observed disease rate against mean predicted probability, in equal-width bins."""
    y = np.asarray(y, float)
    p = np.asarray(p, float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (p >= lo) & ((p < hi) if hi < 1.0 else (p <= hi))
        n = int(mask.sum())
        rows.append(
            {
                "bin_low": round(float(lo), 4),
                "bin_high": round(float(hi), 4),
                "n": n,
                "mean_predicted": round(float(p[mask].mean()), 4) if n else None,
                "observed_rate": round(float(y[mask].mean()), 4) if n else None,
            }
        )
    return rows


def level_summary(y: np.ndarray, p: np.ndarray, medium: float, high: float) -> dict[str, Any]:
    """How the risk levels split the patients: count and disease rate per level."""
    y = np.asarray(y, bool)
    p = np.asarray(p, float)
    out: dict[str, Any] = {}
    for name, mask in (
        ("Low", p < medium),
        ("Medium", (p >= medium) & (p < high)),
        ("High", p >= high),
    ):
        n = int(mask.sum())
        out[name] = {
            "n": n,
            "share": round(n / len(p), 4),
            "disease_rate": round(float(y[mask].mean()), 4) if n else None,
        }
    out["sensitivity_not_low"] = round(float((p[y] >= medium).mean()), 4)
    out["specificity_not_high"] = round(float((p[~y] < high).mean()), 4)
    return out


def choose_thresholds(
    y: np.ndarray,
    p: np.ndarray,
    min_sensitivity: float = 0.95,
    min_high_ppv: float = 0.85,
) -> tuple[float, float]:
    """Pick the Medium and High thresholds on out-of-fold probabilities.

    Medium: the largest threshold that still flags (Medium or High) at least
    ``min_sensitivity`` of the diseased patients, so Low is a safe "rule-out".
    High: the smallest threshold such that at it and at every threshold above it
    at least ``min_high_ppv`` of the patients flagged High are diseased, so High
    is a confident "rule-in".
    """
    y = np.asarray(y, bool)
    p = np.asarray(p, float)
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2)
    medium = 0.01
    for t in grid:
        if (p[y] >= t).mean() >= min_sensitivity:
            medium = float(t)
    high = 0.99
    for t in grid[::-1]:
        flagged = p >= t
        if flagged.sum() < 5:
            continue
        if y[flagged].mean() < min_high_ppv:
            break
        high = float(t)
    if high <= medium:
        high = min(0.99, round(medium + 0.05, 2))
    return medium, high
