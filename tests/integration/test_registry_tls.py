"""The schema registry over https with basic auth: a real Apicurio serving TLS and asking for a password.

Apicurio (Quarkus) serves the Confluent API on an https port with a certificate of
a local CA and refuses every request without the embedded user's password. The
producer registers and frames Avro events through it, the streaming query reads
their writer schema through it and writes Avro predictions registered through
it; without the CA, or with a wrong password, the command says so in one line
(exit 8) and never prints the password.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.app.lifecycle import stop_gracefully
from stream.app.scorer import start_scorer
from stream.config import load_settings
from stream.contract.registry import SchemaRegistry, subject_for
from stream.local.registry_server import LocalRegistry
from stream.local.secure import SecurityDir
from stream.paths import PROJECT_ROOT
from tests.helpers import consume, end_offsets_total, free_port

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))
USER, PASSWORD = "registry-user", "Regi5try-pa55word-9f1c"


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(the https Confluent API URL, the CA file)."""
    root = tmp_path_factory.mktemp("registry-tls")
    sec = SecurityDir(root)
    sec.create()  # a local CA, and a certificate for localhost/127.0.0.1 ("broker") the registry serves
    tls_port = free_port()
    registry = LocalRegistry(root / "registry", free_port(), PROJECT_ROOT / ".jvm", java_options=(
        f"-Dquarkus.http.ssl-port={tls_port}",
        f"-Dquarkus.http.ssl.certificate.files={sec.dir / 'broker.crt'}",
        f"-Dquarkus.http.ssl.certificate.key-files={sec.dir / 'broker.key'}",
        "-Dquarkus.http.auth.basic=true",
        "-Dquarkus.security.users.embedded.enabled=true",
        "-Dquarkus.security.users.embedded.plain-text=true",
        f"-Dquarkus.security.users.embedded.users.{USER}={PASSWORD}",
        "-Dquarkus.http.auth.permission.all.paths=/*",
        "-Dquarkus.http.auth.permission.all.policy=authenticated",
    ))
    registry.up()
    try:
        yield f"https://localhost:{tls_port}/apis/ccompat/v7", sec.dir / "ca.pem"
    finally:
        registry.down()


def test_produce_score_and_decode_through_an_https_registry_with_basic_auth(
        tls_registry, spark, model, kafka_bootstrap, make_topics, tmp_path, capsys):
    url, ca = tls_registry
    inp, out, dlq = make_topics("events", "predictions", "dlq")
    (tmp_path / "user-info").write_text(f"{USER}:{PASSWORD}\n")
    env = {**os.environ, "HEARTRISK_BOOTSTRAP_SERVERS": kafka_bootstrap, "HEARTRISK_INPUT_TOPIC": inp,
           "HEARTRISK_SCHEMA_REGISTRY_URL": url}
    good = {**env, "HEARTRISK_TLS_CA_FILE": str(ca),
            "HEARTRISK_SCHEMA_REGISTRY_USER_INFO_FILE": str(tmp_path / "user-info")}

    def produce(run_env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([HEARTRISK, "produce", "--format", "avro", "--count", "500", "--bad-fraction", "0.02"],
                              env=run_env, capture_output=True, text=True, timeout=120)

    refused = {
        "no CA": produce({**good, "HEARTRISK_TLS_CA_FILE": ""}),
        "wrong password": produce({**good, "HEARTRISK_SCHEMA_REGISTRY_USER_INFO_FILE": "",
                                   "HEARTRISK_SCHEMA_REGISTRY_USER_INFO": f"{USER}:not-{PASSWORD}"}),
        "no password": produce({**good, "HEARTRISK_SCHEMA_REGISTRY_USER_INFO_FILE": ""}),
    }
    done = produce(good)
    assert done.returncode == 0, done.stderr[-2000:]
    assert end_offsets_total(kafka_bootstrap, inp) == 500
    for name, r in refused.items():
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("heartrisk: error:")]
        assert r.returncode == 8 and len(lines) == 1, (name, r.returncode, r.stderr[-1500:])
        assert PASSWORD not in r.stdout + r.stderr, name
        with capsys.disabled():
            print(f"\n{name}: exit 8: {lines[0][:220]}")
    assert "sent a certificate this client does not trust" in refused["no CA"].stderr
    assert "HEARTRISK_TLS_CA_FILE" in refused["no CA"].stderr
    for name in ("wrong password", "no password"):
        assert "refused the credentials" in refused[name].stderr and "(HTTP status code 401" in refused[name].stderr
        assert "HEARTRISK_SCHEMA_REGISTRY_USER_INFO" in refused[name].stderr

    settings = load_settings({
        "bootstrap_servers": kafka_bootstrap, "input_topic": inp, "output_topic": out, "dlq_topic": dlq,
        "checkpoint_dir": str(tmp_path / "checkpoints"), "trigger": "processing-time=500ms",
        "spark_master": "local[2]", "input_format": "avro", "output_format": "avro",
        "schema_registry_url": url, "tls_ca_file": str(ca), "schema_registry_user_info": f"{USER}:{PASSWORD}"})
    query = start_scorer(spark, settings, model)
    try:
        consume(kafka_bootstrap, out, lambda r: len(r) + end_offsets_total(kafka_bootstrap, dlq) >= 500, 240)
        assert query.exception() is None
    finally:
        stop_gracefully(query)
    preds, dead = end_offsets_total(kafka_bootstrap, out), end_offsets_total(kafka_bootstrap, dlq)
    assert preds + dead == 500 and preds >= 450, (preds, dead)
    registry = SchemaRegistry(url, f"{USER}:{PASSWORD}", ca_file=str(ca))
    assert registry.subject_schema_ids(subject_for(inp)), "the producer registered the event schema over https"
    assert registry.subject_schema_ids(subject_for(out)), "the scorer registered the prediction schema over https"
    dead_letters = consume(kafka_bootstrap, dlq, lambda r: len(r) >= dead, 60)
    dead_codes = {json.loads(m.value())["error_code"] for m in dead_letters}
    with capsys.disabled():
        print(f"https registry with basic auth: 500 Avro events -> {preds} predictions + {dead} dead letters "
              f"({sorted(dead_codes)})")
