"""The model's metric families: drift against the training data, and quality from outcome feedback.

Pure Python (prometheus-client only): the exporter adds these to its snapshot.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from stream.monitor.drift import summarize, window_counts
from stream.monitor.quality import ALL, empty_quality, figures, subgroup_figures, window_quality

PREFIX = "heartrisk_"


def drift_metrics(drift: dict[str, Any] | None, now: float) -> list[Metric]:
    """The drift window's families: PSI per feature and of the level mix, shares, missing ratios."""
    if not drift:
        return []
    window_s, bucket_s = float(drift["window_s"]), float(drift["bucket_s"])
    summary = summarize(window_counts(drift["buckets"], now, window_s, bucket_s), drift["reference"])

    def family(name: str, doc: str, label: str | None, values: dict[str, float] | float | None) -> Metric:
        g = GaugeMetricFamily(PREFIX + name, doc, labels=[label] if label else None)
        if isinstance(values, dict):
            for key, value in sorted(values.items()):
                g.add_metric([key], value)
        elif values is not None:
            g.add_metric([], values)
        return g

    return [
        family("drift_window_seconds", "Length of the window the drift metrics cover", None, window_s),
        family("drift_window_predictions", "Predictions in the drift window", None, float(summary["n"])),
        family("feature_psi", "Population stability index of each input field against the training data, "
               "over the drift window", "feature", summary["psi"] if summary["n"] else {}),
        family("risk_level_psi", "Population stability index of the risk-level mix against the training "
               "data (out-of-fold), over the drift window", None, summary["level_psi"] if summary["n"] else None),
        family("window_level_share", "Share of each risk level in the drift window", "risk_level",
               summary["level_share"] if summary["n"] else {}),
        family("reference_level_share", "Share of each risk level in the training data (out-of-fold)",
               "risk_level", summary["reference_level_share"]),
        family("feature_missing_ratio", "Share of predictions whose nullable field was missing (imputed), "
               "over the drift window", "feature", summary["missing_ratio"] if summary["n"] else {}),
        family("window_mean_probability", "Mean probability of disease over the drift window", None,
               summary["mean_probability"]),
    ]


def quality_metrics(feedback: dict[str, Any] | None, now: float) -> list[Metric]:
    """The feedback query's families: outcome totals, and the window's accuracy, AUC, Brier."""
    if not feedback:
        return []
    out: list[Metric] = []
    t = feedback.get("totals") or {}
    docs = {"read": "Outcomes read", "invalid": "Outcomes refused (not JSON, no event_id, outcome not 0/1)",
            "matched": "Outcomes joined to their prediction",
            "unmatched": "Outcomes with no prediction within the feedback bound",
            "late_rows": "Rows (outcomes or predictions) dropped behind the join's watermark"}
    for key, doc in docs.items():
        c = CounterMetricFamily(PREFIX + f"feedback_{key}", doc)
        c.add_metric([], float(t.get(key, 0)))
        out.append(c)
    up = GaugeMetricFamily(PREFIX + "feedback_up", "1 when the feedback query is active")
    up.add_metric([], 1.0 if feedback.get("state") == "active" else 0.0)
    out.append(up)
    for key, doc in (("state_rows", "Rows held in the feedback join's state"),
                     ("state_bytes", "Memory used by the feedback join's state")):
        g = GaugeMetricFamily(PREFIX + f"feedback_{key}", doc)
        g.add_metric([], float(feedback.get(key) or 0))
        out.append(g)
    window_s = float(feedback.get("window_s") or 0)
    if window_s:
        groups = window_quality(feedback.get("buckets") or [], now, window_s, float(feedback["bucket_s"]))
        fig = figures(groups.get(ALL) or empty_quality())
        out += subgroup_metrics(subgroup_figures(groups))
        g = GaugeMetricFamily(PREFIX + "feedback_window_outcomes", "Outcomes joined in the quality window")
        g.add_metric([], float(fig["outcomes"] or 0))
        out.append(g)
        for key in ("accuracy", "sensitivity", "specificity", "brier", "auc"):
            value = fig[key]
            if value is not None:
                g = GaugeMetricFamily(PREFIX + f"model_{key}", f"The model's {key} on confirmed outcomes, "
                                      "over the quality window")
                g.add_metric([], value)
                out.append(g)
    return out


def subgroup_metrics(subgroups: dict[str, Any]) -> list[Metric]:
    """Per sex and age band (the model card's subgroups): outcomes, AUC, sensitivity, specificity, and the gaps."""
    n = GaugeMetricFamily(PREFIX + "model_subgroup_outcomes", "Outcomes joined in the quality window, by subgroup",
                          labels=["subgroup", "value"])
    figs = {f: GaugeMetricFamily(PREFIX + f"model_subgroup_{f}", f"The model's {f} by subgroup, quality window",
                                 labels=["subgroup", "value"]) for f in ("auc", "sensitivity", "specificity")}
    gaps = GaugeMetricFamily(PREFIX + "model_subgroup_gap", "Largest minus smallest figure across one subgroup's "
                             "values (e.g. Female against Male), quality window", labels=["subgroup", "figure"])
    for kind, data in sorted(subgroups.items()):
        for value, fig in sorted(data["groups"].items()):
            n.add_metric([kind, value], float(fig["outcomes"] or 0))
            for f, family in figs.items():
                if fig[f] is not None:
                    family.add_metric([kind, value], fig[f])
        for f, gap in sorted(data["gaps"].items()):
            if gap is not None and f in figs:
                gaps.add_metric([kind, f], gap)
    return [n, *figs.values(), gaps]
