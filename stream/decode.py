"""Decode: raw Kafka bytes -> a typed ``event`` struct, or a decode error code.

Everything here is a Spark column expression (no Python per row). The expensive
parses run only where they are needed: ``from_json`` into the typed schema for
every message, a second parse into ``map<string,string>`` only for messages in
which some clinical field came out null (to tell missing from null from wrong
type), and a third only to tell "not JSON" from "JSON but not an object".
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from stream.codes import MAX_MESSAGE_BYTES
from stream.schema import ENVELOPE_FIELDS, clinical_fields

EVENT = "event"
PRESENT = "_present"
DECODE_ERROR = "decode_error"
_JSON = "_json"


def event_ddl() -> str:
    """Spark DDL of the typed event: envelope fields as strings, clinical fields typed."""
    envelope = [f"`{n}` string" for n in ENVELOPE_FIELDS]
    clinical = [f"`{f.name}` {f.spark_type}" for f in clinical_fields()]
    return ", ".join(envelope + clinical)


def _byte_error(value: Column) -> Column:
    return (
        F.when(value.isNull(), F.lit("TOMBSTONE"))
        .when(F.octet_length(value) == 0, F.lit("EMPTY_VALUE"))
        .when(F.octet_length(value) > MAX_MESSAGE_BYTES, F.lit("MESSAGE_TOO_LARGE"))
        .when(~F.expr("is_valid_utf8(value)"), F.lit("NOT_UTF8"))
    )


def decode_events(df: DataFrame) -> DataFrame:
    """Add ``event`` (typed struct), ``_present`` (raw field map, when needed) and ``decode_error``."""
    byte_error = _byte_error(F.col("value"))
    df = df.withColumn(DECODE_ERROR, byte_error)
    df = df.withColumn(_JSON, F.when(F.col(DECODE_ERROR).isNull(), F.col("value").cast("string")))
    df = df.withColumn(EVENT, F.from_json(F.col(_JSON), event_ddl()))
    some_clinical_null = F.lit(False)
    for f in clinical_fields():
        some_clinical_null = some_clinical_null | F.col(f"{EVENT}.`{f.name}`").isNull()
    df = df.withColumn(
        PRESENT,
        F.when(
            F.col(DECODE_ERROR).isNull() & some_clinical_null,
            F.from_json(F.col(_JSON), "map<string,string>"),
        ),
    )
    trimmed = F.trim(F.col(_JSON))
    wrapped = F.from_json(F.concat(F.lit('{"v":'), F.col(_JSON), F.lit("}")), "v string")
    not_object = (
        F.when(trimmed == "null", F.lit("NOT_AN_OBJECT"))
        .when(wrapped["v"].isNotNull(), F.lit("NOT_AN_OBJECT"))
        .otherwise(F.lit("NOT_JSON"))
    )
    decode_error = F.coalesce(
        F.col(DECODE_ERROR),
        F.when(some_clinical_null & F.col(PRESENT).isNull(), not_object),
    )
    return df.withColumn(DECODE_ERROR, decode_error).drop(_JSON)
