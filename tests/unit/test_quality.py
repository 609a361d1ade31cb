"""Quality figures from outcome feedback: AUC, accuracy, Brier against plain definitions, and the window."""

from __future__ import annotations

import random

import pytest

from stream.monitor.quality import (
    add_quality,
    add_to_window,
    auc,
    empty_quality,
    figures,
    subgroup_figures,
    window_quality,
)


def pairwise_auc(pairs: list[tuple[float, int]]) -> float:
    """The definition: over every (positive, negative) pair, 1 if the positive scores higher, 1/2 on a tie."""
    pos = [p for p, y in pairs if y == 1]
    neg = [p for p, y in pairs if y == 0]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def counts_of(pairs: list[tuple[float, int]], predictions: list[int]) -> dict:
    q = empty_quality()
    for (p, y), pred in zip(pairs, predictions, strict=True):
        add_quality(q, {"matched": 1, "tp": int(y == 1 and pred == 1), "fp": int(y == 0 and pred == 1),
                        "tn": int(y == 0 and pred == 0), "fn": int(y == 1 and pred == 0),
                        "brier_sum": (p - y) ** 2, "histogram": {repr(p): [y, 1 - y]}})
    return q


def test_figures_equal_their_definitions_with_ties():
    rng = random.Random(5)
    pairs = [(round(rng.random(), 2), int(rng.random() < 0.45)) for _ in range(700)]  # 2 decimals: many ties
    predictions = [int(p >= 0.5) for p, _ in pairs]
    fig = figures(counts_of(pairs, predictions))
    n = len(pairs)
    assert fig["outcomes"] == n
    assert fig["auc"] == pytest.approx(pairwise_auc(pairs), abs=1e-12)
    assert fig["accuracy"] == sum(int(p == y) for p, (_, y) in zip(predictions, pairs, strict=True)) / n
    assert fig["brier"] == pytest.approx(sum((p - y) ** 2 for p, y in pairs) / n, rel=1e-12)
    tp = sum(1 for pr, (_, y) in zip(predictions, pairs, strict=True) if pr == 1 and y == 1)
    assert fig["sensitivity"] == tp / sum(y for _, y in pairs)


def test_undefined_figures_are_none_not_zero():
    fig = figures(counts_of([(0.9, 1), (0.8, 1)], [1, 1]))
    assert fig["auc"] is None and fig["specificity"] is None and fig["accuracy"] == 1.0
    assert figures(empty_quality())["accuracy"] is None
    assert auc({"0.5": [3, 3]}) == 0.5, "all tied: chance"


def test_the_quality_window_keeps_its_length_per_group():
    one = counts_of([(0.7, 1)], [1])
    buckets: list = []
    for t in range(0, 3 * 86400, 600):  # every 10 min for 3 days; a 1-day window in 24-min buckets
        buckets = add_to_window(buckets, {"all": one, "sex=Male": one}, 1e6 + t, 1440.0, 86400.0)
    assert len(buckets) <= 62
    total = window_quality(buckets, 1e6 + 3 * 86400 - 600, 86400.0, 1440.0)
    assert 144 <= total["all"]["matched"] <= 147 and total["all"]["histogram"] == {"0.7": [total["all"]["matched"], 0]}
    assert total["sex=Male"] == total["all"]


def test_subgroup_figures_and_gaps():
    rng = random.Random(8)
    female = [(round(rng.random(), 3), int(rng.random() < 0.3)) for _ in range(200)]
    male = [(round(rng.random(), 3), int(rng.random() < 0.6)) for _ in range(300)]
    groups = {"sex=Female": counts_of(female, [int(p > 0.5) for p, _ in female]),
              "sex=Male": counts_of(male, [int(p > 0.5) for p, _ in male]),
              "age_band=<50": counts_of(female[:10], [1] * 10)}
    out = subgroup_figures(groups)
    assert set(out) == {"sex", "age_band"}
    assert out["sex"]["groups"]["Female"]["auc"] == pytest.approx(pairwise_auc(female), abs=1e-12)
    assert out["sex"]["gaps"]["auc"] == pytest.approx(abs(pairwise_auc(female) - pairwise_auc(male)), abs=1e-12)
    assert out["age_band"]["gaps"]["auc"] is None, "one band: no gap"
