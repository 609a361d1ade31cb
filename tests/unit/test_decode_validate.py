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
