"""The feedback query's outcome side: which outcomes are valid, and how each field is read (JSON and Avro)."""

from __future__ import annotations

import io
import json
import struct
from datetime import datetime, timezone

import fastavro

from stream.config import PROJECT_ROOT
from stream.model.evaluation import AGE_BANDS
from stream.quality.read import outcomes
from tests.helpers import kafka_rows

KAFKA_TS = datetime(2026, 11, 27, 12, 0, 0, tzinfo=timezone.utc)


def _avro(record: dict) -> bytes:
    schema = fastavro.parse_schema(json.loads((PROJECT_ROOT / "schemas" / "patient_outcome.v1.avsc").read_text()))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return struct.pack(">bI", 0, 42) + buf.getvalue()


def test_valid_and_invalid_outcomes(spark):
    ms = int(datetime(2026, 11, 20, 8, 30, tzinfo=timezone.utc).timestamp() * 1000)
    values = [
        {"event_id": "e1", "patient_id": "p1", "outcome": 1, "confirmed_at": ms, "Sex": "Female", "Age": 50},
        {"event_id": "e2", "outcome": 0, "confirmed_at": "2026-11-21T10:00:00Z", "Sex": "female", "Age": 49.5},
        {"event_id": "e3", "outcome": 1},  # no confirmed_at: the Kafka timestamp
        {"event_id": "bad1", "outcome": 2},
        {"outcome": 1},
        {"event_id": "bad3", "outcome": True},
        {"event_id": "bad4", "outcome": 1, "confirmed_at": "yesterday"},
    ]
    messages = [(b"k", json.dumps(v).encode()) for v in values] + [
        (b"k", b"{not json"),
        (b"k", _avro({"event_id": "e4", "patient_id": "p4", "outcome": 0, "Sex": "Male", "Age": 61,
                      "confirmed_at": int(datetime(2026, 11, 22, tzinfo=timezone.utc).timestamp() * 1000),
                      "source": None})),
        (b"k", _avro({"event_id": "e5", "patient_id": None, "outcome": 1, "confirmed_at": None, "source": "x"})),
        (b"k", _avro({"event_id": "e6", "patient_id": None, "outcome": 0, "confirmed_at": "2026-11-23T00:00:00Z"})),
        (b"k", b"\x00\x00\x00\x00\x2a\xff\xff"),  # corrupt Avro
        (b"k", _avro({"event_id": "bad5", "patient_id": None, "outcome": 5, "confirmed_at": None, "source": None,
                      "Sex": None, "Age": None})),
    ]
    rows = outcomes(kafka_rows(spark, messages, timestamp=KAFKA_TS), AGE_BANDS).collect()
    got = {r["o_event_id"]: (r["outcome"], r["confirmed_at"].astimezone(timezone.utc), r["o_patient_id"])
           for r in rows}
    subgroups = {r["o_event_id"]: (r["o_sex"], r["o_age_band"]) for r in rows}
    # a value outside the contract (lower-case sex, a fractional age) only loses the subgroup, not the outcome
    assert subgroups == {"e1": ("Female", "50-60"), "e2": (None, None), "e3": (None, None), "e4": ("Male", ">60"),
                         "e5": (None, None), "e6": (None, None)}
    assert got == {
        "e1": (1, datetime(2026, 11, 20, 8, 30, tzinfo=timezone.utc), "p1"),
        "e2": (0, datetime(2026, 11, 21, 10, 0, tzinfo=timezone.utc), None),
        "e3": (1, KAFKA_TS, None),
        "e4": (0, datetime(2026, 11, 22, tzinfo=timezone.utc), "p4"),
        "e5": (1, KAFKA_TS, None),
        "e6": (0, datetime(2026, 11, 23, tzinfo=timezone.utc), None),
    }, "7 invalid ones left out (and counted by the query's observation)"
