"""Decode and validate as Spark expressions, on a local SparkSession (no broker)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from stream.app.produce import BAD_EVENT_KINDS, bad_event
from stream.contract.codes import ERROR_CODES, stage_of
from stream.pipeline.decode import decode_events
from stream.pipeline.validate import validate_events
from tests.helpers import kafka_rows

EXAMPLE = {
    "Age": 54, "Blood_Pressure": 130, "Cholesterol": 242, "Heart_Rate": 150, "Sex": "Male",
    "angina": "Asymptomatic", "Glycemia": "Less than 120 mg/dl", "ECG": "Normal",
    "angina_after_sport": "No", "ecg_slope": "Rising", "fluoroscopy": 2, "thalassemia": "No",
}
TS = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _rows(spark, messages):
    df = kafka_rows(spark, messages, timestamp=TS)
    return validate_events(decode_events(df)).orderBy("offset").collect()


def _body(**changes):
    body = dict(EXAMPLE)
    body.update(changes)
    return json.dumps(body).encode()


def test_every_bad_kind_gets_its_code_and_stage(spark):
    kinds = sorted(BAD_EVENT_KINDS)
    events = [bad_event(k, i) for i, k in enumerate(kinds)]
    rows = _rows(spark, [(e.key, e.value) for e in events])
    got = {k: (r.error_code, r.stage) for k, r in zip(kinds, rows, strict=True)}
    want = {k: (e.expected_code, stage_of(e.expected_code)) for k, e in zip(kinds, events, strict=True)}
    assert got == want
    assert len({c for c, _ in got.values()}) >= 12
    for r in rows:
        assert r.error_detail, r.error_code
        assert r.error_code in ERROR_CODES


def test_example_patient_is_valid_with_envelope_defaults(spark):
    (row,) = _rows(spark, [(b"patient-7", json.dumps(EXAMPLE).encode())])
    assert row.error_code is None and row.stage is None
    assert row.patient_id == "patient-7", "patient_id falls back to the message key"
    assert row.event_id == "t-0-0", "event_id derives from topic, partition and offset"
    assert row.event_ts == TS.replace(tzinfo=None), "event_time falls back to the Kafka timestamp"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (_body(Age=54.5), "WRONG_TYPE"),
        (_body(Age="54"), "WRONG_TYPE"),
        (_body(fluoroscopy="two"), "WRONG_TYPE"),
        (_body(fluoroscopy=4), "OUT_OF_RANGE"),
        (_body(Blood_Pressure=79.9), "OUT_OF_RANGE"),
        (_body(Heart_Rate=221), "OUT_OF_RANGE"),
        (_body(Cholesterol=601), "OUT_OF_RANGE"),
        (_body(thalassemia="Normal"), "INVALID_ENUM"),
        (_body(ECG="normal"), "INVALID_ENUM"),
        (_body(Sex=3), "INVALID_ENUM"),
        (b"null", "NOT_AN_OBJECT"),
        (b"42", "NOT_AN_OBJECT"),
        (b'"text"', "NOT_AN_OBJECT"),
        (b"{}", "MISSING_FIELD"),
        (b"   ", "NOT_JSON"),
        (b"\xc3\x28", "NOT_UTF8"),
        (_body(event_time="2026-13-45T99:00:00Z"), "BAD_EVENT_TIME"),
    ],
)
def test_single_failures(spark, value, code):
    (row,) = _rows(spark, [(b"k", value)])
    assert row.error_code == code, row.error_detail


def test_nullable_fields_accept_null_and_absent(spark):
    absent = dict(EXAMPLE)
    del absent["fluoroscopy"]
    rows = _rows(spark, [(b"k", _body(fluoroscopy=None, thalassemia=None)), (b"k", json.dumps(absent).encode())])
    assert [r.error_code for r in rows] == [None, None]


def test_envelope_fields_are_used_and_extra_fields_ignored(spark):
    value = _body(event_id="e-1", patient_id="p-1", event_time="2026-11-26T10:00:00Z", source="ehr", extra={"a": 1})
    (row,) = _rows(spark, [(None, value)])
    assert (row.error_code, row.event_id, row.patient_id) == (None, "e-1", "p-1")
    assert row.event_ts == datetime(2026, 11, 26, 10, 0, 0)
    (millis,) = _rows(spark, [(b"k", _body(event_time=1764151200000))])
    assert millis.event_ts == datetime(2025, 11, 26, 10, 0, 0)


def test_first_failing_check_wins_in_field_order(spark):
    (row,) = _rows(spark, [(b"k", _body(Age=500, Sex="X"))])
    assert row.error_code == "OUT_OF_RANGE"
    assert "Age" in row.error_detail


def test_a_widened_range_accepts_what_the_contract_rejects(spark):
    df = kafka_rows(spark, [(b"p", _body(Cholesterol=650)), (b"p", _body(Cholesterol=750))], timestamp=TS)
    strict = validate_events(decode_events(df)).orderBy("offset").collect()
    assert [r.error_code for r in strict] == ["OUT_OF_RANGE", "OUT_OF_RANGE"]
    assert "[100, 600]" in strict[0].error_detail
    wide = validate_events(decode_events(df), {"Cholesterol": (100.0, 700.0)}).orderBy("offset").collect()
    assert [r.error_code for r in wide] == [None, "OUT_OF_RANGE"]
    assert "[100, 700]" in wide[1].error_detail


def _now_ms() -> int:
    return int(datetime.now(timezone.utc).timestamp() * 1000)


def test_strict_json_rejects_what_a_lenient_reader_would_score(spark):
    base = _body()
    messages = [
        (b"k", base[:-1] + b', "Age": "x"}'),  # a field named twice: the later value would win
        (b"k", base[:-1] + b', "Age": 60}'),
        (b"k", base + b" trailing"),
        (b"k", base + b'{"Age": 1}'),
        (b"k", base + b"}"),
        (b"k", base + b" \n\t\r"),  # white space after the object is fine
        (b"k", base.replace(b'"', b"'")),
        (b"k", _body(event_id="e-9", note={"Age": 1, "Age2": 2})),  # nested names are not the root's
    ]
    rows = _rows(spark, messages)
    assert [r.error_code for r in rows] == [
        "DUPLICATE_FIELD", "DUPLICATE_FIELD", "NOT_JSON", "NOT_JSON", "NOT_JSON", None, "NOT_JSON", None,
    ]
    assert [r.stage for r in rows[:5]] == ["decode"] * 5
    assert rows[2].error_detail == "the JSON value is followed by more than white space"
    # a rejected text gives no envelope: the derived event_id, the Kafka timestamp
    (dup_with_id,) = _rows(spark, [(b"k", _body(event_id="e-1", event_time=_now_ms())[:-1] + b', "Sex": "F"}')])
    assert (dup_with_id.error_code, dup_with_id.event_id) == ("DUPLICATE_FIELD", "t-0-0")
    assert dup_with_id.event_ts == TS.replace(tzinfo=None)


def test_event_time_outside_the_window_is_dead_lettered_and_seconds_are_named(spark):
    now = _now_ms()
    day = 86_400_000
    messages = [
        (b"k", _body(event_time=now)),
        (b"k", _body(event_time=now - 3649 * day)),
        (b"k", _body(event_time=now - 3651 * day)),
        (b"k", _body(event_time=now + 2 * day)),
        (b"k", _body(event_time=now // 1000)),  # epoch seconds, read as milliseconds: January 1970
        (b"k", _body(event_time="+33026-01-01T00:00:00Z")),  # 31,000 years on
        (b"k", _body(event_time="-29000-01-01")),
        (b"k", _body()),  # no event_time: the Kafka timestamp, never checked against the window
    ]
    df = kafka_rows(spark, messages, timestamp=TS)  # (Python's datetime cannot hold year 33026: no event_ts)
    rows = validate_events(decode_events(df)).select("offset", "error_code", "error_detail", "stage")
    rows = rows.orderBy("offset").collect()
    codes = [r.error_code for r in rows]
    assert codes == [None, None, *["EVENT_TIME_OUT_OF_WINDOW"] * 2, "EVENT_TIME_OUT_OF_WINDOW",
                     "EVENT_TIME_OUT_OF_WINDOW", codes[6], None]
    assert codes[6] in ("EVENT_TIME_OUT_OF_WINDOW", "BAD_EVENT_TIME"), "a year before 1 is out either way"
    assert rows[2].error_detail == "event_time must be at most 3650d before and 1d after it is scored"
    assert rows[4].error_detail == "event_time looks like epoch seconds: send epoch milliseconds (seconds x 1000)"
    assert {r.stage for r in rows[2:6]} == {"validate"}


def test_the_window_is_a_setting_and_off_checks_nothing(spark):
    now = _now_ms()
    df = kafka_rows(spark, [(b"k", _body(event_time=now - 2 * 3_600_000)), (b"k", _body(event_time=0))],
                    timestamp=TS)
    narrow = validate_events(decode_events(df), window=(3_600_000, 60_000)).orderBy("offset").collect()
    assert [r.error_code for r in narrow] == ["EVENT_TIME_OUT_OF_WINDOW", "EVENT_TIME_OUT_OF_WINDOW"]
    assert narrow[0].error_detail == "event_time must be at most 1h before and 1m after it is scored"
    off = validate_events(decode_events(df), window=None).orderBy("offset").collect()
    assert [r.error_code for r in off] == [None, None]


def test_a_key_standing_in_for_patient_id_must_be_utf8(spark):
    rows = _rows(spark, [(b"p\xff\xfeq", _body()), (b"p\xff\xfeq", _body(patient_id="p-1")), (b"p-2", _body())])
    assert [(r.error_code, r.patient_id) for r in rows] == [
        ("KEY_NOT_UTF8", rows[0].patient_id), (None, "p-1"), (None, "p-2"),
    ]
    assert rows[0].stage == "validate"


def test_an_avro_frame_declaring_a_2gb_string_is_corrupt_not_an_out_of_memory(spark):
    from stream.contract.avro import event_schema_versions, frame, load_avsc
    from stream.contract.writer_schemas import Writer
    from tests.hostile import avro_long

    v1 = json.dumps(load_avsc(event_schema_versions()[1]))
    # event_id is the union's string branch (index 1), whose length the frame says is 2,000,000,000 bytes
    bomb = frame(7, avro_long(1) + avro_long(2_000_000_000) + b"abc")
    df = kafka_rows(spark, [(b"k", bomb), (b"k", frame(7, avro_long(1) + avro_long(1_048_577) + b"x"))], timestamp=TS)
    rows = decode_events(df, "avro", {7: Writer(7, "ok", v1)}).orderBy("offset").collect()
    assert [r.decode_error for r in rows] == ["CORRUPT_AVRO", "CORRUPT_AVRO"]


def test_the_avro_limits_stay_under_a_users_own_jvm_options():
    from stream.config import load_settings
    from stream.session import AVRO_LIMITS, spark_conf

    conf = spark_conf(load_settings({"spark_conf": {"spark.executor.extraJavaOptions": "-Dx=1"}}), False)
    assert conf["spark.executor.extraJavaOptions"] == f"{AVRO_LIMITS} -Dx=1"
    assert conf["spark.driver.extraJavaOptions"].startswith(AVRO_LIMITS)
    assert "-Dorg.apache.avro.limits.string.maxLength=1048576" in AVRO_LIMITS


def test_a_plan_for_a_flood_of_unknown_ids_is_one_set_not_a_branch_per_id(spark):
    import time

    from stream.contract.avro import event_schema_versions, frame, load_avsc
    from stream.contract.writer_schemas import Writer
    from tests.hostile import avro_long

    v1 = json.dumps(load_avsc(event_schema_versions()[1]))
    writers = {7: Writer(7, "ok", v1)}
    writers.update({i: Writer(i, "unknown", asked=i < 10_100) for i in range(10_000, 30_000)})
    body = avro_long(1) + avro_long(2) + b"x"  # a short record start: enough to be framed
    df = kafka_rows(spark, [(b"k", frame(10_050, body)), (b"k", frame(29_999, body)), (b"k", frame(7, b""))],
                    timestamp=TS)
    started = time.monotonic()
    rows = decode_events(df, "avro", writers).orderBy("offset").collect()
    print(f"\nplan and decode with 20,001 planned schema ids: {time.monotonic() - started:.1f} s")
    assert [r.decode_error for r in rows] == ["UNKNOWN_SCHEMA_ID", "UNKNOWN_SCHEMA_ID", "CORRUPT_AVRO"]
    assert rows[0].decode_detail == "schema id 10050 is not in the registry"
    assert rows[1].decode_detail.startswith("schema id 29999 was not asked about: over 100 new schema ids")
