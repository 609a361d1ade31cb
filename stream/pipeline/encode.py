"""Encode: scored rows -> Kafka records (topic, key, value, headers).

A valid event becomes a prediction on the output topic, keyed by patient_id so
one patient's predictions stay in order; a rejected one becomes a dead letter on
the dead-letter topic, keyed by the original key. Predictions are JSON, or
Confluent-framed Avro (``prediction.v1.avsc``, registered under the output
topic's subject) with ``--output-format avro``; dead letters are always JSON, for
people and tools that read them without a registry. The ``topic`` column routes
each row, so one Kafka sink serves both.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from stream import __version__
from stream.config import Settings
from stream.contract.avro import header_hex, prediction_schema
from stream.contract.codes import MAX_DEAD_LETTER_KEY_BYTES, MAX_DEAD_LETTER_VALUE_BYTES
from stream.contract.sealed import ENCRYPTED, sealing_key_id
from stream.errors import ConfigError
from stream.pipeline.columns import (
    ERROR_CODE,
    ERROR_DETAIL,
    FERNET_SEAL_FUNCTION,
    JVM_NOW_MS,
    PROBABILITY,
    RISK_LEVEL,
    SCORED_AT,
    SHADOW_LEVEL,
    SHADOW_PROBABILITY,
    SHADOW_VERSION,
    STAGE,
    register_java_udf,
)

ISO_MILLIS = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
CONTENT_TYPE = "application/json"
AVRO_CONTENT_TYPE = "application/vnd.apache.avro+binary"
PREDICTION_SCHEMA = "heartrisk.prediction.v1"
DEAD_LETTER_SCHEMA = "heartrisk.dead_letter.v1"
SHADOW_SCHEMA = "heartrisk.shadow_prediction.v1"


def _iso(ts: Column) -> Column:
    return F.date_format(ts, ISO_MILLIS)


def _prediction_struct() -> Column:
    return F.struct(
        F.col("event_id"),
        F.col("patient_id"),
        _iso(F.col("event_ts")).alias("event_time"),
        _iso(F.col("scored_at")).alias("scored_at"),
        F.col("model_version"),
        F.round(F.col(PROBABILITY), 6).alias("probability"),
        F.col("risk_prediction").alias("prediction"),
        F.col("risk_level"),
        F.col("contributions"),
        F.col("imputed_fields"),
    )


def prediction_value() -> Column:
    """The prediction record as JSON (see schemas/prediction.v1.schema.json)."""
    return F.to_json(_prediction_struct(), {"ignoreNullFields": "false"})


def prediction_avro(schema_id: int) -> Column:
    """The prediction record as Confluent-framed Avro (see schemas/prediction.v1.avsc)."""
    from pyspark.sql.avro.functions import to_avro

    return F.concat(F.unhex(F.lit(header_hex(schema_id))), to_avro(_prediction_struct(), prediction_schema()))


@dataclass(frozen=True)
class Payload:
    """What a dead letter keeps of the original key and value (``Settings.dead_letter_payload``).

    ``encrypted``: the path of the keys file every executor reads, and the id of the key that seals
    (the file's first); the key itself never enters the plan.
    """

    mode: str = "kept"
    keys_file: str = ""
    key_id: str = ""

    @classmethod
    def of(cls, settings: Settings) -> Payload:
        """From the settings; an encrypted mode's keys file is read and checked here, on the driver.

        Raises:
            ConfigError: encrypted without a keys file, or a keys file that does not read.
        """
        if settings.dead_letter_payload != ENCRYPTED:
            return cls(settings.dead_letter_payload)
        if not settings.dead_letter_key_file:
            msg = ("--dead-letter-payload encrypted needs the Fernet keys: set HEARTRISK_DEAD_LETTER_KEY_FILE "
                   "(--dead-letter-key-file) to a file of KEY_ID=KEY lines")
            raise ConfigError(msg)
        path = settings.path(settings.dead_letter_key_file)
        return cls(ENCRYPTED, str(path), sealing_key_id(path))


def _cut(column: str, limit: int) -> Column:
    """The column's first ``limit`` bytes."""
    return F.when(F.octet_length(F.col(column)) > limit, F.substring(F.col(column), 1, limit)).otherwise(F.col(column))


def dead_letter_key(payload: Payload = Payload()) -> Column:
    """The dead letter's Kafka key: the original key cut to ``MAX_DEAD_LETTER_KEY_BYTES``, or its sha256 (hex)."""
    if payload.mode != "kept":
        return F.sha2(F.col("key"), 256).cast("binary")
    return _cut("key", MAX_DEAD_LETTER_KEY_BYTES)


def dead_letter_value(payload: Payload = Payload()) -> Column:
    """The dead letter as JSON (see schemas/dead_letter.v1.schema.json).

    ``hashed``: no copy of the original key or value, only their sha256 and sizes (``payload: hashed``).
    ``encrypted``: their copies (cut as when kept) sealed as Fernet tokens in the JVM (``payload: encrypted``,
    ``key_id``, ``key_fernet``, ``value_fernet``), and the key's sha256.
    """
    kept, hashed = payload.mode == "kept", payload.mode == "hashed"
    key_size = F.octet_length(F.col("key"))
    size = F.octet_length(F.col("value"))
    truncated = F.coalesce(size > MAX_DEAD_LETTER_VALUE_BYTES, F.lit(False)) & F.lit(not hashed)
    key, value = _cut("key", MAX_DEAD_LETTER_KEY_BYTES), _cut("value", MAX_DEAD_LETTER_VALUE_BYTES)
    none = F.lit(None).cast("string")
    extra = [] if kept else [F.lit(payload.mode).alias("payload"), F.sha2(F.col("key"), 256).alias("key_sha256")]
    if payload.mode == ENCRYPTED:
        keys_file, key_id = F.lit(payload.keys_file), F.lit(payload.key_id)
        extra += [key_id.alias("key_id"),
                  F.call_function(FERNET_SEAL_FUNCTION, key, keys_file, key_id).alias("key_fernet"),
                  F.call_function(FERNET_SEAL_FUNCTION, value, keys_file, key_id).alias("value_fernet")]
    return F.to_json(
        F.struct(
            F.col(ERROR_CODE).alias("error_code"),
            F.col(ERROR_DETAIL).alias("error_detail"),
            F.col(STAGE).alias("stage"),
            F.col("event_id"),
            F.col("topic"),
            F.col("partition"),
            F.col("offset"),
            _iso(F.col("timestamp")).alias("timestamp"),
            (F.base64(key) if kept else none).alias("key_base64"),
            key_size.alias("key_size"),
            (F.coalesce(key_size > MAX_DEAD_LETTER_KEY_BYTES, F.lit(False)) & F.lit(not hashed)).alias("key_truncated"),
            (F.base64(value) if kept else none).alias("value_base64"),
            size.alias("value_size"),
            truncated.alias("value_truncated"),
            F.sha2(F.col("value"), 256).alias("value_sha256"),
            F.lit(__version__).alias("scorer_version"),
            _iso(F.col("scored_at")).alias("failed_at"),
            *extra,
        ),
        {"ignoreNullFields": "false"},
    )


def stamp_scored_at(df: DataFrame) -> DataFrame:
    """Add ``scored_at``: when the row was scored (the JVM clock, milliseconds)."""
    return df.withColumn(SCORED_AT, F.timestamp_millis(F.expr(JVM_NOW_MS)))


def encode_output(df: DataFrame, settings: Settings, prediction_schema_id: int | None = None) -> DataFrame:
    """Kafka sink columns for every row (stamped by ``stamp_scored_at``): a prediction or a dead letter.

    With ``prediction_schema_id`` (the registry id of prediction.v1.avsc) predictions are framed Avro.
    """
    ok = F.col(ERROR_CODE).isNull()
    payload = Payload.of(settings)
    if payload.mode == ENCRYPTED:
        register_java_udf(df.sparkSession, FERNET_SEAL_FUNCTION)
    avro = prediction_schema_id is not None
    prediction = (
        prediction_avro(prediction_schema_id) if prediction_schema_id is not None else prediction_value().cast("binary")
    )
    headers_ok = F.array(
        F.struct(F.lit("model_version").alias("key"), F.col("model_version").cast("binary").alias("value")),
        F.struct(
            F.lit("content-type").alias("key"),
            F.lit(AVRO_CONTENT_TYPE if avro else CONTENT_TYPE).cast("binary").alias("value"),
        ),
        F.struct(F.lit("schema").alias("key"), F.lit(PREDICTION_SCHEMA).cast("binary").alias("value")),
    )
    headers_bad = F.array(
        F.struct(F.lit("error_code").alias("key"), F.col(ERROR_CODE).cast("binary").alias("value")),
        F.struct(F.lit("content-type").alias("key"), F.lit(CONTENT_TYPE).cast("binary").alias("value")),
        F.struct(F.lit("schema").alias("key"), F.lit(DEAD_LETTER_SCHEMA).cast("binary").alias("value")),
    )
    columns = [
        F.when(ok, F.lit(settings.output_topic)).otherwise(F.lit(settings.dlq_topic)).alias("topic"),
        F.when(ok, F.col("patient_id").cast("binary")).otherwise(dead_letter_key(payload)).alias("key"),
        F.when(ok, prediction).otherwise(dead_letter_value(payload).cast("binary")).alias("value"),
        F.when(ok, headers_ok).otherwise(headers_bad).alias("headers"),
    ]
    if SHADOW_VERSION not in df.columns:
        return df.select(*columns)
    # shadow scoring: a valid event also gives one record on the shadow topic (never the alerting one)
    record = F.struct(*columns)
    records = F.when(ok, F.array(record, shadow_record(settings))).otherwise(F.array(record))
    return df.select(F.explode(records).alias("r")).select("r.*")


def shadow_value() -> Column:
    """The shadow record as JSON (see schemas/shadow_prediction.v1.schema.json): both models' answers."""
    return F.to_json(
        F.struct(
            F.col("event_id"),
            F.col("patient_id"),
            _iso(F.col("event_ts")).alias("event_time"),
            _iso(F.col("scored_at")).alias("scored_at"),
            F.col(SHADOW_VERSION).alias("model_version"),
            F.round(F.col(SHADOW_PROBABILITY), 6).alias("probability"),
            F.col(SHADOW_LEVEL).alias("risk_level"),
            F.col("model_version").alias("champion_version"),
            F.round(F.col(PROBABILITY), 6).alias("champion_probability"),
            F.col(RISK_LEVEL).alias("champion_risk_level"),
        ),
        {"ignoreNullFields": "false"},
    )


def shadow_record(settings: Settings) -> Column:
    """The shadow topic's record for a valid row: keyed by patient_id, like a prediction."""
    headers = F.array(
        F.struct(F.lit("model_version").alias("key"), F.col(SHADOW_VERSION).cast("binary").alias("value")),
        F.struct(F.lit("content-type").alias("key"), F.lit(CONTENT_TYPE).cast("binary").alias("value")),
        F.struct(F.lit("schema").alias("key"), F.lit(SHADOW_SCHEMA).cast("binary").alias("value")),
    )
    return F.struct(
        F.lit(settings.shadow_topic).alias("topic"),
        F.col("patient_id").cast("binary").alias("key"),
        shadow_value().cast("binary").alias("value"),
        headers.alias("headers"),
    )
