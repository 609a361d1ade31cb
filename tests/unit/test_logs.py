"""JSON logs (`--log-format json`): one object per line, the event's fields, audit events marked, no secrets."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from stream.logs import JsonFormatter, fields_of

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))


def test_the_event_pairs_become_fields_and_audit_events_are_marked():
    assert fields_of('event="model swapped" from={"a": 1} to={"b": 2} seconds=2.5 id="x y"') == {
        "event": "model swapped", "from": {"a": 1}, "to": {"b": 2}, "seconds": 2.5, "id": "x y"}
    record = logging.LogRecord("stream.app", logging.INFO, __file__, 1, 'event="model loaded" version="%s"',
                               ("2.0.0",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "model loaded" and line["version"] == "2.0.0" and line["audit"] is True
    assert line["level"] == "INFO" and line["logger"] == "stream.app" and line["ts"].endswith("+00:00")
    plain = json.loads(JsonFormatter().format(logging.LogRecord("x", logging.WARNING, "", 1, "odd text", (), None)))
    assert plain["message"] == "odd text" and "audit" not in plain


def test_a_command_logs_its_start_and_end_as_audit_json_with_redacted_settings(tmp_path):
    env = {**os.environ, "HEARTRISK_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}",
           "HEARTRISK_KAFKA_OPTIONS": "sasl.password=hunter2,security.protocol=SASL_SSL",
           "HEARTRISK_SCHEMA_REGISTRY_USER_INFO": "reg:hunter3"}
    r = subprocess.run([HEARTRISK, "model", "list", "--log-format", "json"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stderr.splitlines() if line.strip()]
    assert lines, "the command logged its start and end"
    events = {line.get("event"): line for line in lines}
    started, finished = events["command started"], events["command finished"]
    assert started["audit"] is True and started["command"] == "model list"
    assert started["settings"]["kafka_options"] == {"sasl.password": "***", "security.protocol": "SASL_SSL"}
    assert started["settings"]["schema_registry_user_info"] == "***"
    assert finished["audit"] is True and finished["exit_code"] == 0
    assert "hunter2" not in r.stderr + r.stdout and "hunter3" not in r.stderr + r.stdout
