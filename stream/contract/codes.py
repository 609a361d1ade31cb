"""The closed list of dead-letter error codes, with the stage that emits each.

Every rejected event carries exactly one of these in ``error_code``; consumers
may switch on them. Adding a code is a contract change: document it in the README.
"""

from __future__ import annotations

from typing import Literal

Stage = Literal["decode", "validate", "score"]

# code -> (stage, meaning)
ERROR_CODES: dict[str, tuple[Stage, str]] = {
    "TOMBSTONE": ("decode", "the message value is null (a Kafka tombstone)"),
    "EMPTY_VALUE": ("decode", "the message value is zero bytes long"),
    "MESSAGE_TOO_LARGE": ("decode", "the message value is over 1 MiB"),
    "NOT_UTF8": ("decode", "the message value is not valid UTF-8"),
    "NOT_JSON": ("decode", "the message value is not valid JSON"),
    "NOT_AN_OBJECT": ("decode", "the message value is JSON but not an object"),
    "DUPLICATE_FIELD": ("decode", "a field of the event object is named more than once"),
    "BAD_MAGIC_BYTE": ("decode", "input format avro: the first byte is not the Confluent magic byte 0"),
    "UNKNOWN_SCHEMA_ID": ("decode", "the schema id in bytes 1-4 is not in the schema registry"),
    "REGISTRY_UNAVAILABLE": (
        "decode",
        "the schema registry did not answer (only with HEARTRISK_REGISTRY_UNAVAILABLE=dead-letter; "
        "the default pauses instead)",
    ),
    "CORRUPT_AVRO": (
        "decode",
        "the Avro payload is truncated or corrupt: it does not decode with its writer schema",
    ),
    "INCOMPATIBLE_SCHEMA": (
        "decode",
        "the writer schema is not Avro, or cannot be resolved against the reader schema "
        "(e.g. a required field removed)",
    ),
    "MISSING_FIELD": ("validate", "a required clinical field is absent"),
    "NULL_FIELD": ("validate", "a required clinical field is null"),
    "WRONG_TYPE": ("validate", "a field has the wrong JSON type (e.g. a string where a number belongs)"),
    "NOT_FINITE": ("validate", "a number is NaN or infinite"),
    "OUT_OF_RANGE": ("validate", "a number is outside its allowed range"),
    "INVALID_ENUM": ("validate", "a category is not one of its allowed values"),
    "NO_PATIENT_ID": ("validate", "neither a patient_id field nor a message key"),
    "BAD_EVENT_TIME": ("validate", "event_time is neither ISO-8601 nor epoch milliseconds"),
    "EVENT_TIME_OUT_OF_WINDOW": (
        "validate",
        "event_time is outside the plausible window around the time it is scored (HEARTRISK_EVENT_TIME_WINDOW); "
        "an epoch number in seconds, read as milliseconds, lands here",
    ),
    "KEY_NOT_UTF8": ("validate", "the message key stands in for patient_id and is not valid UTF-8"),
    "ID_TOO_LONG": ("validate", "patient_id (or the message key standing in for it) is over 256 characters"),
    "ID_NOT_PRINTABLE": (
        "validate",
        "patient_id or event_id holds a control character (U+0000-U+001F, U+007F-U+009F: a terminal escape, say)",
    ),
    "SCORE_FAILED": ("score", "the model produced no finite probability"),
}

# event_time's plausible window around the time an event is scored (HEARTRISK_EVENT_TIME_WINDOW): ten
# years back (a backfill), one day ahead (clock skew, a local time sent as UTC). Epoch numbers are always
# milliseconds: seconds read as milliseconds fall in January 1970, far outside it.
DEFAULT_EVENT_TIME_WINDOW = "3650d:1d"
# NOT_JSON's detail when the value is JSON followed by more than white space ({...} trailing, {...}{...})
TRAILING_DETAIL = "the JSON value is followed by more than white space"
# KEY_NOT_UTF8's detail (the stream's and the HTTP service's)
KEY_NOT_UTF8_DETAIL = "the message key stands in for patient_id and must be valid UTF-8"
# EVENT_TIME_OUT_OF_WINDOW's detail when the number fits the window once read as epoch seconds
SECONDS_DETAIL = "event_time looks like epoch seconds: send epoch milliseconds (seconds x 1000)"

DECODE_CODES = tuple(c for c, (s, _) in ERROR_CODES.items() if s == "decode")

MAX_MESSAGE_BYTES = 1024 * 1024
# A dead letter keeps at most this many bytes of the original value (base64 in
# JSON); the full message stays in the input topic at the recorded offset.
MAX_DEAD_LETTER_VALUE_BYTES = 256 * 1024
# ... and at most this many bytes of the original key, as its key and in key_base64, so that a dead
# letter always fits a topic's usual 1 MiB limit, whatever the input (a batch that cannot write its
# dead letters would fail, and fail again on every restart).
MAX_DEAD_LETTER_KEY_BYTES = 64 * 1024
# patient_id and event_id at most this many characters: a longer event_id is replaced by the derived
# <topic>-<partition>-<offset>; a longer patient_id is the dead letter ID_TOO_LONG.
MAX_ID_CHARS = 256
# The control characters (Unicode category Cc) no id may hold; the same class in Java and Python regexes.
CONTROL_CHARS = "[\\x00-\\x1f\\x7f-\\x9f]"


def _duration(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def window_detail(past_ms: int, future_ms: int) -> str:
    """EVENT_TIME_OUT_OF_WINDOW's detail for a window (of ``HEARTRISK_EVENT_TIME_WINDOW``, in milliseconds)."""
    return f"event_time must be at most {_duration(past_ms)} before and {_duration(future_ms)} after it is scored"


def stage_of(code: str) -> Stage:
    """The stage that emits a code."""
    return ERROR_CODES[code][0]
