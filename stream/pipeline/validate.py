"""Validate: the event contract as Spark column expressions.

Adds ``error_code``, ``error_detail`` and ``stage`` (null for a valid event) and
the envelope columns every output needs: ``event_id``, ``patient_id`` and
``event_ts``. The first failing check wins, in field order. Ranges and
enumerations come from ``schemas/patient_event.v1.schema.json``.
"""

from __future__ import annotations

import dataclasses

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from stream.contract.check import DEFAULT_WINDOW, Ranges, Window, parse_ranges
from stream.contract.codes import (
    CONTROL_CHARS,
    DECODE_CODES,
    ERROR_CODES,
    KEY_NOT_UTF8_DETAIL,
    MAX_ID_CHARS,
    SECONDS_DETAIL,
    window_detail,
)
from stream.contract.schema import FieldSpec, clinical_fields
from stream.pipeline.columns import (
    DECODE_DETAIL,
    DECODE_ERROR,
    ERROR_CODE,
    ERROR_DETAIL,
    EVENT,
    EVENT_ID,
    EVENT_TS,
    JVM_NOW_MS,
    PATIENT_ID,
    PRESENT,
    STAGE,
)

__all__ = [
    "DEFAULT_WINDOW", "Ranges", "Window", "event_time_column", "field_checks", "parse_ranges", "patient_id_column",
    "validate_events",
]
_VERDICT = "_verdict"
_EPOCH = r"^-?[0-9]{1,15}$"
_TYPE_WORD = {"integer": "an integer", "number": "a number", "category": "a string"}


def _value(f: FieldSpec) -> Column:
    return F.col(f"{EVENT}.`{f.name}`")


def _present(f: FieldSpec) -> Column:
    return F.coalesce(F.map_contains_key(F.col(PRESENT), F.lit(f.name)), F.lit(False))


def field_checks(f: FieldSpec, ranges: Ranges | None = None) -> list[tuple[Column, str, str]]:
    """(failing condition, code, detail) for one field, in the order they are tried.

    ``ranges`` overrides the contract's range of a numeric field (``Settings.field_ranges``).
    """
    v = _value(f)
    raw = F.col(PRESENT)[f.name]
    checks: list[tuple[Column, str, str]] = []
    if not f.nullable:
        checks.append((v.isNull() & ~_present(f), "MISSING_FIELD", f"field {f.name} is missing"))
        checks.append((v.isNull() & raw.isNull(), "NULL_FIELD", f"field {f.name} is null"))
    checks.append(
        (
            v.isNull() & _present(f) & raw.isNotNull(),
            "WRONG_TYPE",
            f"field {f.name} must be {_TYPE_WORD[f.kind]}",
        )
    )
    if f.kind == "number":
        checks.append(
            (
                F.isnan(v) | (v == float("inf")) | (v == float("-inf")),
                "NOT_FINITE",
                f"field {f.name} must be a finite number",
            )
        )
    if ranges and f.name in ranges:
        f = dataclasses.replace(f, minimum=ranges[f.name][0], maximum=ranges[f.name][1])
    if f.minimum is not None or f.maximum is not None:
        lo, hi = f.minimum, f.maximum
        cond = F.lit(False)
        if lo is not None:
            cond = cond | (v < lo)
        if hi is not None:
            cond = cond | (v > hi)
        checks.append((cond, "OUT_OF_RANGE", f"field {f.name} must be within [{lo:g}, {hi:g}]"))
    if f.values:
        allowed = " | ".join(f.values)
        checks.append((~v.isin(*f.values), "INVALID_ENUM", f"field {f.name} must be one of: {allowed}"))
    return checks


def _given_patient_id() -> Column:
    """The event's own ``patient_id``, trimmed; null when absent or empty."""
    return F.nullif(F.trim(F.col(f"{EVENT}.patient_id")), F.lit(""))


def patient_id_column() -> Column:
    """``patient_id`` from the event, else the message key; empty counts as absent."""
    from_key = F.nullif(F.trim(F.col("key").cast("string")), F.lit(""))
    return F.coalesce(_given_patient_id(), from_key)


def event_time_column() -> Column:
    """``event_time`` as a timestamp: epoch millis or ISO-8601; absent -> Kafka timestamp."""
    raw = F.trim(F.col(f"{EVENT}.event_time"))
    parsed = F.when(raw.rlike(_EPOCH), F.timestamp_millis(raw.cast("long"))).otherwise(
        raw.cast("timestamp")
    )
    return F.when(raw.isNull(), F.col("timestamp")).otherwise(parsed)


def event_time_checks(window: Window) -> list[tuple[Column, str, str]]:
    """(failing condition, code, detail) for a given event_time outside the window around the JVM's clock.

    An epoch number is always milliseconds; one that the window would take as seconds gets its own detail.
    """
    if window is None:
        return []
    past, future = window
    now = F.expr(JVM_NOW_MS)
    given_ms = F.unix_millis(F.col(EVENT_TS))
    given = F.col(f"{EVENT}.event_time").isNotNull() & F.col(EVENT_TS).isNotNull()
    outside = given & ((given_ms < now - past) | (given_ms > now + future))
    raw = F.trim(F.col(f"{EVENT}.event_time"))
    as_seconds = F.when(raw.rlike(_EPOCH), raw.cast("long") * 1000)
    seconds = outside & as_seconds.between(now - past, now + future)
    return [(seconds, "EVENT_TIME_OUT_OF_WINDOW", SECONDS_DETAIL),
            (outside, "EVENT_TIME_OUT_OF_WINDOW", window_detail(past, future))]


def _usable_id(event_id: Column) -> Column:
    """A given event_id the outputs may carry: not empty, not over-long, no control character."""
    return (event_id != "") & (F.length(event_id) <= MAX_ID_CHARS) & ~event_id.rlike(CONTROL_CHARS)


def validate_events(
    df: DataFrame, ranges: Ranges | None = None, window: Window = DEFAULT_WINDOW
) -> DataFrame:
    """Add the verdict columns and the envelope columns.

    ``ranges`` overrides fields' ranges; ``window`` is the plausible event_time
    (``Settings.event_time_window``, in milliseconds).

    The checks are evaluated once, into the position of the first that fails
    (0 for a decode error); the code, detail and stage are read off that
    position, so the plan holds each condition once.
    """
    df = df.withColumns(
        {
            EVENT_ID: F.coalesce(
                F.when(_usable_id(F.col(f"{EVENT}.event_id")), F.col(f"{EVENT}.event_id")),
                F.concat_ws("-", F.col("topic"), F.col("partition"), F.col("offset")),
            ),
            PATIENT_ID: patient_id_column(),
            EVENT_TS: event_time_column(),
        }
    )
    checks = [check for f in clinical_fields() for check in field_checks(f, ranges)]
    checks.append((F.col(PATIENT_ID).isNull(), "NO_PATIENT_ID", "neither a patient_id field nor a message key"))
    checks.append(
        (
            F.col(f"{EVENT}.event_time").isNotNull() & F.col(EVENT_TS).isNull(),
            "BAD_EVENT_TIME",
            "event_time must be ISO-8601 or epoch milliseconds",
        )
    )
    checks += event_time_checks(window)
    checks.append((_given_patient_id().isNull() & ~F.expr("is_valid_utf8(key)"), "KEY_NOT_UTF8", KEY_NOT_UTF8_DETAIL))
    checks.append((F.length(F.col(PATIENT_ID)) > MAX_ID_CHARS, "ID_TOO_LONG",
                   f"patient_id must be at most {MAX_ID_CHARS} characters"))
    checks.append((F.col(PATIENT_ID).rlike(CONTROL_CHARS) | F.col(f"{EVENT}.event_id").rlike(CONTROL_CHARS),
                   "ID_NOT_PRINTABLE", "patient_id and event_id must not hold control characters"))
    verdict = F.when(F.col(DECODE_ERROR).isNotNull(), F.lit(0))
    for position, (cond, _, _) in enumerate(checks, start=1):
        verdict = verdict.when(cond, F.lit(position))
    df = df.withColumn(_VERDICT, verdict)
    v = F.col(_VERDICT)
    codes = F.array(*[F.lit(c) for _, c, _ in checks])
    details = F.array(*[F.lit(d) for _, _, d in checks])
    generic = F.create_map(*[F.lit(x) for c in DECODE_CODES for x in (c, ERROR_CODES[c][1])])
    return df.withColumns(
        {
            ERROR_CODE: F.when(v == 0, F.col(DECODE_ERROR)).when(v > 0, F.element_at(codes, v)),
            ERROR_DETAIL: F.when(v == 0, F.coalesce(F.col(DECODE_DETAIL), generic[F.col(DECODE_ERROR)]))
            .when(v > 0, F.element_at(details, v)),
            STAGE: F.when(v == 0, F.lit("decode")).when(v > 0, F.lit("validate")),
        }
    ).drop(_VERDICT)
