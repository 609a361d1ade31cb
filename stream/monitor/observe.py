"""The per-batch observation: counts, latency quantiles and histogram, computed inside the query (in the JVM)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from stream.contract.codes import ERROR_CODES
from stream.errors import SetupError
from stream.monitor.drift import DRIFT, PROBABILITY_SUM, layout
from stream.pipeline.columns import (
    ERROR_CODE,
    EVENT,
    LATENCY_BUCKETS,
    OBSERVATION,
    PROBABILITY,
    RISK_LEVEL,
    SCORED_AT,
    SHADOW_LEVEL,
    SHADOW_PROBABILITY,
    SHADOW_VERSION,
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


def shadow_columns() -> list[Column]:
    """With a challenger: valid rows both models scored, rows where their levels agree, and the sum of |p1 - p2|."""
    ok = F.col(ERROR_CODE).isNull()
    both = ok & F.col(SHADOW_LEVEL).isNotNull()
    return [
        F.count_if(both).alias("shadow_rows"),
        F.count_if(both & (F.col(SHADOW_LEVEL) == F.col(RISK_LEVEL))).alias("shadow_agree"),
        F.sum(F.when(both, F.abs(F.col(SHADOW_PROBABILITY) - F.col(PROBABILITY)))).alias("shadow_abs_diff_sum"),
    ]


DRIFT_FUNCTION = "heartrisk_drift_counts"


def register_drift_function(spark: SparkSession) -> None:
    """Register ``heartrisk_drift_counts`` (``DriftCounts`` in jvm/functions) in the session, once.

    Raises:
        SetupError: the class is not on Spark's classpath.
    """
    jvm: Any = getattr(spark, "_jvm", None)  # py4j is how Python reaches the JVM
    try:
        jvm.io.heartrisk.spark.DriftCounts.register(spark._jsparkSession)  # noqa: SLF001
    except Exception as exc:  # py4j: the class is missing from spark.jars
        why = str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else exc.__class__.__name__
        msg = f"the drift aggregate could not be registered ({why}): run `make setup`, or score with --drift off"
        raise SetupError(msg) from exc


def drift_columns(spark: SparkSession, ref: Mapping[str, Any]) -> list[Column]:
    """Counts for drift (``stream.monitor.drift``): the probability sum, and one aggregate for bins and levels.

    ``DriftCounts`` (Java, in jvm/functions) reads each valid event's fields where
    Spark holds them and counts its bins and level: no object per field, no
    expression per bin edge. Plain ``count_if`` aggregates, one per bin edge, cost
    7-11 % of the scorer's throughput; this is measured by ``heartrisk bench --drift``.
    """
    register_drift_function(spark)
    ok = F.col(ERROR_CODE).isNull()
    counts = F.call_function(DRIFT_FUNCTION, ok, F.col(RISK_LEVEL), F.col(EVENT), F.lit(json.dumps(layout(ref))))
    return [F.sum(F.when(ok, F.col(PROBABILITY))).alias(PROBABILITY_SUM), counts.alias(DRIFT)]


def observer(drift_reference: Mapping[str, Any] | None = None) -> Callable[[DataFrame], DataFrame]:
    """The tap that attaches the per-batch observation (with drift counts when given a reference)."""
    def observe_batch(df: DataFrame) -> DataFrame:
        extra = drift_columns(df.sparkSession, drift_reference) if drift_reference else []
        if SHADOW_VERSION in df.columns:
            extra += shadow_columns()
        return df.observe(OBSERVATION, *observed_columns(), *extra)

    return observe_batch


observe_batch = observer()
