"""`heartrisk score --input-format avro` while its schema registry goes down and comes back.

The scorer meets a schema id it has not seen while the registry is down: under
the default policy (pause) the batch waits, nothing is written or dead-lettered
for it, the process stays up, the exporter pushes ``heartrisk_registry_paused 1`` to a
real Pushgateway (with ``heartrisk_up 1``), and when the registry is back every event is scored.
A SIGTERM during a pause exits 0; the paused batch is read again after a restart.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import fastavro
import pytest

from stream.app.produce import Event, publish
from stream.config import PROJECT_ROOT, load_settings
from stream.contract.avro import event_schema_versions, frame, load_avsc
from stream.contract.registry import SchemaRegistry, subject_for
from stream.local.registry_server import LocalRegistry
from tests.helpers import Pushgateway, consume, end_offsets_total, free_port, wait_for

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))
PATIENT = {
    "Age": 61, "Blood_Pressure": 140, "Cholesterol": 260, "Heart_Rate": 130, "Sex": "Female",
    "angina": "Asymptomatic", "Glycemia": "Less than 120 mg/dl", "ECG": "Normal",
    "angina_after_sport": "Yes", "ecg_slope": "Flat", "fluoroscopy": 1, "thalassemia": "Reversible defect",
}


def framed(schema_id: int, schema: dict, i: int, prefix: str) -> Event:
    buf = io.BytesIO()
    record = {"event_id": f"{prefix}-{i}", "patient_id": f"{prefix}-p{i}", "event_time": None, "source": None,
              "facility_id": "ward-2", **PATIENT}
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return Event(f"{prefix}-p{i}".encode(), frame(schema_id, buf.getvalue()))


def test_registry_outage_pauses_the_scorer_and_loses_nothing(kafka_bootstrap, make_topics, tmp_path):
    registry = LocalRegistry(state_dir=tmp_path / "registry", port=free_port(), jvm_dir=PROJECT_ROOT / ".jvm")
    registry.up()
    gateway = Pushgateway(tmp_path)
    gateway.start()
    scorer = exporter = None
    try:
        inp, out, dlq = make_topics("events", "predictions", "dlq")
        settings = load_settings(
            {"bootstrap_servers": kafka_bootstrap, "input_topic": inp, "output_topic": out, "dlq_topic": dlq}
        )
        client = SchemaRegistry(registry.url)
        v1, v2 = (load_avsc(event_schema_versions()[n]) for n in (1, 2))
        v1_id = client.register(subject_for(inp), json.dumps(v1))

        env = dict(os.environ)
        env.update(
            HEARTRISK_BOOTSTRAP_SERVERS=kafka_bootstrap, HEARTRISK_INPUT_TOPIC=inp, HEARTRISK_OUTPUT_TOPIC=out,
            HEARTRISK_DLQ_TOPIC=dlq, HEARTRISK_CHECKPOINT_DIR=str(tmp_path / "checkpoints"),
            HEARTRISK_SPARK_MASTER="local[2]", HEARTRISK_TRIGGER="processing-time=500ms",
            HEARTRISK_INPUT_FORMAT="avro", HEARTRISK_SCHEMA_REGISTRY_URL=registry.url,
            HEARTRISK_PUSHGATEWAY=f"127.0.0.1:{gateway.port}", HEARTRISK_EXPORTER_PORT=str(free_port()),
            HEARTRISK_EXPORTER_INTERVAL="1",
        )
        log = tmp_path / "scorer.log"
        scorer = subprocess.Popen(
            [HEARTRISK, "score"], env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True
        )
        exporter = subprocess.Popen(
            [HEARTRISK, "exporter"], env=env, stdout=open(tmp_path / "exporter.log", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        job = {"job": "heartrisk", "instance": "heartrisk-scorer"}
        first = [framed(v1_id, v1, i, "v1") for i in range(100)]
        publish(iter(first), 100, settings, progress=False)
        consume(kafka_bootstrap, out, lambda r: len(r) >= 100, 180)

        v2_id = client.register(subject_for(inp), json.dumps(v2))  # after the start: not in the scorer's plan
        assert v1_id != v2_id
        assert registry.down()
        second = [framed(v2_id, v2, i, "v2") for i in range(100)]  # an id the scorer has not seen yet
        publish(iter(second), 100, settings, progress=False)
        wait_for(lambda: "paused: schema registry unavailable" in log.read_text(), 120, what="the pause")
        assert scorer.poll() is None, "the scorer waits; it does not exit"
        assert end_offsets_total(kafka_bootstrap, out) == 100, "nothing of the paused batch is written"
        assert end_offsets_total(kafka_bootstrap, dlq) == 0, "and nothing is dead-lettered"
        # operators see why: paused on the registry (and still up), not a dead scorer
        wait_for(lambda: gateway.value("heartrisk_registry_paused", **job) == 1.0, 60, what="registry_paused 1")
        assert gateway.value("heartrisk_up", **job) == 1.0
        wait_for(lambda: (gateway.value("heartrisk_registry_paused_seconds", **job) or 0) >= 2, 30,
                 what="the pause's duration growing")

        assert registry.up()  # same state dir: the H2 file keeps the schema ids
        preds = consume(kafka_bootstrap, out, lambda r: len(r) >= 200, 180)
        ids = {json.loads(m.value())["event_id"] for m in preds}
        assert ids == {f"v1-{i}" for i in range(100)} | {f"v2-{i}" for i in range(100)}
        assert end_offsets_total(kafka_bootstrap, dlq) == 0
        assert "schema registry back" in log.read_text()
        wait_for(lambda: gateway.value("heartrisk_registry_paused", **job) == 0.0, 60, what="registry_paused 0")
        assert gateway.value("heartrisk_registry_paused_seconds", **job) == 0.0

        # SIGTERM while paused: exit 0, nothing committed for the paused batch, scored after a restart
        v3 = {**v2, "doc": "v2 with another doc: new content, so a new schema id"}
        v3_id = client.register(subject_for(inp), json.dumps(v3))
        assert registry.down()
        third = [framed(v3_id, v3, i, "v3") for i in range(10)]
        publish(iter(third), 10, settings, progress=False)
        pauses = log.read_text().count("paused: schema registry unavailable")
        wait_for(lambda: log.read_text().count("paused: schema registry unavailable") > pauses, 120,
                 what="the second pause")
        scorer.send_signal(signal.SIGTERM)
        assert scorer.wait(120) == 0, f"a stop while paused is a clean stop; the scorer's log ends:\n{_tail(log)}"
        assert log.read_text().count('event="scorer stopped"') == 1
        assert end_offsets_total(kafka_bootstrap, out) == 200
        assert registry.up()
        scorer = subprocess.Popen(
            [HEARTRISK, "score"], env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True
        )
        preds = consume(kafka_bootstrap, out, lambda r: len(r) >= 210, 180)
        assert {json.loads(m.value())["event_id"] for m in preds} >= {f"v3-{i}" for i in range(10)}
        assert len(preds) == 210 and end_offsets_total(kafka_bootstrap, dlq) == 0

        scorer.send_signal(signal.SIGTERM)
        assert scorer.wait(120) == 0, _tail(log)
        exporter.send_signal(signal.SIGTERM)
        assert exporter.wait(30) == 0
    finally:
        for proc in (scorer, exporter):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        if gateway.proc is not None and gateway.proc.poll() is None:
            gateway.kill()
        registry.down()


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
