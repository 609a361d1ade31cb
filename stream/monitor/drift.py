"""Drift against the training data: bins, per-batch counts, a sliding window, and PSI (pure Python).

The reference is the model's ``training_distribution`` (``model.json``): decile
bins for numbers, frequencies for categories, and the out-of-fold share of each
risk level. Each micro-batch counts its valid events per bin inside the query
(``stream.monitor.observe``: one JVM aggregate in the same pass, no Python per
row). The listener reads the batch's bin counts (``batch_counts``) and adds them to a window
of time buckets kept in the progress file (``add_to_window``), so the window
survives restarts of either process. The exporter sums the window and computes
the population stability index per feature (``summarize``).

Bins follow ``numpy.histogram``, which made the reference: ``[e_k, e_k+1)``, the
last one closed; plus one bin below the first edge and one above the last,
expected empty. A null (a missing nullable field) is not binned: it is counted
as missing and reported as a ratio.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from stream.contract.schema import clinical_fields
from stream.monitor import window

LEVELS = ("Low", "Medium", "High")
# the floor of a bin's share in PSI, so an empty bin on either side gives a large finite term
EPSILON = 1e-4


def reference(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What the stream is compared with, from a model's metadata (JSON-ready)."""
    dist = meta.get("training_distribution") or {}
    features: dict[str, Any] = {}
    for f in clinical_fields():
        d = dist.get(f.name)
        if d is None:
            continue
        if d["type"] == "numeric":
            features[f.name] = {"kind": "numeric", "edges": list(d["bin_edges"]), "expected": [0, *d["counts"], 0]}
        else:
            cats = list(f.values) + sorted(set(d["frequencies"]) - set(f.values))
            features[f.name] = {
                "kind": "categorical", "categories": cats, "expected": [d["frequencies"].get(c, 0) for c in cats],
            }
    levels = (meta.get("metrics") or {}).get("levels") or {}
    return {
        "features": features,
        "levels": [int(levels[lv]["n"]) if lv in levels else 0 for lv in LEVELS],
        "nullable": [f.name for f in clinical_fields() if f.nullable and f.name in features],
    }


PROBABILITY_SUM = "probability_sum"
# the observation's struct of counts (``DriftCounts`` in jvm/functions): n, <field>_<cell>, risk_level_<k>
DRIFT = "drift"
LEVEL_SLOT = "risk_level"


def bins_of(spec: Mapping[str, Any]) -> int:
    """How many bins a field has: below, between and above the edges for a number; one per category."""
    return len(spec["edges"]) + 1 if spec["kind"] == "numeric" else len(spec["categories"])


def layout(ref: Mapping[str, Any]) -> dict[str, Any]:
    """What the query's drift aggregate counts (JSON-ready, for ``DriftCounts`` in jvm/functions).

    One slot per field, of ``bins + 2`` cells: the bins (a number's by its edges,
    a category's by its index), then a category training never had, then
    missing. And the risk levels, each counted at its index.
    """
    slots: list[dict[str, Any]] = []
    for name, spec in ref["features"].items():
        slot: dict[str, Any] = {"name": name, "size": bins_of(spec) + 2}
        if spec["kind"] == "numeric":
            slot["edges"] = [float(e) for e in spec["edges"]]
        else:
            slot["categories"] = [str(c) for c in spec["categories"]]
        slots.append(slot)
    return {"levels": list(LEVELS), "slots": slots}


def batch_counts(row: Mapping[str, Any], ref: Mapping[str, Any]) -> dict[str, Any]:
    """One batch's counts from its observation row: ``row[DRIFT]`` holds them per cell (see ``layout``)."""
    got: Any = row.get(DRIFT)
    d: dict[str, Any] = got.asDict() if hasattr(got, "asDict") else dict(got or {})
    n = int(d.get("n") or 0)
    features: dict[str, list[int]] = {}
    missing: dict[str, int] = {}
    for name, spec in ref["features"].items():
        bins = bins_of(spec)
        features[name] = [int(d.get(f"{name}_{k}") or 0) for k in range(bins)]
        missing[name] = int(d.get(f"{name}_{bins + 1}") or 0)
    return {
        "n": n,
        "probability_sum": float(row[PROBABILITY_SUM] or 0.0),
        "levels": [int(d.get(f"{LEVEL_SLOT}_{k}") or 0) for k in range(len(LEVELS))],
        "features": features,
        "missing": missing,
    }


def _add(into: dict[str, Any], counts: Mapping[str, Any]) -> None:
    into["n"] += counts["n"]
    into["probability_sum"] += counts["probability_sum"]
    into["levels"] = [a + b for a, b in zip(into["levels"], counts["levels"], strict=True)]
    for name, bins in counts["features"].items():
        have = into["features"].get(name)
        into["features"][name] = list(bins) if have is None else [a + b for a, b in zip(have, bins, strict=True)]
    for name, m in counts["missing"].items():
        into["missing"][name] = into["missing"].get(name, 0) + m


def empty_counts() -> dict[str, Any]:
    """Counts of no events."""
    return {"n": 0, "probability_sum": 0.0, "levels": [0] * len(LEVELS), "features": {}, "missing": {}}


# add a batch's counts to its time bucket; the sum of the buckets in the window ending now
add_to_window = partial(window.add_to_window, empty=empty_counts, add=_add)
window_counts = partial(window.window_total, empty=empty_counts, add=_add)


def psi(expected: Sequence[float], actual: Sequence[float], eps: float = EPSILON) -> float:
    """Population stability index: sum of (a - e) * ln(a / e) over bins, shares floored at ``eps``."""
    e_total, a_total = float(sum(expected)), float(sum(actual))
    if e_total <= 0 or a_total <= 0:
        return 0.0
    out = 0.0
    for e, a in zip(expected, actual, strict=True):
        pe, pa = max(e / e_total, eps), max(a / a_total, eps)
        out += (pa - pe) * math.log(pa / pe)
    return out


def summarize(window: Mapping[str, Any], ref: Mapping[str, Any]) -> dict[str, Any]:
    """PSI per feature and for the level mix, missing ratios, level shares and mean probability of a window."""
    n = window["n"]
    level_total = sum(ref["levels"])
    return {
        "n": n,
        "psi": {name: psi(spec["expected"], window["features"][name])
                for name, spec in ref["features"].items() if name in window["features"]},
        "level_psi": psi(ref["levels"], window["levels"]) if level_total else None,
        "level_share": {lv: (c / n if n else 0.0) for lv, c in zip(LEVELS, window["levels"], strict=True)},
        "reference_level_share": {lv: c / level_total for lv, c in zip(LEVELS, ref["levels"], strict=True)}
        if level_total else {},
        "missing_ratio": {name: (window["missing"].get(name, 0) / n if n else 0.0) for name in ref["nullable"]},
        "mean_probability": window["probability_sum"] / n if n else None,
    }
