"""The secret sweep (#14): a sentinel under every secret setting, every failure path run, all output grepped.

Every secret the product takes: Kafka client options (SASL password, key password, JAAS config,
OAuth config), the credentials file's password, the registry's and the Pushgateway's basic-auth
credentials (as settings, from ``_FILE``, and inside URLs), the JWT secret and the dead-letter keys.
Each holds a unique sentinel; then the commands run through their failure paths with verbose,
JSON-logged output (every command logs its settings at start, redacted): no broker, a broker that
refuses the credentials, a registry and a Pushgateway that are not there, a bad bearer token, a
malformed keys file, malformed secret flags and variables. No sentinel may appear in any output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.helpers import HeartriskServer, free_port, http_call, terminate, wait_for

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))


def _sentinel(what: str) -> str:
    return f"S3NT1NEL{what}{uuid.uuid4().hex}"  # 40+ characters: long enough for a JWT secret


@pytest.fixture
def secrets(tmp_path, kafka_bootstrap):
    s = {name: _sentinel(name) for name in ("sasl", "keypw", "jaas", "oauth", "filepw", "registry", "registryurl",
                                            "pushgw", "pushgwurl", "jwt", "javaopt", "rdkopt")}
    fernet_key = Fernet.generate_key().decode()
    s["fernet"] = fernet_key
    (tmp_path / "kafka.json").write_text(json.dumps({
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512", "username": "scorer",
        "password_file": "kafka.password"}))
    (tmp_path / "kafka.password").write_text(s["filepw"])
    (tmp_path / "registry.userinfo").write_text(f"reg:{s['registry']}")
    (tmp_path / "jwt.secret").write_text(s["jwt"])
    (tmp_path / "dlq.keys").write_text(f"k1={fernet_key}\n")
    (tmp_path / "bad.keys").write_text(f"k1={s['oauth']}\n")
    closed = free_port()
    env = {
        **os.environ,
        "HEARTRISK_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "HEARTRISK_KAFKA_OPTIONS": (f"sasl.password={s['sasl']},ssl.key.password={s['keypw']},"
                                    f"sasl.oauthbearer.config=clientSecret={s['oauth']}"),
        "HEARTRISK_KAFKA_JAVA_OPTIONS": f"ssl.truststore.password={s['javaopt']}",
        "HEARTRISK_KAFKA_LIBRDKAFKA_OPTIONS": f"ssl.key.password={s['rdkopt']}",
        "HEARTRISK_SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{closed}/apis/ccompat/v7",
        "HEARTRISK_SCHEMA_REGISTRY_USER_INFO_FILE": str(tmp_path / "registry.userinfo"),
        "HEARTRISK_PUSHGATEWAY": f"http://gw:{s['pushgwurl']}@127.0.0.1:{closed}",
        "HEARTRISK_PUSHGATEWAY_USER_INFO": f"gw:{s['pushgw']}",
        "HEARTRISK_JWT_SECRET_FILE": str(tmp_path / "jwt.secret"),
        "HEARTRISK_DEAD_LETTER_PAYLOAD": "encrypted",
        "HEARTRISK_DEAD_LETTER_KEY_FILE": str(tmp_path / "dlq.keys"),
        "HEARTRISK_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "HEARTRISK_SPARK_MASTER": "local[1]",
        "HEARTRISK_LOG_FORMAT": "json",
    }
    return {"values": s, "env": env, "tmp": tmp_path, "closed": closed}


def _run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([HEARTRISK, "-v", *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_no_secret_appears_in_any_output_on_any_failure_path(secrets, make_topics):
    s, env, tmp = secrets["values"], secrets["env"], secrets["tmp"]
    inp, out, dlq = make_topics("events", "predictions", "dlq")
    topics = {"HEARTRISK_INPUT_TOPIC": inp, "HEARTRISK_OUTPUT_TOPIC": out, "HEARTRISK_DLQ_TOPIC": dlq}
    no_file = {k: v for k, v in env.items() if k != "HEARTRISK_KAFKA_SECURITY_FILE"}
    refused = {**env, "HEARTRISK_KAFKA_SECURITY_FILE": str(tmp / "kafka.json"), "HEARTRISK_INPUT_TOPIC": inp}
    outputs: dict[str, str] = {}
    codes: dict[str, int] = {}

    def run(name: str, args: list[str], run_env: dict[str, str] = no_file, timeout: float = 120) -> None:
        done = _run(run_env, *args, timeout=timeout)
        outputs[name], codes[name] = done.stdout + done.stderr, done.returncode

    run("score, no broker", ["score", "--bootstrap-servers", f"127.0.0.1:{secrets['closed']}"])
    run("score, credentials refused", ["score", "--input-topic", inp], refused, timeout=180)
    run("tail, credentials refused", ["tail", "--from-beginning", "--max-messages", "1"], refused)
    run("produce avro, no registry", ["produce", "--format", "avro", "--count", "5", "--input-topic", inp])
    url_creds = f"http://reg:{s['registryurl']}@127.0.0.1:{secrets['closed']}/apis/ccompat/v7"
    run("produce avro, registry credentials twice", ["produce", "--format", "avro", "--count", "5"],
        {**no_file, "HEARTRISK_SCHEMA_REGISTRY_URL": url_creds})
    java_only = f"{env['HEARTRISK_KAFKA_OPTIONS']},sasl.jaas.config=x password=\"{s['jaas']}\";"
    run("tail, a Java-only option", ["tail", "--max-messages", "1"], {**no_file, "HEARTRISK_KAFKA_OPTIONS": java_only})
    run("replay, malformed keys file", ["replay", "--dlq-topic", dlq, "--dead-letter-key-file", str(tmp / "bad.keys")])
    run("score, malformed secret flag", ["score", "--kafka-options", f"sasl.password{s['sasl']}"])
    run("score, malformed secret variable", ["score"],
        {**no_file, "HEARTRISK_KAFKA_OPTIONS": f"sasl.password{s['sasl']}"})
    run("score, malformed Java-only options", ["score"],
        {**no_file, "HEARTRISK_KAFKA_JAVA_OPTIONS": f"ssl.truststore.password{s['javaopt']}"})
    run("score, bad keys file", ["score", "--dead-letter-key-file", str(tmp / "bad.keys")], {**no_file, **topics})
    run("status", ["status", "--json"])

    # the exporter, pushing to a Pushgateway that is not there, until it has failed a few times
    log = tmp / "exporter.log"
    exporter = subprocess.Popen([HEARTRISK, "-v", "exporter", "--exporter-port", str(free_port()),
                                 "--exporter-interval", "0.5"], env=no_file, stdout=open(log, "w"),
                                stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: log.read_text().count("push failed") >= 3 or exporter.poll() is not None, 60,
                 what="the exporter's failed pushes")
    finally:
        terminate([exporter])
    outputs["exporter, no Pushgateway"] = log.read_text()

    # the HTTP service with its JWT secret: a forged token, a missing one
    server = HeartriskServer(tmp, {k: v for k, v in no_file.items() if k != "HEARTRISK_LOG_FORMAT"}).start()
    try:
        forged = http_call("POST", server.url + "/v1/predict", b"{}",
                           {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"})
        missing = http_call("POST", server.url + "/v1/predict", b"{}")
        assert (forged[0], missing[0]) == (401, 401)
        outputs["serve, bad tokens"] = forged[2].decode() + missing[2].decode()
    finally:
        server.stop()
    outputs["serve log"] = server.logs()

    leaks = [(name, what) for name, text in outputs.items() for what, secret in s.items() if secret in text]
    print(f"\nsecret sweep: {len(s)} secrets x {len(outputs)} outputs "
          f"({sum(len(t) for t in outputs.values()):,} characters), {len(leaks)} leaks")
    assert leaks == [], leaks
    for name, text in outputs.items():
        print(f"{name}: exit {codes.get(name)}: {text.strip().splitlines()[-1][:160] if text.strip() else ''}")
    assert codes["score, no broker"] == 4 and "no Kafka broker answers" in outputs["score, no broker"]
    assert codes["score, credentials refused"] == 4 and codes["tail, credentials refused"] == 4
    assert "HEARTRISK_KAFKA_SECURITY_FILE" in outputs["tail, credentials refused"], "one line on why, no silent wait"
    assert codes["produce avro, no registry"] == 8 and "did not answer" in outputs["produce avro, no registry"]
    assert codes["produce avro, registry credentials twice"] == 2
    assert "given twice" in outputs["produce avro, registry credentials twice"]
    assert codes["tail, a Java-only option"] == 2
    assert "HEARTRISK_KAFKA_SECURITY_FILE" in outputs["tail, a Java-only option"]
    assert codes["replay, malformed keys file"] == 2 and "line 1" in outputs["replay, malformed keys file"]
    assert codes["score, malformed secret flag"] == 2 and codes["score, malformed secret variable"] == 2
    assert codes["score, malformed Java-only options"] == 2
    assert codes["score, bad keys file"] == 2, outputs["score, bad keys file"][-500:]
    assert '"audit": true' in outputs["status"] and '"command started"' in outputs["status"], "settings were logged"
