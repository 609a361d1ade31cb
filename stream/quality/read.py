"""Read: the outcomes topic and the predictions topic as typed streams.

An outcome is valid when it is a JSON object with an ``event_id`` and an
``outcome`` of 0 or 1 (and a ``confirmed_at``, if given, that parses); the rest
are counted as invalid, never dropped unseen. ``confirmed_at`` defaults to the
Kafka timestamp. Predictions are read as the scorer wrote them (JSON, or
Confluent-framed Avro when the output format is Avro).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from stream.config import Settings
from stream.contract.avro import prediction_schema

OUTCOMES = "outcomes"  # the observation name of the outcome side
OUTCOME_DDL = "event_id string, patient_id string, outcome string, confirmed_at string"
PREDICTION_DDL = "event_id string, probability double, prediction int, model_version string, scored_at string"


def read_topic(spark: SparkSession, settings: Settings, topic: str) -> DataFrame:
    """A streaming read of one topic from its start."""
    return (
        spark.readStream.format("kafka").options(**settings.spark_kafka_options())
        .option("subscribe", topic).option("startingOffsets", "earliest").option("failOnDataLoss", "true")
        .load()
    )


def _time(text: Column, fallback: Column) -> Column:
    """ISO-8601 or epoch milliseconds; absent: ``fallback``; present but unreadable: null."""
    millis = F.timestamp_millis(F.when(text.rlike("^[0-9]{1,15}$"), text.cast("long")))
    return F.when(text.isNull(), fallback).otherwise(F.coalesce(millis, F.to_timestamp(text)))


def outcomes(raw: DataFrame) -> DataFrame:
    """Valid outcomes (``o_event_id``, ``o_patient_id``, ``outcome``, ``confirmed_at``), invalid ones counted."""
    o = F.from_json(F.col("value").cast("string"), OUTCOME_DDL)
    df = raw.select(
        o["event_id"].alias("o_event_id"), o["patient_id"].alias("o_patient_id"),
        o["outcome"].alias("_outcome"), _time(o["confirmed_at"], F.col("timestamp")).alias("confirmed_at"),
    )
    valid = F.col("o_event_id").isNotNull() & F.col("_outcome").isin("0", "1") & F.col("confirmed_at").isNotNull()
    df = df.observe(OUTCOMES, F.count(F.lit(1)).alias("read"), F.count_if(~F.coalesce(valid, F.lit(False)))
                    .alias("invalid"))
    return df.where(valid).withColumn("outcome", F.col("_outcome").cast("int")).drop("_outcome")


def predictions(raw: DataFrame, output_format: str) -> DataFrame:
    """The scorer's predictions: ``p_event_id``, ``probability``, ``prediction``, ``model_version``, ``scored_at``."""
    if output_format == "avro":
        from pyspark.sql.avro.functions import from_avro

        p = from_avro(F.expr("substring(value, 6)"), prediction_schema())
    else:
        p = F.from_json(F.col("value").cast("string"), PREDICTION_DDL)
    return raw.select(
        p["event_id"].alias("p_event_id"), p["probability"].alias("probability"),
        p["prediction"].alias("prediction"), p["model_version"].alias("p_model_version"),
        F.to_timestamp(p["scored_at"]).alias("scored_at"),
    ).where(F.col("p_event_id").isNotNull() & F.col("scored_at").isNotNull())
