"""Hostile and odd message values: the stream's bad-event kinds plus the corners of Spark's JSON reading.

Each is (name, value bytes), sent with no message key. The stream's verdict on
each (decode + validate, in Spark) is the truth the HTTP service must repeat;
``tests/unit/test_check_parity.py`` and ``tests/integration/test_serve.py``
compare them. Some are valid on purpose (Spark accepts them).
"""

from __future__ import annotations

import json
import random

from stream.app.produce import BAD_EVENT_KINDS

EXAMPLE = {
    "Age": 54, "Blood_Pressure": 130, "Cholesterol": 242, "Heart_Rate": 150, "Sex": "Male",
    "angina": "Asymptomatic", "Glycemia": "Less than 120 mg/dl", "ECG": "Normal",
    "angina_after_sport": "No", "ecg_slope": "Rising", "fluoroscopy": 2, "thalassemia": "No",
    "patient_id": "hostile-1",
}
BASE = json.dumps(EXAMPLE)


def _sub(old: str, new: str) -> bytes:
    assert old in BASE
    return BASE.replace(old, new, 1).encode()


def _add(extra: str) -> bytes:
    return (BASE[:-1] + ", " + extra + "}").encode()


ODD: list[tuple[str, bytes]] = [
    ("dup_key_later_bad", _sub('"Age": 54', '"Age": 54, "Age": "x"')),
    ("dup_key_earlier_bad", _sub('"Age": 54', '"Age": "x", "Age": 54')),
    ("dup_key_later_wins", _sub('"Age": 54', '"Age": 54, "Age": 60')),
    ("dup_key_later_null", _sub('"Age": 54', '"Age": 54, "Age": null')),
    ("dup_nullable_null", _sub('"fluoroscopy": 2', '"fluoroscopy": 2, "fluoroscopy": null')),
    ("lowercase_name", _sub('"Age": 54', '"age": 54')),
    ("age_empty_string", _sub('"Age": 54', '"Age": ""')),
    ("age_overflow", _sub('"Age": 54', '"Age": 99999999999')),
    ("age_float", _sub('"Age": 54', '"Age": 54.0')),
    ("age_exponent", _sub('"Age": 54', '"Age": 5.4e1')),
    ("age_bool", _sub('"Age": 54', '"Age": true')),
    ("age_array", _sub('"Age": 54', '"Age": [54]')),
    ("age_object", _sub('"Age": 54', '"Age": {"v": 54}')),
    ("age_minus_zero", _sub('"Age": 54', '"Age": -0')),
    ("age_leading_zero", _sub('"Age": 54', '"Age": 054')),
    ("age_nan", _sub('"Age": 54', '"Age": NaN')),
    ("bp_string", _sub('"Blood_Pressure": 130', '"Blood_Pressure": "130"')),
    ("bp_string_nan", _sub('"Blood_Pressure": 130', '"Blood_Pressure": "NaN"')),
    ("bp_bare_nan", _sub('"Blood_Pressure": 130', '"Blood_Pressure": NaN')),
    ("bp_bare_infinity", _sub('"Blood_Pressure": 130', '"Blood_Pressure": Infinity')),
    ("bp_bare_plus_infinity", _sub('"Blood_Pressure": 130', '"Blood_Pressure": +Infinity')),
    ("bp_bare_minus_inf", _sub('"Blood_Pressure": 130', '"Blood_Pressure": -INF')),
    ("bp_bare_inf", _sub('"Blood_Pressure": 130', '"Blood_Pressure": INF')),
    ("bp_string_infinity", _sub('"Blood_Pressure": 130', '"Blood_Pressure": "-Infinity"')),
    ("bp_string_inf", _sub('"Blood_Pressure": 130', '"Blood_Pressure": "INF"')),
    ("bp_1e400", _sub('"Blood_Pressure": 130', '"Blood_Pressure": 1e400')),
    ("bp_plus_sign", _sub('"Blood_Pressure": 130', '"Blood_Pressure": +130')),
    ("bp_trailing_dot", _sub('"Blood_Pressure": 130', '"Blood_Pressure": 130.')),
    ("bp_exponent", _sub('"Blood_Pressure": 130', '"Blood_Pressure": 1.3E+2')),
    ("bp_edge_low", _sub('"Blood_Pressure": 130', '"Blood_Pressure": 80')),
    ("bp_under", _sub('"Blood_Pressure": 130', '"Blood_Pressure": 79.999')),
    ("chol_huge_int", _sub('"Cholesterol": 242', '"Cholesterol": 99999999999999999999999')),
    ("sex_number", _sub('"Sex": "Male"', '"Sex": 1')),
    ("sex_array", _sub('"Sex": "Male"', '"Sex": ["Male"]')),
    ("sex_padded", _sub('"Sex": "Male"', '"Sex": "Male "')),
    ("sex_escaped", _sub('"Sex": "Male"', '"Sex": "M\\u0061le"')),
    ("fluoroscopy_empty", _sub('"fluoroscopy": 2', '"fluoroscopy": ""')),
    ("fluoroscopy_null", _sub('"fluoroscopy": 2', '"fluoroscopy": null')),
    ("thal_empty", _sub('"thalassemia": "No"', '"thalassemia": ""')),
    ("thal_null", _sub('"thalassemia": "No"', '"thalassemia": null')),
    ("single_quotes", BASE.replace('"', "'").encode()),
    ("trailing_words", (BASE + " trailing").encode()),
    ("trailing_brace", (BASE + "}").encode()),
    ("second_object", (BASE + '{"b": 2}').encode()),
    ("leading_whitespace", (" \n\t" + BASE).encode()),
    ("bom", ("\ufeff" + BASE).encode()),
    ("trailing_comma", (BASE[:-1] + ", }").encode()),
    ("comment", (BASE[:-1] + ', "x": 1 // c\n}').encode()),
    ("raw_control_char", (BASE[:-1] + ', "x": "a\x01b"}').encode()),
    ("bad_escape", _add('"x": "\\q"')),
    ("unquoted_name", _add("x: 1")),
    ("array_of_event", ("[" + BASE + "]").encode()),
    ("scalar_then_junk", b"42 x"),
    ("null_then_junk", b"null x"),
    ("bare_null", b"null"),
    ("bare_true", b"true"),
    ("bare_float", b"1.5"),
    ("bare_string", b'"x"'),
    ("empty_object", b"{}"),
    ("empty_array", b"[]"),
    ("blank", b"   "),
    ("truncated", b'{"Age": 54'),
    ("deep_nesting", b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("patient_id_number", _sub('"patient_id": "hostile-1"', '"patient_id": 12')),
    ("patient_id_float", _sub('"patient_id": "hostile-1"', '"patient_id": 1e2')),
    ("patient_id_nested", _sub('"patient_id": "hostile-1"', '"patient_id": [1, "a\\n", {"b": null}, true]')),
    ("patient_id_spaces", _sub('"patient_id": "hostile-1"', '"patient_id": "   "')),
    ("patient_id_tabs", _sub('"patient_id": "hostile-1"', '"patient_id": "\\t p1 \\t"')),
    ("patient_id_escape_seq", _sub('"patient_id": "hostile-1"', '"patient_id": "a\\u001b[31m"')),
    ("patient_id_empty", _sub('"patient_id": "hostile-1"', '"patient_id": ""')),
    ("event_id_empty", _add('"event_id": ""')),
    ("event_id_number", _add('"event_id": 5')),
    ("time_seconds", _add('"event_time": 1764151200')),
    ("time_millis_string", _add('"event_time": " 1764151200000 "')),
    ("time_millis_float", _add('"event_time": 1764151200000.0')),
    ("time_16_digits", _add('"event_time": 1764151200000000')),
    ("time_date_only", _add('"event_time": "2026-11-26"')),
    ("time_no_seconds", _add('"event_time": "2026-11-26 10:00"')),
    ("time_offset", _add('"event_time": "2026-11-26T10:00:00+01:00"')),
    ("time_short_offset", _add('"event_time": "2026-11-26T10:00:00+1:00"')),
    ("time_compact_offset", _add('"event_time": "2026-11-26T10:00:00-0530"')),
    ("time_region", _add('"event_time": "2026-11-26T10:00:00Europe/Paris"')),
    ("time_short_id", _add('"event_time": "2026-11-26T10:00:00 EST"')),
    ("time_gmt_offset", _add('"event_time": "2026-11-26T10:00:00GMT+2"')),
    ("time_fraction", _add('"event_time": "2026-11-26 10:00:00.123456789"')),
    ("time_t_only", _add('"event_time": "2026-11-26T"')),
    ("time_year_only", _add('"event_time": "2026"')),
    ("time_year_month", _add('"event_time": "2026-11"')),
    ("time_five_digit_year", _add('"event_time": "12026-11-26"')),
    ("time_far_future_millis", _add('"event_time": "999999999999999"')),
    ("time_bc", _add('"event_time": "-0044-03-15"')),
    ("time_feb_30", _add('"event_time": "2026-02-30"')),
    ("time_hour_25", _add('"event_time": "2026-11-26T25:00:00"')),
    ("time_words", _add('"event_time": "yesterday"')),
    ("time_empty", _add('"event_time": ""')),
    ("time_bool", _add('"event_time": true')),
    ("time_null", _add('"event_time": null')),
    ("time_bad_zone", _add('"event_time": "2026-11-26T10:00:00 Mars/Olympus"')),
    ("event_id_256_chars", _add('"event_id": "' + "e" * 256 + '"')),
    ("event_id_257_chars", _add('"event_id": "' + "e" * 257 + '"')),
    ("patient_id_256_chars", _sub('"patient_id": "hostile-1"', '"patient_id": "' + "p" * 256 + '"')),
    ("patient_id_257_chars", _sub('"patient_id": "hostile-1"', '"patient_id": "' + "p" * 257 + '"')),
    ("patient_id_256_emoji", _sub('"patient_id": "hostile-1"', '"patient_id": "' + "\U0001f600" * 256 + '"')),
    ("event_id_escape_seq", _add('"event_id": "e\\u001b]0;pwned\\u0007"')),
    ("event_id_c1_control", _add('"event_id": "e\\u0085x"')),
    ("patient_id_del", _sub('"patient_id": "hostile-1"', '"patient_id": "p\\u007f"')),
    ("patient_id_nbsp_ok", _sub('"patient_id": "hostile-1"', '"patient_id": "p\\u00a0q"')),
    ("patient_id_600k", _sub('"patient_id": "hostile-1"', '"patient_id": "' + "p" * 600_000 + '"')),
    ("not_utf8_in_string", b'{"Age": "\xff"}'),
    ("overlong_utf8", b'{"Age": "\xc0\xaf"}'),
    ("surrogate_utf8", b'{"Age": "\xed\xa0\x80"}'),
    ("escaped_surrogate", _sub('"patient_id": "hostile-1"', '"patient_id": "\\ud800x"')),
]


def avro_long(n: int) -> bytes:
    """An Avro long (zig-zag varint): what a frame declares as a string's length, say."""
    z, out = (n << 1) ^ (n >> 63), bytearray()
    while True:
        byte, z = z & 0x7F, z >> 7
        out.append(byte | (0x80 if z else 0))
        if not z:
            return bytes(out)


def hostile_table() -> list[tuple[str, bytes]]:
    """Every hostile value (key-free): the stream's bad-event kinds that HTTP can send, then the odd ones."""
    out = []
    for kind, (_, build) in sorted(BAD_EVENT_KINDS.items()):
        if kind in ("tombstone", "too_large"):  # no HTTP body is null; too_large is a 413 of its own
            continue
        _, value = build(0)
        assert value is not None
        out.append((kind, value))
    return out + ODD


TOKENS = [
    0, 1, -1, 3, 4, 54, 120, 121, -0.0, 80, 79.9, 250.5, 600, 601, 2**31, -(2**31) - 1, 1e308, 0.5, 54.0, 1e-7,
    "54", "", " ", "NaN", "Infinity", "-Infinity", "+Infinity", "inf", "Male", "Female", "male", "No", "Yes",
    "Asymptomatic", "Rising", "Normal", "Fixed defect", "Less than 120 mg/dl", "\u00e9", "\x1b[2J", "a\"b",
    True, False, None, [], [1], {}, {"a": [1, {"b": None}]}, 12345678.9, 1.5e21,
]
TIMES = [
    "2026-11-26T10:00:00Z", "2026-11-26", "2026-1-2 3:4:5", "2026-11-26T10:00:00.5+05:30", "T10:00:00",
    "10:00:00", "10:00", "+2026-11-26", "-2026-11-26", "2026-11-26T10:00:00 UTC", "2026-11-26T10:00:00GMT",
    "2026-11-26T10:00:00UT+1", "2026-11-26T10:00:00 Asia/Tokyo", "2026-11-26T10:00:00+18:00",
    "2026-11-26T10:00:00+19:00", "2026-13-01", "2026-11-31", "2024-02-29", "2023-02-29", "99999-01-01",
    "1764151200000", "-1", "0", "12", "1234567890123456", " 42 ", "2026-11-26T10:00:00.1234567Z", "2026/11/26",
    1764151200000, 1764151200, -5, 1.5, True, None, [], "", "\t2026-11-26\n",
]
FIELDS = [*EXAMPLE.keys(), "event_id", "event_time", "source"]


def mutant(rng: random.Random, base: dict | None = None) -> bytes:
    """A seeded mutation of a valid event (``base``, default ``EXAMPLE``): fields replaced, dropped or named twice,
    odd tokens and times, text truncated or trailed, quotes swapped, a byte flipped."""
    pairs = list((base or EXAMPLE).items())
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        name = rng.choice(FIELDS)
        token = rng.choice(TIMES if name == "event_time" else TOKENS)
        if op < 0.5:
            pairs = [(k, token if k == name else v) for k, v in pairs]
            if name not in dict(pairs):
                pairs.append((name, token))
        elif op < 0.65:
            pairs = [(k, v) for k, v in pairs if k != name]
        elif op < 0.8:
            pairs.insert(rng.randrange(len(pairs) + 1), (name, token))
        else:
            pairs.append(("event_time", rng.choice(TIMES)))
    text = "{" + ", ".join(json.dumps(k) + ": " + json.dumps(v) for k, v in pairs) + "}"
    r = rng.random()
    if r < 0.05:
        text = text[: rng.randrange(len(text))]
    elif r < 0.1:
        text += rng.choice([" x", "}", "\n", " {}", ","])
    elif r < 0.13:
        text = text.replace('"', "'")
    value = text.encode()
    if rng.random() < 0.03:
        i = rng.randrange(len(value))
        value = value[:i] + bytes([rng.randrange(256)]) + value[i + 1:]
    return value
