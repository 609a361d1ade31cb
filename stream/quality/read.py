"""Read: the outcomes topic and the predictions topic as typed streams.

An outcome (JSON, or Avro with ``patient_outcome.v1.avsc``) is valid when it has an ``event_id`` and an
``outcome`` of 0 or 1 (and a ``confirmed_at``, if given, that parses); the rest
are counted as invalid, never dropped unseen. ``confirmed_at`` defaults to the
Kafka timestamp. Predictions are read as the scorer wrote them (JSON, or
Confluent-framed Avro when the output format is Avro).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from stream.config import Settings
from stream.contract.avro import outcome_schema, prediction_schema

OUTCOMES = "outcomes"  # the observation name of the outcome side
OUTCOME_DDL = "event_id string, patient_id string, outcome string, confirmed_at string, Sex string, Age string"
SEXES = ("Female", "Male")
# the model card's age bands, (name, lowest, highest), inclusive (stream.model.evaluation.AGE_BANDS)
AgeBands = tuple[tuple[str, int, int], ...]
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


def _band(age: Column, bands: AgeBands) -> Column:
    out = F.when(F.lit(False), F.lit(None).cast("string"))
    for name, lo, hi in bands:
        out = out.when(age.between(lo, hi), F.lit(name))
    return out


def outcomes(raw: DataFrame, age_bands: AgeBands = ()) -> DataFrame:
    """Valid outcomes (``o_event_id``, ``o_patient_id``, ``outcome``, ``confirmed_at``), invalid ones counted.

    JSON, or Confluent-framed Avro (first byte 0) read with ``patient_outcome.v1.avsc``.
    The optional ``Sex`` and ``Age`` give ``o_sex`` and ``o_age_band`` (null when
    absent or not a contract value): the model card's subgroups.
    """
    from pyspark.sql.avro.functions import from_avro

    j = F.from_json(F.col("value").cast("string"), OUTCOME_DDL)
    a = from_avro(F.expr("substring(value, 6)"), outcome_schema(), {"mode": "PERMISSIVE"})
    avro = F.hex(F.substring(F.col("value"), 1, 1)) == F.lit("00")
    kafka_ts = F.col("timestamp")

    def pick(field: str, avro_value: Column, json_value: Column) -> Column:
        return F.when(avro, avro_value).otherwise(json_value).alias(field)

    df = raw.select(
        pick("o_event_id", a["event_id"], j["event_id"]),
        pick("o_patient_id", a["patient_id"], j["patient_id"]),
        pick("_outcome", a["outcome"].cast("string"), j["outcome"]),
        pick("confirmed_at", _time(F.coalesce(a["confirmed_at"]["member0"], a["confirmed_at"]["member1"]
                                              .cast("string")), kafka_ts), _time(j["confirmed_at"], kafka_ts)),
        pick("_sex", a["Sex"], j["Sex"]),
        pick("_age", a["Age"], F.when(j["Age"].rlike("^[0-9]{1,3}$"), j["Age"].cast("int"))),
    )
    df = df.withColumns({
        "o_sex": F.when(F.col("_sex").isin(*SEXES), F.col("_sex")),
        "o_age_band": _band(F.col("_age"), age_bands),
    }).drop("_sex", "_age")
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
