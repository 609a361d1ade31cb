"""The per-batch observation: counts, latency quantiles and histogram, computed inside the query (in the JVM)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from stream.contract.codes import ERROR_CODES
from stream.monitor.drift import LEVELS, PROBABILITY_SUM, cut_name, level_name, present_name
from stream.pipeline.columns import (
    ERROR_CODE,
    EVENT,
    LATENCY_BUCKETS,
    OBSERVATION,
    PROBABILITY,
    RISK_LEVEL,
    SCORED_AT,
    TIMESTAMP,
    bucket_name,
)


def observed_columns() -> list[Column]:
    """Aggregates recorded for every micro-batch."""
    ok = F.col(ERROR_CODE).isNull()
    latency_ms = F.unix_millis(F.col(SCORED_AT)) - F.unix_millis(F.col(TIMESTAMP))
    cols = [
        F.count(F.lit(1)).alias("rows"),
        F.count_if(ok).alias("predictions"),
        F.percentile_approx(F.when(ok, latency_ms), F.array(F.lit(0.5), F.lit(0.99)), F.lit(1000)).alias(
            "latency_ms_p50_p99"
        ),
        F.sum(F.when(ok, latency_ms)).alias("latency_ms_sum"),
    ]
    cols += [F.count_if(ok & (latency_ms <= le * 1000)).alias(bucket_name(le)) for le in LATENCY_BUCKETS]
    cols += [F.count_if(F.col(ERROR_CODE) == code).alias(f"dlq_{code}") for code in ERROR_CODES]
    return cols


def drift_columns(ref: Mapping[str, Any]) -> list[Column]:
    """Counts for drift (``stream.monitor.drift``): per training bin edge or category, per risk level.

    A numeric field costs one comparison per bin edge (cumulative counts), a
    category one equality per value; all are plain aggregates in the same pass.
    """
    ok = F.col(ERROR_CODE).isNull()
    cols = [F.sum(F.when(ok, F.col(PROBABILITY))).alias(PROBABILITY_SUM)]
    cols += [F.count_if(F.col(RISK_LEVEL) == F.lit(lv)).alias(level_name(lv)) for lv in LEVELS]
    for name, spec in ref["features"].items():
        v = F.col(f"{EVENT}.`{name}`")
        if name in ref["nullable"]:  # a required field is present in every prediction
            cols.append(F.count_if(ok & v.isNotNull()).alias(present_name(name)))
        if spec["kind"] == "numeric":
            edges = spec["edges"]
            cols += [F.count_if(ok & (v < F.lit(float(e)))).alias(cut_name(name, k)) for k, e in enumerate(edges[:-1])]
            cols.append(F.count_if(ok & (v <= F.lit(float(edges[-1])))).alias(cut_name(name, len(edges) - 1)))
        else:
            cats = spec["categories"]
            cols += [F.count_if(ok & (v == F.lit(c))).alias(cut_name(name, k)) for k, c in enumerate(cats)]
    return cols


def observer(drift_reference: Mapping[str, Any] | None = None) -> Callable[[DataFrame], DataFrame]:
    """The tap that attaches the per-batch observation (with drift counts when given a reference)."""
    extra = drift_columns(drift_reference) if drift_reference else []

    def observe_batch(df: DataFrame) -> DataFrame:
        return df.observe(OBSERVATION, *observed_columns(), *extra)

    return observe_batch


observe_batch = observer()
