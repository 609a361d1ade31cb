"""A secure local broker (`heartrisk kafka up --secure`): SASL_SSL and mutual TLS end to end, ACLs, refusals."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from stream.credentials import KafkaCredentials
from stream.local.secure import USERS, SecurityDir
from tests.helpers import free_port_run, http_get, terminate, topic_name, wait_for

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    """One secure broker for the module: SASL_SSL on port, mutual TLS on port + 2, controller on port + 1."""
    state = tmp_path_factory.mktemp("secure-kafka")
    port = free_port_run(3)
    env = {**os.environ, "HEARTRISK_KAFKA_STATE_DIR": str(state), "HEARTRISK_KAFKA_PORT": str(port),
           "HEARTRISK_KAFKA_CONTROLLER_PORT": str(port + 1), "HEARTRISK_KAFKA_HEAP": "512m"}
    r = subprocess.run([HEARTRISK, "kafka", "up", "--secure"], env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"SASL_SSL (SCRAM-SHA-512) on localhost:{port}, mutual TLS on localhost:{port + 2}" in r.stdout
    yield {"env": env, "port": port, "tls_port": port + 2, "sec": SecurityDir(state), "up_output": r.stdout}
    subprocess.run([HEARTRISK, "kafka", "down"], env=env, capture_output=True, timeout=120)


def _passwords(sec: SecurityDir) -> list[str]:
    return [sec.password(u) for u in USERS] + [(sec.dir / f"{u}.key").read_text().splitlines()[1] for u in USERS]


@pytest.mark.parametrize("mtls", [False, True], ids=["sasl_ssl", "mutual_tls"])
def test_1000_events_end_to_end_with_every_tool_on_the_secure_broker(secure, mtls, tmp_path, capsys):
    sec: SecurityDir = secure["sec"]
    port = secure["tls_port"] if mtls else secure["port"]
    inp, out, dlq, shadow = (topic_name(p) for p in ("events", "predictions", "dlq", "shadow"))
    base = {**secure["env"], "HEARTRISK_BOOTSTRAP_SERVERS": f"localhost:{port}", "HEARTRISK_INPUT_TOPIC": inp,
            "HEARTRISK_OUTPUT_TOPIC": out, "HEARTRISK_DLQ_TOPIC": dlq, "HEARTRISK_SHADOW_TOPIC": shadow,
            "HEARTRISK_CHECKPOINT_DIR": str(tmp_path / "ck"), "HEARTRISK_SPARK_MASTER": "local[2]",
            "HEARTRISK_QUERY_NAME": "secure-scorer",
            # the mutual-TLS run also proves exactly-once's ACLs (its transactional id, its commit topic)
            "HEARTRISK_DELIVERY": "exactly-once" if mtls else "at-least-once"}

    def as_user(user: str) -> dict[str, str]:
        return {**base, "HEARTRISK_KAFKA_SECURITY_FILE": str(sec.credentials_file(user, mtls))}

    outputs = []

    def run(user: str, *args: str, timeout: float = 180) -> str:
        r = subprocess.run([HEARTRISK, *args], env=as_user(user), capture_output=True, text=True, timeout=timeout)
        outputs.append(r.stdout + r.stderr)
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout

    # the topics and their ACLs: `kafka up --secure` again (idempotent) grants them for these names
    up = subprocess.run([HEARTRISK, "kafka", "up", "--secure"], env=base, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0 and "already running" in up.stdout, up.stderr[-2000:]
    listed = run("admin", "kafka", "topics")
    assert {inp, out, dlq, shadow} <= {line.split("\t")[0] for line in listed.splitlines()}
    assert "published 1000 json events" in run("producer", "produce", "--source", "synthetic", "--count", "1000",
                                                "--quiet")
    log = tmp_path / "scorer.log"
    scorer = subprocess.Popen([HEARTRISK, "score"], env=as_user("scorer"), stdout=open(log, "wb"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    exporter_port = free_port_run(1)
    exporter = subprocess.Popen(
        [HEARTRISK, "exporter", "--pushgateway", "localhost:1", "--exporter-port", str(exporter_port),
         "--exporter-interval", "1"], env=as_user("scorer"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        lines = run("operator", "tail", "--from-beginning", "--max-messages", "1000", "--idle-timeout", "150",
                    timeout=300).splitlines()
        assert len(lines) == 1000 and all("patient=" in line for line in lines)
        wait_for(lambda: "heartrisk_predictions_total 1000.0" in http_get(f"http://127.0.0.1:{exporter_port}/metrics")[1],
                 60, what="the exporter to count 1,000 predictions")
        if mtls:  # every batch in a committed transaction, none aborted
            metrics = http_get(f"http://127.0.0.1:{exporter_port}/metrics")[1]
            assert 'heartrisk_transactions_total{outcome="aborted"} 0.0' in metrics
            committed = re.search(r'heartrisk_transactions_total\{outcome="committed"\} (\d+)', metrics)
            assert committed and int(committed.group(1)) >= 1, metrics[-2000:]
    finally:
        scorer.send_signal(signal.SIGTERM)
        code = scorer.wait(120)
        terminate([exporter])
    text = log.read_text()
    assert code == 0, text[-3000:]
    outputs.append(text)
    assert "secure-scorer" in run("scorer", "kafka", "groups"), "Kafka's own tool, with the Java dialect"
    leaked = [p for p in _passwords(sec) if any(p in o for o in outputs)]
    assert leaked == [], "no password or key appears in any output"
    with capsys.disabled():
        print(f"\nsecure broker, {'mutual TLS' if mtls else 'SASL_SSL'}: kafka topics, produce, score "
              f"({base['HEARTRISK_DELIVERY']}), tail and the exporter passed 1,000 events")


def test_unauthenticated_wrong_password_and_unauthorised_writes_are_refused(secure, tmp_path):
    sec: SecurityDir = secure["sec"]
    env = {**secure["env"], "HEARTRISK_BOOTSTRAP_SERVERS": f"localhost:{secure['port']}",
           "HEARTRISK_CHECKPOINT_DIR": str(tmp_path / "ck")}
    wrong = json.loads(sec.credentials_file("scorer").read_text())
    wrong.pop("password_file")
    wrong.update(password="not-the-password", ca_file=str(sec.dir / "ca.pem"))
    (tmp_path / "wrong.json").write_text(json.dumps(wrong))
    for extra, says in (({}, "closed the connection: it may require TLS or SASL"),
                        ({"HEARTRISK_KAFKA_SECURITY_FILE": str(tmp_path / "wrong.json")}, "refused the credentials")):
        started = time.monotonic()
        r = subprocess.run([HEARTRISK, "score"], env={**env, **extra}, capture_output=True, text=True, timeout=60)
        took = time.monotonic() - started
        assert r.returncode == 4 and took < 30, (took, r.stderr[-2000:])
        (line,) = [x for x in r.stderr.splitlines() if x.startswith("heartrisk: error:")]
        assert says in line and "Traceback" not in r.stderr
        assert "not-the-password" not in r.stdout + r.stderr and sec.password("scorer") not in r.stdout + r.stderr
    # the scorer's principal may not write the input topic; the producer's may
    for user, allowed in (("scorer", False), ("producer", True)):
        creds = KafkaCredentials.load(sec.credentials_file(user)).librdkafka()
        producer = Producer({"bootstrap.servers": f"localhost:{secure['port']}", **creds})
        errors: list = []
        producer.produce("patient-events", b"{}", on_delivery=lambda err, _msg, seen=errors: seen.append(err))
        producer.flush(30)
        assert len(errors) == 1
        if allowed:
            assert errors[0] is None
        else:
            assert errors[0] is not None and errors[0].name() == "TOPIC_AUTHORIZATION_FAILED"
