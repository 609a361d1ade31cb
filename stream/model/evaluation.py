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


BOOTSTRAP_REPS = 2000
AGE_BANDS: tuple[tuple[str, int, int], ...] = (("<50", 0, 49), ("50-60", 50, 60), (">60", 61, 200))  # inclusive


def bootstrap_auc_ci(y: np.ndarray, p: np.ndarray, reps: int = BOOTSTRAP_REPS, seed: int = 42) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the AUC: ``reps`` resamples of the patients, with replacement.

    Resample ``b`` is ``np.random.default_rng(seed).integers(0, n, n)`` drawn ``b``-th; a resample
    with one class only is drawn again (the next draw).
    """
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=float)
    rng = np.random.default_rng(seed)
    aucs: list[float] = []
    while len(aucs) < reps:
        idx = rng.integers(0, len(y), len(y))
        if y[idx].all() or not y[idx].any():
            continue
        aucs.append(roc_auc(y[idx], p[idx]))
    lo, hi = np.percentile(aucs, [2.5, 97.5])
    return float(lo), float(hi)


def calibration_fit(y: np.ndarray, p: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """(intercept, slope) of the logistic recalibration ``logit P(y) = a + b logit(p)`` (Newton's method).

    A well-calibrated model has intercept 0 and slope 1; a slope below 1 means
    predictions too extreme (over-fitting), above 1 too timid.
    """
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    x = np.column_stack([np.ones_like(p), np.log(p / (1 - p))])
    beta = np.zeros(2)
    for _ in range(iterations):
        mu = 1 / (1 + np.exp(-(x @ beta)))
        gradient = x.T @ (y - mu)
        hessian = (x * (mu * (1 - mu))[:, None]).T @ x
        step = np.linalg.solve(hessian, gradient)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-12:
            break
    return float(beta[0]), float(beta[1])


def _group_figures(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    flagged = p > threshold
    both = bool(y.any() and (~y).any())
    return {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "auc": round(roc_auc(y, p), 4) if both else None,
        "sensitivity": round(float(flagged[y].mean()), 4) if y.any() else None,
        "specificity": round(float((~flagged[~y]).mean()), 4) if (~y).any() else None,
    }


def subgroup_figures(
    y: np.ndarray, p: np.ndarray, sex: list[str | None], age: list[int | None], threshold: float = 0.5
) -> dict[str, Any]:
    """AUC, sensitivity and specificity (prediction = p > ``threshold``) per sex and per age band, with gaps.

    A gap is the largest minus the smallest figure across the groups of one kind.
    """
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=float)
    groups: dict[str, dict[str, Any]] = {"sex": {}, "age_band": {}}
    for value in sorted({s for s in sex if s is not None}):
        mask = np.array([s == value for s in sex])
        groups["sex"][value] = _group_figures(y[mask], p[mask], threshold)
    for name, lo, hi in AGE_BANDS:
        mask = np.array([a is not None and lo <= a <= hi for a in age])
        groups["age_band"][name] = _group_figures(y[mask], p[mask], threshold)
    gaps: dict[str, dict[str, float | None]] = {}
    for kind, members in groups.items():
        gaps[kind] = {}
        for figure in ("auc", "sensitivity", "specificity"):
            values = [m[figure] for m in members.values() if m[figure] is not None]
            gaps[kind][figure] = round(max(values) - min(values), 4) if len(values) > 1 else None
    return {"threshold": threshold, **groups, "gaps": gaps}
