"""The event contract checked in plain Python: the stream's decode and validate verdict, without Spark.

``check_event(value, key)`` gives, for the same bytes, the code, detail and
stage the streaming scorer's dead letter would carry (JSON input), or the typed
event and its envelope (``event_id``, ``patient_id``, event time) when it is
valid. The checks are the ones ``stream.pipeline.validate`` builds as Spark
expressions, from the same field specs, in the same order (the first failing
wins); Spark's JSON reading and timestamp cast come from ``spark_json`` and
``spark_time``. A test sends the same bytes through both and compares.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from stream.contract.codes import (
    CONTROL_CHARS,
    DEFAULT_EVENT_TIME_WINDOW,
    ERROR_CODES,
    KEY_NOT_UTF8_DETAIL,
    MAX_ID_CHARS,
    MAX_MESSAGE_BYTES,
    SECONDS_DETAIL,
    TRAILING_DETAIL,
    window_detail,
)
from stream.contract.schema import ENVELOPE_FIELDS, FieldSpec, clinical_fields
from stream.contract.spark_json import JSON_WHITESPACE, NotJson, Pairs, map_lookup, parse_root, read_map, read_struct
from stream.contract.spark_time import EPOCH_MILLIS, event_time_micros
from stream.errors import ConfigError
from stream.spec import time_window_ms

Ranges = Mapping[str, tuple[float, float]]
Window = tuple[int, int] | None  # (past, future) in milliseconds around the time of checking; None: no window
DEFAULT_WINDOW = time_window_ms(DEFAULT_EVENT_TIME_WINDOW)


def parse_ranges(field_ranges: Mapping[str, str]) -> Ranges:
    """``Settings.field_ranges`` checked against the contract: {field: (lo, hi)}.

    Raises:
        ConfigError: an unknown or non-numeric field, or not ``lo:hi`` with lo <= hi.
    """
    numeric = {f.name for f in clinical_fields() if f.kind in ("integer", "number")}
    out: dict[str, tuple[float, float]] = {}
    for name, text in field_ranges.items():
        if name not in numeric:
            msg = f"field_ranges: {name!r} is not a numeric clinical field (one of {', '.join(sorted(numeric))})"
            raise ConfigError(msg)
        try:
            lo_text, hi_text = text.split(":")
            lo, hi = float(lo_text), float(hi_text)
        except ValueError as exc:
            msg = f"field_ranges: {name}={text!r} must be lo:hi, e.g. {name}=100:700"
            raise ConfigError(msg) from exc
        if lo > hi:
            msg = f"field_ranges: {name}={text!r} has lo > hi"
            raise ConfigError(msg)
        out[name] = (lo, hi)
    return out


_TYPE_WORD = {"integer": "an integer", "number": "a number", "category": "a string"}
_SPARK_TYPE = {"integer": "int", "number": "double", "category": "string"}
_CONTROL = re.compile(CONTROL_CHARS)


@dataclass(frozen=True)
class Checked:
    """One event's verdict: ``code`` is None for a valid event."""

    code: str | None
    detail: str | None
    stage: str | None
    field: str | None = None  # the clinical field a validate code is about
    event: dict[str, Any] = dataclasses.field(default_factory=dict)  # the typed event (clinical + envelope fields)
    event_id: str | None = None
    patient_id: str | None = None
    event_time_us: int | None = None

    @property
    def ok(self) -> bool:
        """Valid: to be scored."""
        return self.code is None


def _decode_error(code: str, event_id: str, detail: str | None = None) -> Checked:
    return Checked(code, detail or ERROR_CODES[code][1], "decode", event_id=event_id)


@lru_cache(maxsize=1)
def _struct_fields() -> dict[str, str]:
    out = dict.fromkeys(ENVELOPE_FIELDS, "string")
    out.update({f.name: _SPARK_TYPE[f.kind] for f in clinical_fields()})
    return out


def _not_object(text: str, rest: str, root: Any) -> str:
    """NOT_AN_OBJECT or NOT_JSON, as decode tells them apart (a non-null value alone, else not JSON)."""
    if text.strip(" ") == "null":
        return "NOT_AN_OBJECT"
    return "NOT_AN_OBJECT" if root is not None and rest.strip(" \t\n\r") == "" else "NOT_JSON"


def _field_failure(
    f: FieldSpec, v: Any, present: bool, raw: str | None, ranges: Ranges | None
) -> tuple[str, str] | None:
    """The first failing check of one field, as ``validate.field_checks`` orders them."""
    if v is None:
        if not f.nullable and not present:
            return "MISSING_FIELD", f"field {f.name} is missing"
        if not f.nullable and raw is None:
            return "NULL_FIELD", f"field {f.name} is null"
        if present and raw is not None:
            return "WRONG_TYPE", f"field {f.name} must be {_TYPE_WORD[f.kind]}"
        return None
    if f.kind == "number" and not math.isfinite(v):
        return "NOT_FINITE", f"field {f.name} must be a finite number"
    lo, hi = (ranges[f.name] if ranges and f.name in ranges else (f.minimum, f.maximum))
    if lo is not None or hi is not None:
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            return "OUT_OF_RANGE", f"field {f.name} must be within [{lo:g}, {hi:g}]"
    if f.values and v not in f.values:
        return "INVALID_ENUM", f"field {f.name} must be one of: {' | '.join(f.values)}"
    return None


def check_event(
    value: bytes | None,
    key: bytes | None,
    *,
    fallback_event_id: str,
    fallback_time_us: int,
    now_us: int,
    ranges: Ranges | None = None,
    window: Window = DEFAULT_WINDOW,
) -> Checked:
    """The stream's verdict on one JSON message (value and key bytes).

    ``fallback_event_id`` and ``fallback_time_us`` stand in for what the stream
    derives from the Kafka record (``<topic>-<partition>-<offset>``, its timestamp);
    ``now_us`` is the time of scoring, the middle of the event_time ``window``.
    """
    if value is None:
        return _decode_error("TOMBSTONE", fallback_event_id)
    if len(value) == 0:
        return _decode_error("EMPTY_VALUE", fallback_event_id)
    if len(value) > MAX_MESSAGE_BYTES:
        return _decode_error("MESSAGE_TOO_LARGE", fallback_event_id)
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return _decode_error("NOT_UTF8", fallback_event_id)
    try:
        root, rest = parse_root(text)
    except NotJson:
        return _decode_error("NOT_JSON", fallback_event_id)
    event = read_struct(root, _struct_fields())
    fields = clinical_fields()
    some_null = event is None or any(event[f.name] is None for f in fields)
    pairs = read_map(root) if some_null else None
    if some_null and pairs is None:
        return _decode_error(_not_object(text, rest, root), fallback_event_id)
    if rest.strip(JSON_WHITESPACE):
        return _decode_error("NOT_JSON", fallback_event_id, TRAILING_DETAIL)
    if isinstance(root, Pairs) and len({k for k, _ in root}) < len(root):
        return _decode_error("DUPLICATE_FIELD", fallback_event_id)
    assert event is not None
    given_id = event["event_id"]
    usable = given_id and len(given_id) <= MAX_ID_CHARS and not _CONTROL.search(given_id)
    event_id = given_id if usable else fallback_event_id
    patient_id = _patient_id(event.get("patient_id"), key)
    time_us, given = event_time_micros(event["event_time"], fallback_time_us, now_us)
    valid = Checked(None, None, None, event=event, event_id=event_id, patient_id=patient_id, event_time_us=time_us)
    for f in fields:
        present, raw = map_lookup(pairs, f.name)
        failure = _field_failure(f, event[f.name], present, raw, ranges)
        if failure:
            return _failed(valid, failure[0], failure[1], f.name)
    if patient_id is None:
        return _failed(valid, "NO_PATIENT_ID", "neither a patient_id field nor a message key", "patient_id")
    if given and time_us is None:
        return _failed(valid, "BAD_EVENT_TIME", "event_time must be ISO-8601 or epoch milliseconds", "event_time")
    outside = _window_failure(event["event_time"], time_us if given else None, now_us, window)
    if outside:
        return _failed(valid, "EVENT_TIME_OUT_OF_WINDOW", outside, "event_time")
    if not (event.get("patient_id") or "").strip(" ") and key is not None and not _utf8(key):
        return _failed(valid, "KEY_NOT_UTF8", KEY_NOT_UTF8_DETAIL, "patient_id")
    if len(patient_id) > MAX_ID_CHARS:
        return _failed(valid, "ID_TOO_LONG", f"patient_id must be at most {MAX_ID_CHARS} characters", "patient_id")
    if _CONTROL.search(patient_id) or (given_id is not None and _CONTROL.search(given_id)):
        field = "patient_id" if _CONTROL.search(patient_id) else "event_id"
        return _failed(valid, "ID_NOT_PRINTABLE", "patient_id and event_id must not hold control characters", field)
    return valid


def _window_failure(raw: str | None, time_us: int | None, now_us: int, window: Window) -> str | None:
    """The detail of a given event_time outside the window (epoch numbers read as seconds told apart), else None."""
    if window is None or raw is None or time_us is None:
        return None
    past, future = window
    now_ms = now_us // 1000
    if now_ms - past <= time_us // 1000 <= now_ms + future:
        return None
    text = raw.strip(" ")
    if EPOCH_MILLIS.fullmatch(text) and now_ms - past <= int(text) * 1000 <= now_ms + future:
        return SECONDS_DETAIL
    return window_detail(past, future)


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _failed(valid: Checked, code: str, detail: str, field: str) -> Checked:
    return dataclasses.replace(valid, code=code, detail=detail, stage="validate", field=field)


def _patient_id(from_event: str | None, key: bytes | None) -> str | None:
    """``patient_id`` from the event, else the key; trimmed of spaces, empty counts as absent."""
    if from_event is not None and from_event.strip(" "):
        return from_event.strip(" ")
    if key is not None:
        text = key.decode("utf-8", "replace").strip(" ")
        return text or None
    return None
