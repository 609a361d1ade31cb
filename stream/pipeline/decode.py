"""Decode: raw Kafka bytes -> a typed ``event`` struct, or a decode error code.

Everything here is a Spark column expression (no Python per row).

JSON: the expensive parses run only where they are needed: ``from_json`` into
the typed schema for every message, a second parse into ``map<string,string>``
only for messages in which some clinical field came out null (to tell missing
from null from wrong type), and a third only to tell "not JSON" from "JSON but
not an object".

Avro (Confluent wire format): the schema id is read from bytes 1-4, and the
payload is decoded by ``from_avro`` with that id's writer schema and the
project's reader schema (``avroSchema``), so Avro's schema resolution runs
inside Spark. Which ids exist, and whether each can be read, is decided on the
driver beforehand (``stream.contract.writer_schemas``) and passed in as ``writers``; the
plan holds one ``from_avro`` per readable id. An id missing from ``writers``
fails the batch (``raise_error`` with ``UNPLANNED_SCHEMA_ID``) rather than being
guessed at, so it can never be dead-lettered by mistake: the scorer then settles
the id and re-plans (``stream.app.replanning``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from stream.contract.avro import HEADER_BYTES, MAGIC, reader_schema
from stream.contract.codes import MAX_MESSAGE_BYTES, TRAILING_DETAIL
from stream.contract.schema import ENVELOPE_FIELDS, clinical_fields
from stream.contract.writer_schemas import Writer, unasked_detail, unknown_detail
from stream.pipeline.columns import (
    DECODE_DETAIL,
    DECODE_ERROR,
    EVENT,
    JSON_FLAW_FUNCTION,
    PRESENT,
    SCHEMA_ID,
    UNPLANNED_SCHEMA_ID,
    register_java_udf,
)

_JSON = "_json"
_IS_AVRO = "_is_avro"
_AVRO = "_avro"
_FLAW = "_flaw"
_UNKNOWN = "_unknown_schema_id"


def event_ddl() -> str:
    """Spark DDL of the typed event: envelope fields as strings, clinical fields typed."""
    envelope = [f"`{n}` string" for n in ENVELOPE_FIELDS]
    clinical = [f"`{f.name}` {f.spark_type}" for f in clinical_fields()]
    return ", ".join(envelope + clinical)


def _size_error(value: Column) -> Column:
    return (
        F.when(value.isNull(), F.lit("TOMBSTONE"))
        .when(F.octet_length(value) == 0, F.lit("EMPTY_VALUE"))
        .when(F.octet_length(value) > MAX_MESSAGE_BYTES, F.lit("MESSAGE_TOO_LARGE"))
    )


def schema_id_column(value: Column) -> Column:
    """Bytes 1-4 of a framed message as the (unsigned, big-endian) schema id."""
    return F.conv(F.hex(F.substring(value, 2, 4)), 16, 10).cast("long")


# Jackson's lenient single quotes off: {'Age': 54} is not JSON (RFC 8259), so NOT_JSON, not scored
STRICT_JSON = {"allowSingleQuotes": "false"}


def is_framed(value: Column) -> Column:
    """The first byte is the Confluent magic byte 0."""
    return F.substring(value, 1, 1) == F.unhex(F.lit(f"{MAGIC:02x}"))


def has_header(value: Column) -> Column:
    """Framed, and long enough to hold the 5-byte header (so bytes 1-4 are a schema id)."""
    return is_framed(value) & (F.octet_length(value) >= HEADER_BYTES)


def decode_events(
    df: DataFrame, input_format: str = "json", writers: Mapping[int, Writer] | None = None
) -> DataFrame:
    """Add ``event`` (typed struct), ``_present`` (raw field map, when needed) and ``decode_error``.

    Also ``decode_detail`` (a specific reason, when there is one), and with Avro
    input ``schema_id``. ``input_format`` is json, avro or auto.
    """
    size_error = _size_error(F.col("value"))
    if input_format == "json":
        is_avro = F.lit(False)
    elif input_format == "avro":
        is_avro = size_error.isNull()
    else:
        is_avro = size_error.isNull() & is_framed(F.col("value"))
    df = df.withColumn(_IS_AVRO, F.coalesce(is_avro, F.lit(False)))
    json_error = F.when(~F.col(_IS_AVRO) & ~F.expr("is_valid_utf8(value)"), F.lit("NOT_UTF8"))
    df = df.withColumn(DECODE_ERROR, F.coalesce(size_error, json_error))
    df = df.withColumn(DECODE_DETAIL, F.lit(None).cast("string"))
    if input_format != "json":
        df = _decode_avro(df, input_format, writers or {})
    df = df.withColumn(
        _JSON, F.when(F.col(DECODE_ERROR).isNull() & ~F.col(_IS_AVRO), F.col("value").cast("string"))
    )
    json_event = F.from_json(F.col(_JSON), event_ddl(), STRICT_JSON)
    if input_format == "json":
        df = df.withColumn(EVENT, json_event)
    else:
        df = df.withColumn(EVENT, F.when(F.col(_IS_AVRO), F.col(_AVRO)).otherwise(json_event)).drop(_AVRO)
    some_clinical_null = F.lit(False)
    for f in clinical_fields():
        some_clinical_null = some_clinical_null | F.col(f"{EVENT}.`{f.name}`").isNull()
    some_clinical_null = some_clinical_null & ~F.col(_IS_AVRO)
    df = df.withColumn(
        PRESENT,
        F.when(
            F.col(DECODE_ERROR).isNull() & some_clinical_null,
            F.from_json(F.col(_JSON), "map<string,string>", STRICT_JSON),
        ),
    )
    trimmed = F.trim(F.col(_JSON))
    wrapped = F.from_json(F.concat(F.lit('{"v":'), F.col(_JSON), F.lit("}")), "v string", STRICT_JSON)
    not_object = (
        F.when(trimmed == "null", F.lit("NOT_AN_OBJECT"))
        .when(wrapped["v"].isNotNull(), F.lit("NOT_AN_OBJECT"))
        .otherwise(F.lit("NOT_JSON"))
    )
    decode_error = F.coalesce(
        F.col(DECODE_ERROR),
        F.when(some_clinical_null & F.col(PRESENT).isNull(), not_object),
    )
    df = df.withColumn(DECODE_ERROR, decode_error)
    return _reject_json_flaws(df).drop(_JSON, _IS_AVRO)


def _reject_json_flaws(df: DataFrame) -> DataFrame:
    """What ``from_json`` lets through, rejected: trailing bytes (NOT_JSON) and a root field named twice.

    The strict re-read (``JsonFlaw``) runs once per row, in its own column (Spark does not inline a
    UDF referenced more than once), and only where ``from_json`` found no error. A rejected text gives
    no envelope, as every other decode error: its event_id and event_time are not read from it.
    """
    register_java_udf(df.sparkSession, JSON_FLAW_FUNCTION)
    unflawed = F.col(DECODE_ERROR).isNull() & F.col(_JSON).isNotNull()
    df = df.withColumn(_FLAW, F.when(unflawed, F.call_function(JSON_FLAW_FUNCTION, F.col(_JSON))))
    flaw = F.col(_FLAW)
    flaw_code = F.when(flaw == "DUPLICATE", F.lit("DUPLICATE_FIELD")).when(flaw.isNotNull(), F.lit("NOT_JSON"))
    return df.withColumns(
        {
            DECODE_ERROR: F.coalesce(F.col(DECODE_ERROR), flaw_code),
            DECODE_DETAIL: F.when(flaw == "TRAILING", F.lit(TRAILING_DETAIL)).otherwise(F.col(DECODE_DETAIL)),
            EVENT: F.when(flaw.isNull(), F.col(EVENT)),
            PRESENT: F.when(flaw.isNull(), F.col(PRESENT)),
        }
    ).drop(_FLAW)


def _avro_event(decoded: Column) -> Column:
    """The reader schema's struct, reshaped into the JSON path's ``event`` struct (same names, same types)."""
    envelope = []
    for name in ENVELOPE_FIELDS:
        if name == "event_time":  # union [null, string, long] -> struct<member0, member1>
            t = decoded["event_time"]
            envelope.append(F.coalesce(t["member0"], t["member1"].cast("string")).alias(name))
        else:
            envelope.append(decoded[name].cast("string").alias(name))
    clinical = [decoded[f.name].cast(f.spark_type).alias(f.name) for f in clinical_fields()]
    return F.struct(*envelope, *clinical)


def _id_in(ids: Iterable[int]) -> Column:
    """``schema_id IN (...)``, built in one call: a flood's 20,000 ids as Python literals took 40 s to plan."""
    return F.expr(f"{SCHEMA_ID} IN ({','.join(str(int(i)) for i in sorted(ids))})")


def _decode_avro(df: DataFrame, input_format: str, writers: Mapping[int, Writer]) -> DataFrame:
    """Framed Avro rows: ``schema_id``, the ``_avro`` event and the Avro error codes."""
    from pyspark.sql.avro.functions import from_avro

    value = F.col("value")
    avro_ok = F.col(_IS_AVRO) & F.col(DECODE_ERROR).isNull()
    df = df.withColumn(SCHEMA_ID, F.when(avro_ok & has_header(value), schema_id_column(value)))
    sid = F.col(SCHEMA_ID)
    payload = F.expr(f"substring(value, {HEADER_BYTES + 1})")
    reader = reader_schema()
    sentinel = next(f["name"] for f in json.loads(reader)["fields"] if not isinstance(f["type"], list))
    readable = {i: w for i, w in writers.items() if w.status == "ok"}
    if readable:
        options = {"mode": "PERMISSIVE", "avroSchema": reader}
        decoded = F.when(F.lit(False), F.lit(None))
        for i, w in sorted(readable.items()):
            decoded = decoded.when(sid == i, from_avro(payload, w.schema_str, options))
        df = df.withColumn(_AVRO, F.when(sid.isNotNull(), decoded))
        undecodable = F.col(_AVRO)[sentinel].isNull()
        df = df.withColumn(_AVRO, F.when(~undecodable, _avro_event(F.col(_AVRO))))
    else:
        df = df.withColumn(_AVRO, F.from_json(F.lit(None).cast("string"), event_ddl()))
        undecodable = F.lit(True)
    code = F.when(F.lit(False), F.lit(None).cast("string"))
    detail = F.when(F.lit(False), F.lit(None).cast("string"))
    if input_format == "avro":
        code = code.when(~is_framed(value), F.lit("BAD_MAGIC_BYTE"))
        detail = detail.when(
            ~is_framed(value),
            F.concat(F.lit("first byte is 0x"), F.hex(F.substring(value, 1, 1)), F.lit(", expected 0x00")),
        )
    short = F.octet_length(value) < HEADER_BYTES
    code = code.when(short, F.lit("CORRUPT_AVRO"))
    detail = detail.when(short, F.lit(f"shorter than the {HEADER_BYTES}-byte header"))
    for i, w in sorted(writers.items()):
        if w.status not in ("ok", "unknown"):
            code = code.when(sid == i, F.lit(w.code))
            detail = detail.when(sid == i, F.lit(w.detail))
    # unknown ids (a flood of garbage ones, say) as two sets, each read once into its own column: 1 the
    # registry said unknown, 2 not asked; never one branch per id
    asked = [i for i, w in writers.items() if w.status == "unknown" and w.asked]
    unasked = [i for i, w in writers.items() if w.status == "unknown" and not w.asked]
    kind = F.lit(None).cast("int")
    for number, ids in ((1, asked), (2, unasked)):
        if ids:
            kind = F.when(_id_in(ids), F.lit(number)).otherwise(kind)
    df = df.withColumn(_UNKNOWN, kind)
    for number, words in ((1, unknown_detail), (2, unasked_detail)):
        text = words("{id}").split("{id}")  # the detail's words around the id
        code = code.when(F.col(_UNKNOWN) == number, F.lit("UNKNOWN_SCHEMA_ID"))
        detail = detail.when(F.col(_UNKNOWN) == number, F.concat(F.lit(text[0]), sid.cast("string"), F.lit(text[1])))
    others = [i for i, w in writers.items() if w.status != "unknown"]
    known = sid.isNull() | F.col(_UNKNOWN).isNotNull() | (_id_in(others) if others else F.lit(False))
    code = code.when(~known, F.raise_error(F.concat(F.lit(f"{UNPLANNED_SCHEMA_ID}:"), sid.cast("string"))))
    code = code.when(undecodable, F.lit("CORRUPT_AVRO"))
    detail = detail.when(
        undecodable, F.concat(F.lit("payload does not decode with writer schema id "), sid.cast("string"))
    )
    return df.withColumns(
        {
            DECODE_ERROR: F.when(avro_ok, code).otherwise(F.col(DECODE_ERROR)),
            DECODE_DETAIL: F.when(avro_ok, detail),
        }
    ).drop(_UNKNOWN)
