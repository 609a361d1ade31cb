"""Avro helpers: framing, schema resolution rules, and the schemas/ versions' compatibility."""

from __future__ import annotations

import copy
import io
import json

import fastavro
import pytest

from stream.contract.avro import (
    compatibility_error,
    event_schema_versions,
    frame,
    load_avsc,
    parse_header,
    prediction_schema,
    reader_schema,
)

V = event_schema_versions()


def _v(n: int) -> dict:
    return load_avsc(V[n])


def _without(schema: dict, name: str) -> dict:
    out = copy.deepcopy(schema)
    out["fields"] = [f for f in out["fields"] if f["name"] != name]
    return out


def _retyped(schema: dict, name: str, new_type) -> dict:
    out = copy.deepcopy(schema)
    for f in out["fields"]:
        if f["name"] == name:
            f["type"] = new_type
    return out


def test_frame_round_trip_and_header_layout():
    framed = frame(0x01020304, b"payload")
    assert framed[:5] == b"\x00\x01\x02\x03\x04"
    assert parse_header(framed) == (0x01020304, b"payload")
    with pytest.raises(ValueError, match="not a Confluent-framed"):
        parse_header(b"\x01\x00\x00\x00\x01x")
    with pytest.raises(ValueError):
        parse_header(b"\x00\x00")


def test_there_are_two_event_versions_and_the_reader_is_the_newest():
    assert sorted(V) == [1, 2]
    assert json.loads(reader_schema()) == _v(2)
    assert "facility_id" in {f["name"] for f in _v(2)["fields"]}
    assert "facility_id" not in {f["name"] for f in _v(1)["fields"]}


@pytest.mark.parametrize("version", sorted(V)[1:])
def test_each_event_version_is_backward_compatible_with_the_one_before(version):
    """A reader on version N reads data written with N-1 (and, by our rules, the reverse too)."""
    assert compatibility_error(_v(version - 1), _v(version)) is None
    assert compatibility_error(_v(version), _v(version - 1)) is None


@pytest.mark.parametrize("version", sorted(V)[1:])
def test_resolution_really_works_on_data_with_fastavro(version):
    old, new = _v(version - 1), _v(version)
    event = {
        "event_id": "e1", "patient_id": "p1", "event_time": 1700000000000, "source": "x",
        "Age": 54, "Blood_Pressure": 130.0, "Cholesterol": 242.0, "Heart_Rate": 150.0, "Sex": "Male",
        "angina": "Asymptomatic", "Glycemia": "Less than 120 mg/dl", "ECG": "Normal",
        "angina_after_sport": "No", "ecg_slope": "Rising", "fluoroscopy": 2, "thalassemia": "No",
    }
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old), event)
    buf.seek(0)
    read = fastavro.schemaless_reader(buf, fastavro.parse_schema(old), fastavro.parse_schema(new))
    assert read["Age"] == 54
    assert read.get("facility_id") is None


def test_removed_required_field_is_incompatible():
    err = compatibility_error(_without(_v(1), "Age"), json.loads(reader_schema()))
    assert err == "$.Age: the writer has no such field and the reader has no default"


def test_type_changes_follow_avro_promotion_rules():
    reader = _v(1)
    assert compatibility_error(_retyped(reader, "Blood_Pressure", "int"), reader) is None  # int -> double
    assert compatibility_error(_retyped(reader, "Blood_Pressure", "long"), reader) is None
    err = compatibility_error(_retyped(reader, "Blood_Pressure", "string"), reader)
    assert err == "$.Blood_Pressure: the writer's string cannot be read as double"
    err = compatibility_error(_retyped(reader, "Age", "long"), reader)
    assert err == "$.Age: the writer's long cannot be read as int"


def test_a_nullable_writer_field_cannot_feed_a_required_reader_field():
    reader = _v(1)
    err = compatibility_error(_retyped(reader, "Age", ["null", "int"]), reader)
    assert err is not None and err.startswith("$.Age")


def test_an_enum_symbol_the_reader_lacks_is_incompatible():
    writer = copy.deepcopy(_v(1))
    for f in writer["fields"]:
        if f["name"] == "Sex":
            f["type"]["symbols"] = ["Male", "Female", "Other"]
    err = compatibility_error(writer, _v(1))
    assert err == "$.Sex: the writer's symbols ['Other'] are unknown to the reader"


def test_a_differently_named_record_is_incompatible():
    writer = copy.deepcopy(_v(1))
    writer["name"] = "SomethingElse"
    assert "is not the reader's" in compatibility_error(writer, _v(1))


def test_prediction_schema_parses_and_round_trips_a_prediction():
    parsed = fastavro.parse_schema(json.loads(prediction_schema()))
    assert parsed["name"] == "io.heartrisk.v1.RiskPrediction"
    names = [f["name"] for f in parsed["fields"]]
    assert {"event_id", "patient_id", "probability", "risk_level", "contributions"} <= set(names)
    record = {
        "event_id": "e-1", "patient_id": "p-1", "event_time": "2026-11-27T08:00:00.000Z",
        "scored_at": "2026-11-27T08:00:00.120Z", "model_version": "1.0.0", "probability": 0.621,
        "prediction": 1, "risk_level": "High",
        "contributions": [{"field": "thalassemia", "value": "No", "contribution": -0.5}],
        "imputed_fields": [],
    }
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, record)
    buf.seek(0)
    back = fastavro.schemaless_reader(buf, parsed)
    assert back["probability"] == pytest.approx(0.621)
    assert back["contributions"][0]["field"] == "thalassemia"
    assert back["risk_level"] == "High"
