"""`heartrisk tail` on a real broker: escaped control characters, a dead letter's payload hidden unless asked."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))


def test_tail_escapes_controls_and_hides_dead_letter_payloads(kafka_bootstrap, make_topics):
    out, dlq = make_topics("predictions", "dlq")
    original = b'{"patient_id": "p-secret", "Age": "x"}'
    letter = {"error_code": "ID_NOT_PRINTABLE", "error_detail": "patient_id holds a control character",
              "stage": "validate", "event_id": "e-\x1b[2J", "topic": "in", "partition": 0, "offset": 3,
              "key_base64": base64.b64encode(b"p-secret").decode(),
              "value_base64": base64.b64encode(original).decode(), "value_sha256": "00"}
    prediction = {"event_id": "e-2", "patient_id": "p-\x9b31m", "scored_at": "t", "model_version": "1.0.0",
                  "probability": 0.5, "risk_level": "Medium", "contributions": [], "imputed_fields": []}
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(dlq, json.dumps(letter).encode())
    producer.produce(out, json.dumps(prediction, ensure_ascii=False).encode())
    producer.flush(30)
    env = {**os.environ, "HEARTRISK_BOOTSTRAP_SERVERS": kafka_bootstrap, "HEARTRISK_OUTPUT_TOPIC": out,
           "HEARTRISK_DLQ_TOPIC": dlq}

    def tail(*flags: str) -> str:
        r = subprocess.run([HEARTRISK, "tail", "--from-beginning", "--max-messages", "1", "--idle-timeout", "30",
                            *flags], env=env, capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert not any(b < 0x20 and b != 0x0A for b in r.stdout) and b"\xc2\x9b" not in r.stdout
        return r.stdout.decode()

    hidden = json.loads(tail("--dead-letters", "--json"))
    assert hidden["value_base64"].startswith("(hidden") and hidden["event_id"] == "e-\x1b[2J"
    shown = json.loads(tail("--dead-letters", "--json", "--show-payload"))
    assert base64.b64decode(shown["value_base64"]) == original
    assert "e-\\u001b[2J" in tail("--dead-letters")
    assert "patient=p-\\u009b31m" in tail()
