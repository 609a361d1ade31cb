"""The per-batch observation: counts, latency quantiles and histogram, computed inside the query (in the JVM)."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from stream.contract.codes import ERROR_CODES
from stream.pipeline.columns import ERROR_CODE, LATENCY_BUCKETS, OBSERVATION, SCORED_AT, TIMESTAMP, bucket_name


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


def observe_batch(df: DataFrame) -> DataFrame:
    """Attach the per-batch observation to the scored rows."""
    return df.observe(OBSERVATION, *observed_columns())
