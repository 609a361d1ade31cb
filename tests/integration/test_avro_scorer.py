"""Avro on the real broker, the real schema registry (Apicurio) and real Spark.

Avro in/out with every Avro error, schema evolution mid-stream with no restart,
auto mode with JSON and Avro mixed on one topic (the guide's example scored the
same both ways), and the dead-letter policy for an unreachable registry.
"""

from __future__ import annotations

import base64
import copy
import io
import json
from collections import Counter

import fastavro
import jsonschema
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from stream.app.lifecycle import stop_gracefully
from stream.app.produce import AVRO_BAD_KINDS, Event, avro_bad_event, avro_encoder, bad_event, generate, publish
from stream.app.scorer import start_scorer
from stream.app.tail import tail
from stream.config import load_settings
from stream.contract.avro import event_schema_versions, frame, load_avsc, parse_header
from stream.contract.registry import SchemaRegistry, subject_for
from stream.contract.schema import load_json
from stream.monitor.progress import read_progress
from tests.helpers import consume, end_offsets_total, free_port, wait_for

pytestmark = pytest.mark.integration

GUIDE_EXAMPLE = {
    "Age": 54, "Blood_Pressure": 130, "Cholesterol": 242, "Heart_Rate": 150, "Sex": "Male",
    "angina": "Asymptomatic", "Glycemia": "Less than 120 mg/dl", "ECG": "Normal",
    "angina_after_sport": "No", "ecg_slope": "Rising", "fluoroscopy": 2, "thalassemia": "No",
}
V = event_schema_versions()


@pytest.fixture
def settings_for(kafka_bootstrap, make_topics, tmp_path, schema_registry_url):
    def make(**overrides):
        inp, out, dlq = make_topics("events", "predictions", "dlq")
        base = {
            "bootstrap_servers": kafka_bootstrap,
            "input_topic": inp,
            "output_topic": out,
            "dlq_topic": dlq,
            "checkpoint_dir": str(tmp_path / "checkpoints"),
            "trigger": "processing-time=500ms",
            "spark_master": "local[2]",
            "input_format": "avro",
            "schema_registry_url": schema_registry_url,
        }
        base.update(overrides)
        return load_settings(base)

    return make


def fastavro_framed(schema_id: int, schema: dict, record: dict) -> bytes:
    """A Confluent-framed message built by hand: 5-byte header + fastavro's binary encoding."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return frame(schema_id, buf.getvalue())


def avro_records(url: str, msgs: list) -> list[dict]:
    """Predictions decoded by confluent-kafka's AvroDeserializer (independent of the scorer)."""
    deser = AvroDeserializer(SchemaRegistryClient({"url": url}))
    return [deser(m.value(), SerializationContext(m.topic(), MessageField.VALUE)) for m in msgs]


def envelope(i: int, prefix: str) -> dict:
    return {"event_id": f"{prefix}-{i}", "patient_id": f"p-{i}", "event_time": 1_790_000_000_000 + i,
            "source": "test"}


def test_avro_in_avro_out_with_every_avro_error_reconciles_and_the_query_keeps_running(spark, model, settings_for):
    s = settings_for(output_format="avro")
    encode = avro_encoder(s, version=1)  # confluent-kafka's AvroSerializer: registers v1 under <input>-value
    valid = list(generate(500, "synthetic", s, seed=5, encoder=encode))
    registry = SchemaRegistry(s.schema_registry_url)
    v1_id = parse_header(valid[0].value)[0]
    v1 = load_avsc(V[1])
    no_age = copy.deepcopy(v1)
    no_age["fields"] = [f for f in no_age["fields"] if f["name"] != "Age"]
    no_age_id = registry.register(f"{s.input_topic}-legacy-value", json.dumps(no_age))
    bad: list[Event] = []
    for i in range(30):
        kind = sorted(AVRO_BAD_KINDS)[i % len(AVRO_BAD_KINDS)]
        bad.append(avro_bad_event(kind, i, encode))
    for i in range(5):
        record = {k: v for k, v in {**envelope(i, "noage"), **GUIDE_EXAMPLE}.items() if k != "Age"}
        bad.append(Event(f"noage-{i}".encode(), fastavro_framed(no_age_id, no_age, record), "INCOMPATIBLE_SCHEMA"))
        bad.append(Event(f"garbage-{i}".encode(), frame(v1_id, b"\xff" * 12), "CORRUPT_AVRO"))
    bad.append(bad_event("tombstone", 99))
    events = [e for pair in zip(valid[:len(bad)], bad, strict=True) for e in pair] + valid[len(bad):]
    assert publish(iter(events), len(events), s, progress=False) == len(events) == 541

    query = start_scorer(spark, s, model)
    try:
        preds = consume(s.bootstrap_servers, s.output_topic, lambda r: len(r) >= 500, 180)
        dead = consume(s.bootstrap_servers, s.dlq_topic, lambda r: len(r) >= 41, 120)
        assert query.isActive and query.exception() is None, "bad Avro never stops the query"
        # every id was waiting at start: planned at once (the garbage ids as unknown), no re-plan
        assert query.replans == 0
        assert {"ok", "unknown", "incompatible"} <= set(query.planned_ids.values())
        # the streaming plan's own observation counts them, as for JSON
        totals = wait_for(lambda: (read_progress(s.progress_path) or {}).get("totals", {}).get("input_rows") == 541
                          and read_progress(s.progress_path)["totals"], 60, what="the progress file's totals")
    finally:
        stop_gracefully(query)
    assert len(preds) == 500 and len(dead) == 41, "input = predictions + dead letters"
    assert totals["predictions"] == 500
    assert {c: n for c, n in totals["dead_letters"].items() if n} == dict(Counter(e.expected_code for e in bad))

    # predictions are Confluent-framed Avro under <output>-value, readable by an independent deserializer
    out_ids = registry.subject_schema_ids(subject_for(s.output_topic))
    assert len(out_ids) == 1
    assert {m.value()[:5] for m in preds} == {frame(out_ids[0], b"")}
    assert {dict(m.headers())["content-type"] for m in preds} == {b"application/vnd.apache.avro+binary"}
    recs = avro_records(s.schema_registry_url, preds)
    sent = {e.key.decode() for e in valid}
    assert {r["patient_id"] for r in recs} == sent
    assert all(0.0 < r["probability"] < 1.0 and r["risk_level"] in ("Low", "Medium", "High") for r in recs)
    # the operator's view decodes them too
    screen = io.StringIO()
    assert tail(s, from_beginning=True, max_messages=500, timeout_s=30, out=screen, colour=False) == 500
    lines = screen.getvalue().splitlines()
    assert len(lines) == 500 and all(" p=" in line and "patient=" in line for line in lines)

    letters = [json.loads(m.value()) for m in dead]
    codes = Counter(r["error_code"] for r in letters)
    assert codes == Counter(e.expected_code for e in bad)
    contract = load_json("dead_letter.v1.schema.json")
    for r in letters:  # every Avro code is in the dead-letter contract
        jsonschema.validate(r, contract)
    by_key = {e.key: e.expected_code for e in bad}
    assert all(by_key[base64.b64decode(r["key_base64"])] == r["error_code"] for r in letters if r["key_base64"])
    assert {"BAD_MAGIC_BYTE", "UNKNOWN_SCHEMA_ID", "CORRUPT_AVRO", "INCOMPATIBLE_SCHEMA", "OUT_OF_RANGE",
            "TOMBSTONE"} <= set(codes)
    noage = next(r for r in letters if r["error_code"] == "INCOMPATIBLE_SCHEMA" and "$.Age" in r["error_detail"])
    assert f"schema id {no_age_id}" in noage["error_detail"]
    unknown = next(r for r in letters if r["error_code"] == "UNKNOWN_SCHEMA_ID")
    assert "is not in the registry" in unknown["error_detail"]
    # the original bytes travel with the letter, so nothing is lost
    assert all(r["value_sha256"] for r in letters if r["error_code"] != "TOMBSTONE")


@pytest.mark.parametrize("delivery", ["at-least-once", "exactly-once"])
def test_schema_v2_mid_stream_is_scored_without_a_process_restart_or_a_duplicate(
        spark, model, settings_for, make_topics, delivery):
    # exactly-once: a new schema id fails the batch inside the transactional sink, which aborts it;
    # the re-planned query writes the batch again in a new transaction
    s = settings_for(delivery=delivery, commit_topic=make_topics("commits", partitions=1)[0])
    query = start_scorer(spark, s, model)
    query_id = query.id
    try:
        v1 = list(generate(5000, "synthetic", s, seed=21, encoder=avro_encoder(s, version=1)))
        assert publish(iter(v1), 5000, s, progress=False) == 5000
        consume(s.bootstrap_servers, s.output_topic, lambda r: len(r) >= 5000, 240)
        v2_encode = avro_encoder(s, version=2)  # the producer upgrades: a new schema id appears mid-stream
        v2 = list(
            generate(5000, "synthetic", s, seed=22, encoder=lambda body: v2_encode({**body, "facility_id": "ward-7"}))
        )
        assert publish(iter(v2), 5000, s, progress=False) == 5000
        preds = consume(s.bootstrap_servers, s.output_topic, lambda r: len(r) >= 10_000, 240)
        assert query.isActive and query.exception() is None
        # nothing was registered at start: v1's id and then v2's each re-planned the query once
        assert query.replans == 2, query.planned_ids
        assert query.id == query_id, "the same query on the same checkpoint: no reset"
        assert sorted(query.planned_ids.values()) == ["ok", "ok"]
    finally:
        stop_gracefully(query)
    ids = SchemaRegistry(s.schema_registry_url).subject_schema_ids(subject_for(s.input_topic))
    assert len(ids) == 2, "v1 and v2 are two schema ids under the input subject"
    assert {v1[0].value[1:5], v2[0].value[1:5]} == {i.to_bytes(4, "big") for i in ids}
    got = Counter(json.loads(m.value())["event_id"] for m in preds)
    sent = {e.key.decode() for e in v1 + v2}
    assert len(got) == 10_000 and max(got.values()) == 1
    assert {json.loads(m.value())["patient_id"] for m in preds} == sent
    assert consume_count(s, s.dlq_topic) == 0
    if delivery == "exactly-once":
        progress = read_progress(s.progress_path)
        assert progress is not None
        tx = progress["totals"]["delivery"]
        assert tx["aborted"] == 2 and tx["committed"] >= 2 and tx.get("skipped", 0) == 0, tx


def consume_count(s, topic: str) -> int:
    return end_offsets_total(s.bootstrap_servers, topic)


def test_auto_mode_mixes_json_and_avro_and_the_guide_example_scores_identically(spark, model, settings_for):
    s = settings_for(input_format="auto", trigger="available-now")
    v1 = load_avsc(V[1])
    v1_id = SchemaRegistry(s.schema_registry_url).register(subject_for(s.input_topic), json.dumps(v1))
    guide_avro = fastavro_framed(v1_id, v1, {**envelope(0, "guide-avro"), **GUIDE_EXAMPLE})
    guide_json = json.dumps({**envelope(0, "guide-json"), **GUIDE_EXAMPLE}).encode()
    assert guide_avro[0] == 0 and guide_json[0] != 0
    json_events = list(generate(200, "synthetic", s, seed=31))
    avro_events = list(generate(200, "synthetic", s, seed=32, encoder=avro_encoder(s, version=1)))
    events = [e for pair in zip(json_events, avro_events, strict=True) for e in pair]
    events += [Event(b"guide-avro", guide_avro), Event(b"guide-json", guide_json)]
    events += [
        bad_event("not_json", 1),
        bad_event("missing_field", 2),
        avro_bad_event("truncated", 3, avro_encoder(s, 1)),
    ]
    assert publish(iter(events), len(events), s, progress=False) == 405

    query = start_scorer(spark, s, model)
    query.awaitTermination(300)
    assert query.exception() is None
    preds = consume(s.bootstrap_servers, s.output_topic, lambda r: len(r) >= 402, 60)
    dead = consume(s.bootstrap_servers, s.dlq_topic, lambda r: len(r) >= 3, 60)
    assert len(preds) == 402 and len(dead) == 3, "input 405 = 402 predictions + 3 dead letters"
    assert Counter(json.loads(m.value())["error_code"] for m in dead) == Counter(
        {"NOT_JSON": 1, "MISSING_FIELD": 1, "CORRUPT_AVRO": 1}
    )
    by_event = {json.loads(m.value())["event_id"]: json.loads(m.value()) for m in preds}
    a, j = by_event["guide-avro-0"], by_event["guide-json-0"]
    assert a["probability"] == j["probability"] and a["risk_level"] == j["risk_level"] == "High"
    assert a["contributions"] == j["contributions"] and a["event_time"] == j["event_time"]
    assert abs(a["probability"] - 0.621) < 0.001, "the model card's figure for the guide's patient"


def test_unreachable_registry_with_dead_letter_policy_keeps_every_event(spark, model, settings_for):
    s = settings_for(
        trigger="available-now",
        registry_unavailable="dead-letter",
        schema_registry_url=f"http://127.0.0.1:{free_port()}/apis/ccompat/v7",
    )
    v1 = load_avsc(V[1])
    events = [Event(f"k{i}".encode(), fastavro_framed(77, v1, {**envelope(i, "down"), **GUIDE_EXAMPLE}))
              for i in range(10)]
    publish(iter(events), 10, s, progress=False)
    query = start_scorer(spark, s, model)
    query.awaitTermination(300)
    assert query.exception() is None
    dead = consume(s.bootstrap_servers, s.dlq_topic, lambda r: len(r) >= 10, 60)
    letters = [json.loads(m.value()) for m in dead]
    assert {r["error_code"] for r in letters} == {"REGISTRY_UNAVAILABLE"}
    assert sorted(base64.b64decode(r["value_base64"]) for r in letters) == sorted(e.value for e in events)
    assert consume_count(s, s.output_topic) == 0
