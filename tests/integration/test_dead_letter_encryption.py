"""Encrypted dead letters end to end, and the PHI sweep (#14): the real CLI, broker, exporter and Pushgateway.

``heartrisk score --dead-letter-payload encrypted`` with JSON logs, and the exporter pushing to a real
Pushgateway, over events whose clinical values are sentinels found nowhere else. Then: no sentinel
(plain, or the whole message in base64) in any log line, the progress file, the exporter's /metrics,
the Pushgateway, or any dead letter (key, value, headers); every dead letter opens with Python's
Fernet to its original bytes; ``heartrisk replay`` sends the originals back, and refuses, sending
nothing, without the keys file.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from confluent_kafka import Producer
from cryptography.fernet import Fernet

from stream.contract.schema import load_json
from tests.helpers import Pushgateway, consume, end_offsets_total, free_port, http_get, terminate, wait_for

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))
# clinical values that appear nowhere but in these events (all within the contract's ranges)
SENTINELS = {"Cholesterol": 587.125, "Blood_Pressure": 243.75, "Heart_Rate": 211.5}
BODY = {
    "Age": 54, "Sex": "Male", "angina": "Asymptomatic", "Glycemia": "Less than 120 mg/dl", "ECG": "Normal",
    "angina_after_sport": "No", "ecg_slope": "Rising", "fluoroscopy": 2, "thalassemia": "No", **SENTINELS,
}


def bad_values(i: int) -> bytes:
    """Rejected events that carry the sentinels, of several kinds."""
    text = json.dumps({**BODY, "event_id": f"bad-{i}"})
    return [
        json.dumps({**BODY, "Sex": "M", "event_id": f"bad-{i}"}),  # INVALID_ENUM
        text[:-1] + ', "Age": "x"}',  # DUPLICATE_FIELD
        text + " trailing",  # NOT_JSON
        json.dumps({**BODY, "Age": 500, "event_id": f"bad-{i}"}),  # OUT_OF_RANGE
    ][i % 4].encode()


def test_encrypted_dead_letters_leak_no_clinical_value_and_replay_to_the_originals(kafka_bootstrap, make_topics,
                                                                                  tmp_path):
    (inp,) = make_topics("events", partitions=1)
    out, dlq, back, refused = make_topics("predictions", "dlq", "replayed", "refused")
    keys_file = tmp_path / "dlq.keys"
    key = Fernet.generate_key()
    keys_file.write_text(f"2026-12={key.decode()}\n")
    keys_file.chmod(0o600)
    originals = [(f"phi-ok-{i}".encode(), json.dumps({**BODY, "event_id": f"ok-{i}"}).encode()) for i in range(300)]
    bad = [(f"phi-bad-{i}".encode(), bad_values(i)) for i in range(60)]
    messages = [m for pair in zip(originals[:60], bad, strict=True) for m in pair] + originals[60:]
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for k, v in messages:
        producer.produce(inp, v, k)
    assert producer.flush(30) == 0

    gateway = Pushgateway(tmp_path)
    gateway.start()
    exporter_port = free_port()
    env = {**os.environ, "HEARTRISK_BOOTSTRAP_SERVERS": kafka_bootstrap, "HEARTRISK_INPUT_TOPIC": inp,
           "HEARTRISK_OUTPUT_TOPIC": out, "HEARTRISK_DLQ_TOPIC": dlq, "HEARTRISK_QUERY_NAME": "phi-sweep",
           "HEARTRISK_CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "HEARTRISK_SPARK_MASTER": "local[2]",
           "HEARTRISK_TRIGGER": "processing-time=500ms", "HEARTRISK_PUSHGATEWAY": f"127.0.0.1:{gateway.port}",
           "HEARTRISK_EXPORTER_PORT": str(exporter_port), "HEARTRISK_EXPORTER_INTERVAL": "1",
           "HEARTRISK_LOG_FORMAT": "json"}
    logs = {name: tmp_path / f"{name}.log" for name in ("scorer", "exporter", "replay", "refused")}
    scorer = subprocess.Popen([HEARTRISK, "score", "--dead-letter-payload", "encrypted", "--dead-letter-key-file",
                               str(keys_file)], env=env, stdout=open(logs["scorer"], "wb"), stderr=subprocess.STDOUT)
    exporter = subprocess.Popen([HEARTRISK, "exporter"], env=env, stdout=open(logs["exporter"], "wb"),
                                stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: end_offsets_total(kafka_bootstrap, out) + end_offsets_total(kafka_bootstrap, dlq) >= 360
                 or scorer.poll() is not None, 240, interval_s=1, what="360 predictions + dead letters")
        assert scorer.poll() is None, logs["scorer"].read_text()[-3000:]
        wait_for(lambda: gateway.value("heartrisk_input_rows_total") == 360, 60, what="the exporter's push")
        exporter_metrics = http_get(f"http://127.0.0.1:{exporter_port}/metrics")[1]
        pushed = gateway.groups()
    finally:
        terminate([scorer, exporter])
        gateway.kill()
    assert scorer.returncode == 0
    assert (end_offsets_total(kafka_bootstrap, out), end_offsets_total(kafka_bootstrap, dlq)) == (300, 60)

    dead = consume(kafka_bootstrap, dlq, lambda r: len(r) >= 60, 60)
    schema = jsonschema.Draft202012Validator(load_json("dead_letter.v1.schema.json"))
    fernet = Fernet(key)
    for msg in dead:
        letter = json.loads(msg.value())
        schema.validate(letter)
        assert (letter["payload"], letter["key_id"], letter["value_base64"]) == ("encrypted", "2026-12", None)
        original_key, original_value = messages[letter["offset"]]
        assert fernet.decrypt(letter["value_fernet"]) == original_value
        assert fernet.decrypt(letter["key_fernet"]) == original_key
    assert {json.loads(m.value())["error_code"] for m in dead} == {
        "INVALID_ENUM", "DUPLICATE_FIELD", "NOT_JSON", "OUT_OF_RANGE"}

    # the sweep: every place a value could leak to
    places = {
        "scorer log": logs["scorer"].read_bytes(), "exporter log": logs["exporter"].read_bytes(),
        "progress file": (tmp_path / "checkpoints" / "phi-sweep" / "heartrisk-progress.json").read_bytes(),
        "exporter /metrics": exporter_metrics.encode(), "pushgateway": pushed.encode(),
        **{f"dead letter {m.offset()}": b"".join([m.key() or b"", m.value(), *(v for _, v in m.headers() or [])])
           for m in dead},
    }
    needles = [str(v).encode() for v in SENTINELS.values()]
    needles += [base64.b64encode(v)[:24] for _, v in bad] + [k for k, _ in bad]
    leaks = [(place, needle) for place, text in places.items() for needle in needles if needle in text]
    assert leaks == [], leaks[:10]
    assert b'"audit": true' in places["scorer log"], "the JSON log was really written"

    # replay opens the letters and sends the originals; without the keys it sends nothing
    run = [HEARTRISK, "replay", "--quiet", "--bootstrap-servers", kafka_bootstrap, "--dlq-topic", dlq]
    done = subprocess.run([*run, "--to-topic", back, "--dead-letter-key-file", str(keys_file)], env=env,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    replayed = consume(kafka_bootstrap, back, lambda r: len(r) >= 60, 60)
    assert sorted((m.key(), m.value()) for m in replayed) == sorted(bad)
    no_keys = subprocess.run([*run, "--to-topic", refused, "--force"], env=env, capture_output=True, timeout=120)
    assert no_keys.returncode != 0
    err = no_keys.stderr.decode()
    assert "sealed with key '2026-12'" in err and "--dead-letter-key-file" in err
    assert key.decode() not in err + done.stderr.decode() + done.stdout.decode()
    assert end_offsets_total(kafka_bootstrap, refused) == 0
