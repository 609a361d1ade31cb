"""monitoring/: promtool validates the config and rules and runs every rule's unit test;
the dashboard and rules only use metrics the exporter really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import yaml

from stream.config import PROJECT_ROOT
from stream.monitor.listener import empty_totals

MON = PROJECT_ROOT / "monitoring"
PROMTOOL = shutil.which("promtool")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool comes with Debian's prometheus package, installed by `make setup`"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=MON, timeout=120)


def test_promtool_check_config_and_rules():
    r = _promtool("check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    r = _promtool("check", "rules", "heartrisk.rules.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 15 rules found" in r.stdout


def test_every_alert_rule_has_a_passing_unit_test():
    rules = yaml.safe_load((MON / "heartrisk.rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((MON / "tests" / "heartrisk.rules.test.yml").read_text())
    tested = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert alerts == tested, f"untested alerts: {alerts - tested}"
    r = _promtool("test", "rules", "tests/heartrisk.rules.test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_scrape_config_honors_pushed_labels():
    cfg = yaml.safe_load((MON / "prometheus.yml").read_text())
    (push,) = [j for j in cfg["scrape_configs"] if j["job_name"] == "pushgateway"]
    assert push["honor_labels"] is True


def _exported_names() -> set[str]:
    import time

    from stream.model.artifact import load_metadata
    from stream.monitor.drift import add_to_window, empty_counts, reference
    from stream.monitor.exporter import build_metrics

    ref = reference(load_metadata(PROJECT_ROOT / "models" / "heart_lr"))
    counts = {**empty_counts(), "n": 1, "probability_sum": 0.5, "levels": [0, 0, 1],
              "features": {n: [1] + [0] * (len(s["expected"]) - 1) for n, s in ref["features"].items()}}
    drift = {"reference": ref, "window_s": 3600.0, "bucket_s": 60.0,
             "buckets": add_to_window([], counts, time.time(), 60.0, 3600.0)}
    progress = {"drift": drift, "state": "active", "last_progress_at": 9e18, "totals": empty_totals(),
                "latency_p50_seconds": 0.1, "latency_p99_seconds": 0.2, "offsets_behind_latest": {"t": 0},
                "phase_durations_seconds": {"addBatch": 0.1},
                "models": {"champion": {"version": "1.0.0"}, "challenger": {"version": "2.0.0"}},
                "shadow": {"pair": ["1.0.0", "2.0.0"], "rows": 10, "agree": 9, "abs_diff_sum": 0.5}}
    from stream.monitor.quality import add_to_window as add_outcomes
    from stream.monitor.quality import empty_quality

    q = {**empty_quality(), "matched": 2, "tp": 1, "tn": 1, "brier_sum": 0.1,
         "histogram": {"0.9": [1, 0], "0.1": [0, 1]}}
    feedback = {"state": "active", "totals": {}, "window_s": 86400.0, "bucket_s": 1440.0,
                "buckets": add_outcomes([], {"all": q, "sex=Male": q, "sex=Female": q}, time.time(), 1440.0, 86400.0)}
    names = set()
    for fam in build_metrics(progress, True, feedback):
        for s in fam.samples:
            names.add(s.name)
    return names | {"push_time_seconds"}


def test_dashboard_and_rules_reference_only_exported_metrics():
    exported = _exported_names()
    dash = json.loads((MON / "grafana" / "heartrisk-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    rules = yaml.safe_load((MON / "heartrisk.rules.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {m for e in exprs for m in re.findall(r"\b(heartrisk_[a-z_]+|push_time_seconds)\b", e)}
    assert used, "expressions name metrics"
    assert used <= exported, used - exported
    titles = {p["title"] for p in dash["panels"]}
    for needed in ("Throughput", "latency", "Lag", "Dead letters", "Model version"):
        assert any(needed.lower() in t.lower() for t in titles), needed
