"""docker-compose.kafka.yml: valid Compose, and every heartrisk command and setting in it is real.

No Docker engine here, so nothing is started: the file is checked against the Compose
specification's JSON schema (compose-go v2.9.1, fetched by ``make setup``), then service by
service against the CLI's parser, the settings and the files it mounts.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml

from stream.cli import build_parser
from stream.config import PROJECT_ROOT, SPECS, load_settings

COMPOSE = PROJECT_ROOT / "docker-compose.kafka.yml"
SPEC = PROJECT_ROOT / ".k8s-schemas" / "compose-spec.json"
PRODUCT = {"kafka", "schema-registry", "topics", "scorer", "exporter", "pushgateway", "prometheus", "grafana"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _ours(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if str(s.get("image", "")).startswith("heartrisk-stream")}


def test_the_file_is_valid_compose(compose):
    assert SPEC.exists(), "the Compose specification's schema comes with `make setup`"
    schema = json.loads(SPEC.read_text())
    jsonschema.Draft7Validator(schema).validate(compose)
    broken = {**compose, "services": {**compose["services"], "scorer": {**compose["services"]["scorer"],
                                                                         "stop_grace": "2m"}}}
    with pytest.raises(jsonschema.ValidationError, match="stop_grace"):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_it_runs_the_whole_product(compose):
    assert set(compose["services"]) == PRODUCT
    assert set(_ours(compose)) == {"topics", "scorer", "exporter"}
    builds = [s["build"] for s in compose["services"].values() if "build" in s]
    assert builds == [{"context": ".", "dockerfile": "k8s/Dockerfile"}], "one service builds the image the others use"
    assert (PROJECT_ROOT / builds[0]["dockerfile"]).is_file()


def test_every_heartrisk_command_and_setting_exists(compose):
    parser = build_parser()
    known = {s.env for s in SPECS.values()}
    for name, svc in _ours(compose).items():
        args = parser.parse_args(svc["command"])  # exits on an unknown command or option
        assert args.handler, name
        env = {k: str(v) for k, v in svc["environment"].items()}
        assert set(env) <= known, (name, set(env) - known)
        settings = load_settings(environ=env)
        assert settings.bootstrap_servers == "kafka:29092"
        host, _, port = settings.pushgateway.rpartition(":")
        assert host in compose["services"] and f"{port}:{port}" in compose["services"][host]["ports"]
    commands = {n: s["command"] for n, s in _ours(compose).items()}
    assert commands == {"topics": ["kafka", "topics"], "scorer": ["score"], "exporter": ["exporter"]}


def test_scorer_and_exporter_share_the_checkpoint_and_start_in_order(compose):
    services = compose["services"]
    assert "checkpoints:/checkpoints" in services["scorer"]["volumes"]
    assert "checkpoints:/checkpoints:ro" in services["exporter"]["volumes"], "the exporter reads the progress file"
    assert services["scorer"]["environment"]["HEARTRISK_CHECKPOINT_DIR"] == "/checkpoints"
    assert services["scorer"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "install -d -o 185 -g 185 /checkpoints" in (PROJECT_ROOT / "k8s" / "Dockerfile").read_text(), (
        "a fresh named volume takes the image's ownership of /checkpoints, so user 185 can write it")


def test_mounted_files_exist_and_prometheus_scrapes_the_services(compose):
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (PROJECT_ROOT / src).exists(), (name, src)
    prom = yaml.safe_load((PROJECT_ROOT / "monitoring" / "compose" / "prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {"pushgateway:9091", "exporter:9108"}
    assert prom["rule_files"] == ["heartrisk.rules.yml"]
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./monitoring/heartrisk.rules.yml:/etc/prometheus/heartrisk.rules.yml:ro" in mounts
    ds = yaml.safe_load((PROJECT_ROOT / "monitoring/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
