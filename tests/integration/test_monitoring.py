"""Operators' view end to end: broker, scorer, exporter, a real Pushgateway and a real Prometheus."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from stream.app.produce import MIXED_KINDS, bad_event, generate, publish
from stream.config import PROJECT_ROOT, load_settings
from tests.helpers import Pushgateway, free_port, http_get, terminate, wait_for

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))
QUERY = "monitored-scorer"


class Prometheus:
    def __init__(self, tmp: Path, pushgateway_port: int) -> None:
        self.port = free_port()
        cfg = tmp / "prometheus.yml"
        # the shipped alert rules, each with its `for:` set to 0s: the expressions are the product's,
        # the durations are proven by promtool's unit tests (monitoring/tests)
        rules = yaml.safe_load((PROJECT_ROOT / "monitoring" / "heartrisk.rules.yml").read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                rule["for"] = "0s"
        (tmp / "rules.yml").write_text(yaml.safe_dump(rules))
        cfg.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{tmp / 'rules.yml'}']\n"
            "scrape_configs:\n"
            "  - job_name: pushgateway\n"
            "    honor_labels: true\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{pushgateway_port}']}}]\n"
        )
        binary = shutil.which("prometheus")
        assert binary, "prometheus comes from Debian, installed by `make setup`"
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={cfg}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=open(tmp / "prometheus.log", "ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: http_get(f"http://127.0.0.1:{self.port}/-/ready")[0] == 200, 60, what="prometheus ready")

    def query(self, promql: str) -> dict[tuple, float]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        status, body = http_get(url)
        if status != 200:
            return {}
        out = {}
        for r in json.loads(body)["data"]["result"]:
            out[tuple(sorted(r["metric"].items()))] = float(r["value"][1])
        return out

    def scalar(self, promql: str) -> float | None:
        values = list(self.query(promql).values())
        return values[0] if len(values) == 1 else None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture
def stack(kafka_bootstrap, make_topics, tmp_path):
    inp, out, dlq = make_topics("events", "predictions", "dlq")
    gateway = Pushgateway(tmp_path)
    gateway.start()
    prom = Prometheus(tmp_path, gateway.port)
    exporter_port = free_port()
    env = {
        **os.environ,
        "HEARTRISK_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "HEARTRISK_INPUT_TOPIC": inp,
        "HEARTRISK_OUTPUT_TOPIC": out,
        "HEARTRISK_DLQ_TOPIC": dlq,
        "HEARTRISK_QUERY_NAME": QUERY,
        "HEARTRISK_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "HEARTRISK_SPARK_MASTER": "local[2]",
        "HEARTRISK_TRIGGER": "processing-time=500ms",
        "HEARTRISK_PUSHGATEWAY": f"127.0.0.1:{gateway.port}",
        "HEARTRISK_EXPORTER_PORT": str(exporter_port),
        "HEARTRISK_EXPORTER_INTERVAL": "1",
        "HEARTRISK_STALE_AFTER": "30",
    }
    procs: dict[str, subprocess.Popen] = {}

    def start(name: str, *args: str) -> subprocess.Popen:
        procs[name] = subprocess.Popen(
            [HEARTRISK, *args], env=env, stdout=open(tmp_path / f"{name}.log", "ab"), stderr=subprocess.STDOUT
        )
        return procs[name]

    settings = load_settings({"bootstrap_servers": kafka_bootstrap, "input_topic": inp})
    yield {
        "gateway": gateway, "prom": prom, "start": start, "procs": procs, "settings": settings,
        "healthz": f"http://127.0.0.1:{exporter_port}/healthz", "metrics": f"http://127.0.0.1:{exporter_port}/metrics",
        "tmp": tmp_path,
    }
    terminate(procs.values())
    if gateway.proc and gateway.proc.poll() is None:
        gateway.kill()
    prom.stop()


def _sel(metric: str) -> str:
    return f'{metric}{{job="heartrisk",instance="{QUERY}"}}'


def test_counts_outage_and_scorer_down_through_real_prometheus(stack, capsys):
    prom: Prometheus = stack["prom"]
    gateway: Pushgateway = stack["gateway"]
    settings = stack["settings"]
    scorer = stack["start"]("scorer", "score")
    exporter = stack["start"]("exporter", "exporter")

    n_valid, n_bad = 500, 50
    valid = list(generate(n_valid, "synthetic", settings, seed=21))
    bad = [bad_event(MIXED_KINDS[i % len(MIXED_KINDS)], i) for i in range(n_bad)]
    publish(iter(valid + bad), n_valid + n_bad, settings, progress=False)
    expected_codes = Counter(e.expected_code for e in bad)

    # Counts reach Prometheus through exporter -> Pushgateway -> scrape.
    wait_for(lambda: prom.scalar(_sel("heartrisk_predictions_total")) == n_valid, 240, what="predictions in Prometheus")
    wait_for(
        lambda: prom.scalar(f'sum({_sel("heartrisk_dead_letters_total")})') == n_bad, 60, what="dead letters"
    )
    by_code = prom.query(f'sum by (error_code) ({_sel("heartrisk_dead_letters_total")}) > 0')
    assert {dict(k)["error_code"]: int(v) for k, v in by_code.items()} == dict(expected_codes)
    assert prom.scalar(_sel("heartrisk_input_rows_total")) == n_valid + n_bad
    wait_for(lambda: prom.scalar(_sel("heartrisk_offsets_behind_latest_max")) == 0, 60, what="lag back to 0")
    assert prom.scalar(_sel("heartrisk_up")) == 1
    assert prom.scalar(f'count({_sel("heartrisk_model_info")})') == 1
    assert http_get(stack["healthz"])[0] == 200
    sample = gateway.groups()
    pushed = [line for line in sample.splitlines() if line.startswith("heartrisk_") and "bucket" not in line]
    with capsys.disabled():
        print("\nsample of pushed metrics:\n" + "\n".join(pushed)[:3000])

    # Pushgateway outage of 30 s: the exporter keeps running and retrying, the scorer keeps scoring.
    gateway.kill()
    outage_start = time.monotonic()
    more = list(generate(100, "synthetic", settings, seed=22))
    publish(iter(more), 100, settings, progress=False)
    wait_for(
        lambda: f"heartrisk_predictions_total {float(n_valid + 100)}" in http_get(stack["metrics"])[1],
        120, what="exporter's own /metrics sees the new predictions during the outage",
    )
    wait_for(lambda: time.monotonic() - outage_start >= 30, 40, interval_s=1, what="30 s of outage")
    assert exporter.poll() is None, "the exporter survived the outage"
    assert scorer.poll() is None, "the scorer survived the outage"
    assert "push failed" in (stack["tmp"] / "exporter.log").read_text()
    gateway.start()
    wait_for(
        lambda: prom.scalar(_sel("heartrisk_predictions_total")) == n_valid + 100, 120, what="counts after outage"
    )

    # Scorer down: /healthz fails and heartrisk_up goes to 0.
    scorer.send_signal(signal.SIGTERM)
    assert scorer.wait(120) == 0
    wait_for(lambda: http_get(stack["healthz"])[0] == 503, 30, what="/healthz 503")
    wait_for(lambda: prom.scalar(_sel("heartrisk_up")) == 0, 60, what="heartrisk_up 0")
    pushed = gateway.groups()
    assert "heartrisk_predictions_total" not in pushed, "a down scorer's last numbers are not pushed on"

    # Clean exporter shutdown deletes its group.
    exporter.send_signal(signal.SIGTERM)
    assert exporter.wait(30) == 0
    assert f'instance="{QUERY}"' not in gateway.groups()


def _bins(values: list[float], spec: dict) -> list[int]:
    """Independent binning of what the test published: numpy.histogram, plus below and above the edges."""
    if spec["kind"] == "categorical":
        return [sum(v == c for v in values) for c in spec["categories"]]
    x, edges = np.array(values, dtype=float), np.array(spec["edges"])
    inside, _ = np.histogram(x[(x >= edges[0]) & (x <= edges[-1])], bins=edges)
    return [int((x < edges[0]).sum()), *map(int, inside), int((x > edges[-1]).sum())]


def test_drift_psi_through_real_prometheus_and_the_alert_fires(stack):
    from stream.model.artifact import load_metadata
    from stream.monitor.drift import psi, reference

    prom: Prometheus = stack["prom"]
    settings = stack["settings"]
    ref = reference(load_metadata(settings.path(settings.model_dir)))
    stack["start"]("scorer", "score")
    stack["start"]("exporter", "exporter")

    def exported_psi() -> dict[str, float]:
        return {dict(k)["feature"]: v for k, v in prom.query(_sel("heartrisk_feature_psi")).items()}

    def published_psi(events: list) -> dict[str, float]:
        bodies = [json.loads(e.value) for e in events]
        return {name: psi(spec["expected"], _bins([b[name] for b in bodies if b[name] is not None], spec))
                for name, spec in ref["features"].items()}

    normal = list(generate(20_000, "synthetic", settings, seed=31))
    publish(iter(normal), len(normal), settings, progress=False)
    wait_for(lambda: prom.scalar(_sel("heartrisk_drift_window_predictions")) == 20_000, 300,
             what="20,000 predictions in the drift window, in Prometheus")
    wait_for(lambda: len(exported_psi()) == 12, 30, what="a PSI per feature")
    first = exported_psi()
    print("\nPSI, 20,000 synthetic events:", {k: round(v, 5) for k, v in sorted(first.items())})
    assert max(first.values()) < 0.1, first
    expected = published_psi(normal)
    assert all(abs(first[k] - expected[k]) <= 1e-9 for k in expected), (first, expected)
    firing = 'ALERTS{alertname=~"HeartriskFeatureDrift.*",alertstate="firing"}'
    assert prom.query(firing) == {}

    drifted = list(generate(20_000, "drifted", settings, seed=32))
    publish(iter(drifted), len(drifted), settings, progress=False)
    wait_for(lambda: prom.scalar(_sel("heartrisk_drift_window_predictions")) == 40_000, 300,
             what="40,000 predictions in the drift window")
    wait_for(lambda: exported_psi().get("Blood_Pressure", 0) > 0.25, 30, what="the PSI of the new window")
    second = exported_psi()
    print("PSI, + 20,000 with Blood_Pressure + 25 mmHg:", {k: round(v, 5) for k, v in sorted(second.items())})
    others = {k: v for k, v in second.items() if k != "Blood_Pressure"}
    assert max(others.values()) < 0.1, others
    expected = published_psi(normal + drifted)
    assert all(abs(second[k] - expected[k]) <= 1e-9 for k in expected), (second, expected)

    def alerts() -> set[tuple[str, str]]:
        return {(dict(k)["alertname"], dict(k)["feature"]) for k in prom.query(firing)}

    wait_for(lambda: alerts() == {("HeartriskFeatureDrift", "Blood_Pressure"),
                                  ("HeartriskFeatureDriftCritical", "Blood_Pressure")},
             60, what="both drift alerts firing in Prometheus, for Blood_Pressure only")
    levels = {dict(k)["risk_level"]: v for k, v in prom.query(_sel("heartrisk_predictions_by_level_total")).items()}
    assert sum(levels.values()) == 40_000
    assert prom.scalar(_sel("heartrisk_window_mean_probability")) is not None
