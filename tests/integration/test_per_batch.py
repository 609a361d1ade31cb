"""The per-batch (Avro) scorer called on one static batch: real Kafka, real registry, real Spark."""

from __future__ import annotations

import io
import json
from collections import Counter

import fastavro

from stream.config import load_settings
from stream.contract.avro import event_schema_versions, frame, load_avsc, reader_schema
from stream.contract.registry import SchemaRegistry, subject_for
from stream.contract.writer_schemas import WriterSchemas
from stream.monitor.observe import observed_columns
from stream.pipeline.per_batch import BatchScorer, batch_schema_ids
from tests.helpers import consume, kafka_rows

EXAMPLE = {
    "event_id": None, "patient_id": "p-1", "event_time": None, "facility_id": None,
    "Age": 54, "Blood_Pressure": 130.0, "Cholesterol": 242.0, "Heart_Rate": 150.0, "Sex": "Male",
    "angina": "Asymptomatic", "Glycemia": "Less than 120 mg/dl", "ECG": "Normal",
    "angina_after_sport": "No", "ecg_slope": "Rising", "fluoroscopy": 2, "thalassemia": "No",
}


def _avro(schema, body):
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), body)
    return buf.getvalue()


def test_one_batch_is_written_and_counted(spark, model, kafka_bootstrap, make_topics, schema_registry_url):
    inp, out, dlq = make_topics("in", "out", "dlq")
    s = load_settings({"bootstrap_servers": kafka_bootstrap, "input_topic": inp, "output_topic": out,
                       "dlq_topic": dlq, "input_format": "auto", "schema_registry_url": schema_registry_url},
                      environ={})
    registry = SchemaRegistry.from_settings(s)
    v2 = load_avsc(event_schema_versions()[2])
    sid = registry.register(subject_for(inp), json.dumps(v2))
    body = {k: v for k, v in EXAMPLE.items() if k in {f["name"] for f in v2["fields"]}}
    messages = [frame(sid, _avro(v2, dict(body, event_id=f"a-{i}"))) for i in range(5)]
    messages += [json.dumps(dict(body, event_id=f"j-{i}")).encode() for i in range(3)]
    messages += [frame(sid, b"\x01"), b"{not json"]
    batch = kafka_rows(spark, [(b"p-1", m) for m in messages], topic=inp)
    assert batch_schema_ids(batch) == [sid]
    counted: dict[int, dict] = {}
    writers = WriterSchemas(registry, json.loads(reader_schema()), "pause")
    scorer = BatchScorer(s, model, writers, None, observed_columns(), lambda b, c: counted.update({b: c}))
    scorer(batch, 7)
    preds = consume(kafka_bootstrap, out, lambda r: len(r) >= 8, timeout_s=60)
    letters = consume(kafka_bootstrap, dlq, lambda r: len(r) >= 2, timeout_s=60)
    assert sorted(json.loads(m.value())["event_id"] for m in preds) == [
        *(f"a-{i}" for i in range(5)), *(f"j-{i}" for i in range(3))
    ]
    assert Counter(json.loads(m.value())["error_code"] for m in letters) == {"CORRUPT_AVRO": 1, "NOT_JSON": 1}
    assert set(counted) == {7}
    assert (counted[7]["rows"], counted[7]["predictions"]) == (10, 8)
    assert (counted[7]["dlq_CORRUPT_AVRO"], counted[7]["dlq_NOT_JSON"]) == (1, 1)
