"""The scorer on the real broker: reconciliation, the guide's example, stream = batch, wrong checkpoint."""

from __future__ import annotations

import json
from collections import Counter

import jsonschema
import pytest
from pyspark.ml.functions import vector_to_array

from stream.app.batch import score_files
from stream.app.produce import BAD_EVENT_KINDS, Event, bad_event, generate, publish
from stream.app.scorer import start_scorer
from stream.config import PROJECT_ROOT, load_settings
from stream.contract.schema import load_json
from stream.errors import CheckpointError
from stream.model.train import read_training_data
from tests.helpers import consume

pytestmark = pytest.mark.integration

GUIDE_EXAMPLE = {
    "Age": 54,
    "Blood_Pressure": 130,
    "Cholesterol": 242,
    "Heart_Rate": 150,
    "Sex": "Male",
    "angina": "Asymptomatic",
    "Glycemia": "Less than 120 mg/dl",
    "ECG": "Normal",
    "angina_after_sport": "No",
    "ecg_slope": "Rising",
    "fluoroscopy": 2,
    "thalassemia": "No",
}


@pytest.fixture
def settings(kafka_bootstrap, make_topics, tmp_path):
    inp, out, dlq = make_topics("events", "predictions", "dlq")
    return load_settings(
        {
            "bootstrap_servers": kafka_bootstrap,
            "input_topic": inp,
            "output_topic": out,
            "dlq_topic": dlq,
            "checkpoint_dir": str(tmp_path / "checkpoints"),
            "trigger": "available-now",
            "spark_master": "local[2]",
        }
    )


def run_available_now(spark, settings, model):
    query = start_scorer(spark, settings, model)
    query.awaitTermination(300)
    assert query.exception() is None
    assert not query.isActive


def test_mixed_input_reconciles_exactly(spark, model, settings):
    valid = list(generate(1000, "synthetic", settings, seed=11))
    kinds = sorted(BAD_EVENT_KINDS)
    bad = [bad_event(kinds[i % len(kinds)], i) for i in range(100)]
    # interleave so bad events share micro-batches and partitions with good ones
    events: list[Event] = []
    for i, ev in enumerate(valid):
        events.append(ev)
        if i % 10 == 9:
            events.append(bad[i // 10])
    assert publish(iter(events), len(events), settings, progress=False) == 1100

    run_available_now(spark, model=model, settings=settings)

    preds = consume(settings.bootstrap_servers, settings.output_topic, lambda r: len(r) >= 1000, 60)
    dead = consume(settings.bootstrap_servers, settings.dlq_topic, lambda r: len(r) >= 100, 60)
    assert len(preds) == 1000
    assert len(dead) == 100

    pred_schema = load_json("prediction.v1.schema.json")
    dlq_schema = load_json("dead_letter.v1.schema.json")
    expected_ids = {json.loads(e.value)["event_id"] for e in valid}
    got_ids = set()
    for msg in preds:
        rec = json.loads(msg.value())
        jsonschema.validate(rec, pred_schema)
        assert msg.key().decode() == rec["patient_id"]
        headers = dict(msg.headers())
        assert headers["model_version"] == model.version.encode()
        assert headers["content-type"] == b"application/json"
        got_ids.add(rec["event_id"])
    assert got_ids == expected_ids, "every valid event_id has its prediction"

    # each dead letter carries the right code, and points back at its input message
    by_key = {e.key: e.expected_code for e in bad if e.key is not None}
    codes = Counter()
    for msg in dead:
        rec = json.loads(msg.value())
        jsonschema.validate(rec, dlq_schema)
        codes[rec["error_code"]] += 1
        assert rec["topic"] == settings.input_topic
        assert rec["event_id"] == f"{rec['topic']}-{rec['partition']}-{rec['offset']}"
        assert dict(msg.headers())["error_code"] == rec["error_code"].encode()
        if msg.key() is not None:
            assert by_key[msg.key()] == rec["error_code"]
    assert codes == Counter(e.expected_code for e in bad)
    assert len(codes) >= 10
    too_large = [json.loads(m.value()) for m in dead if json.loads(m.value())["error_code"] == "MESSAGE_TOO_LARGE"]
    assert too_large and all(r["value_truncated"] and r["value_size"] > 1024 * 1024 for r in too_large)


def test_guide_example_published_as_is_is_scored(spark, model, settings):
    ev = Event(b"guide-patient", json.dumps(GUIDE_EXAMPLE).encode())
    publish(iter([ev]), 1, settings, progress=False)
    run_available_now(spark, settings, model)
    (msg,) = consume(settings.bootstrap_servers, settings.output_topic, lambda r: len(r) >= 1, 60)
    rec = json.loads(msg.value())
    assert rec["patient_id"] == "guide-patient"
    assert 0.0 < rec["probability"] < 1.0
    medium, high = model.thresholds
    expected_level = "High" if rec["probability"] >= high else "Medium" if rec["probability"] >= medium else "Low"
    assert rec["risk_level"] == expected_level
    assert len(rec["contributions"]) == 3
    assert rec["imputed_fields"] == []


def test_stream_batch_and_model_transform_agree_on_303_rows(spark, model, settings, tmp_path):
    n = publish(generate(303, "dataset", settings), 303, settings, progress=False)
    assert n == 303
    run_available_now(spark, settings, model)
    preds = consume(settings.bootstrap_servers, settings.output_topic, lambda r: len(r) >= 303, 60)
    stream_p = {json.loads(m.value())["patient_id"]: json.loads(m.value())["probability"] for m in preds}
    assert len(stream_p) == 303

    result = score_files(spark, settings, model, PROJECT_ROOT / "data" / "heart_disease.csv", tmp_path / "batch")
    assert (result.inputs, result.predictions, result.rejects) == (303, 303, 0)
    batch_p = {}
    for part in (tmp_path / "batch" / "predictions").glob("part-*"):
        for line in part.read_text().splitlines():
            rec = json.loads(line)
            batch_p[rec["patient_id"]] = rec["probability"]
    assert batch_p == stream_p

    data = read_training_data(spark, PROJECT_ROOT / "data" / "heart_disease.csv")
    direct = model.pipeline.transform(data).select("patient_id", vector_to_array("probability")[1].alias("p"))
    model_p = {r.patient_id: round(r.p, 6) for r in direct.collect()}
    assert model_p == stream_p
    imputed = [json.loads(m.value()) for m in preds if json.loads(m.value())["imputed_fields"]]
    assert len(imputed) == 6, "4 missing fluoroscopy + 2 missing thal rows are imputed, not dropped"


def test_checkpoint_of_another_input_topic_is_refused(spark, model, settings, make_topics):
    publish(iter([Event(b"p", json.dumps(GUIDE_EXAMPLE).encode())]), 1, settings, progress=False)
    run_available_now(spark, settings, model)
    (other,) = make_topics("other-input")
    moved = load_settings({**{k: v for k, v in settings.__dict__.items()}, "input_topic": other})
    with pytest.raises(CheckpointError) as err:
        start_scorer(spark, moved, model)
    msg = str(err.value)
    assert f"was made for input topic {settings.input_topic!r}" in msg
    assert f"this query reads {other!r}" in msg
    assert "delete the checkpoint" in msg
    assert not any(q.isActive for q in spark.streams.active)


def test_huge_keys_and_ids_are_dead_lettered_and_every_dead_letter_fits_the_topic(spark, model, settings):
    body = dict(GUIDE_EXAMPLE)
    huge_id = dict(body, patient_id="p" * 600_000)
    long_event_id = dict(body, patient_id="p-ok", event_id="e" * 300)
    messages = [
        (b"k" * 600_000, json.dumps(body).encode(), "ID_TOO_LONG"),  # the key stands in for patient_id
        (b"k" * 900_000, b"not json", "NOT_JSON"),  # its dead letter would carry the key twice
        (b"q" * 300_000, json.dumps(huge_id).encode(), "ID_TOO_LONG"),
        (b"k" * 70_000, json.dumps(dict(body, Age=500)).encode(), "OUT_OF_RANGE"),
        (None, json.dumps(long_event_id).encode(), None),
        (b"p-fine", json.dumps(body).encode(), None),
    ]
    for key, value, _ in messages:
        publish(iter([Event(key, value)]), 1, settings, progress=False)
    run_available_now(spark, settings, model)  # the query finishes: no batch failed on a record too large
    dead = consume(settings.bootstrap_servers, settings.dlq_topic, lambda r: len(r) >= 4, 60)
    preds = consume(settings.bootstrap_servers, settings.output_topic, lambda r: len(r) >= 2, 60)
    assert (len(dead), len(preds)) == (4, 2), "input = predictions + dead letters"
    dlq_schema = load_json("dead_letter.v1.schema.json")
    codes_by_key_size = {}
    for msg in dead:
        rec = json.loads(msg.value())
        jsonschema.validate(rec, dlq_schema)
        assert len(msg.key()) <= 64 * 1024 and len(msg.key()) + len(msg.value()) < 1024 * 1024
        assert rec["key_truncated"] == (rec["key_size"] > 64 * 1024)
        codes_by_key_size[rec["key_size"]] = rec["error_code"]
    assert codes_by_key_size == {600_000: "ID_TOO_LONG", 900_000: "NOT_JSON", 300_000: "ID_TOO_LONG",
                                 70_000: "OUT_OF_RANGE"}
    by_id = {json.loads(m.value())["patient_id"]: json.loads(m.value()) for m in preds}
    topic, partition, offset = by_id["p-ok"]["event_id"].rsplit("-", 2)
    assert topic == settings.input_topic and partition.isdigit() and offset.isdigit(), \
        "an event_id over 256 characters is replaced by the derived one"
    assert "p-fine" in by_id
