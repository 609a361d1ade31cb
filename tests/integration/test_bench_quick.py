"""`heartrisk bench --quick` as a smoke test: the outputs exist and the predictions reconcile.

No timing is asserted here; figures come from the full bench run (bench/README.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))


def _local_env(tmp_path: Path, registry: bool = False) -> dict[str, str]:
    """Its own local broker (and registry) on free ports, state under tmp_path."""
    env = {
        **os.environ,
        "HEARTRISK_KAFKA_PORT": str(free_port()),
        "HEARTRISK_KAFKA_CONTROLLER_PORT": str(free_port()),
        "HEARTRISK_KAFKA_STATE_DIR": str(tmp_path / "kafka"),
    }
    if registry:
        env.update(HEARTRISK_REGISTRY_PORT=str(free_port()), HEARTRISK_REGISTRY_STATE_DIR=str(tmp_path / "registry"))
    return env


def _bench(tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Path:
    """Run `heartrisk bench <args> --results-dir <tmp>/results`; fail with its stderr; return the results dir."""
    out = tmp_path / "results"
    r = subprocess.run([HEARTRISK, "bench", *args, "--results-dir", str(out)], env=env,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-4000:]
    return out


def test_bench_quick_writes_results_that_reconcile(tmp_path):
    out = _bench(tmp_path, "--quick", env=_local_env(tmp_path), timeout=900)
    (json_path,) = out.glob("*-quick.json")
    assert json_path.with_suffix(".md").is_file()
    assert json_path.with_name(json_path.stem + "-latency-cdf.png").stat().st_size > 1000
    assert json_path.with_name(json_path.stem + "-throughput.png").stat().st_size > 1000
    res = json.loads(json_path.read_text())
    thr = res["throughput"]
    assert thr["predictions"] == thr["events"] == thr["distinct_event_ids"], "every event scored"
    assert thr["completed"] is True
    assert res["ceiling"]["events"] == thr["events"]
    assert res["baseline_python"]["same_probabilities"] is True
    assert res["baseline_python"]["compared_with_spark"] == res["baseline_python"]["events"]
    assert res["baseline_per_request"]["events"] > 0
    modes = {row["mode"] for row in res["latency"]}
    assert modes == {"micro-batch", "real-time"}
    delivery = {row["delivery"]: row for row in res["delivery"]}
    assert set(delivery) == {"at-least-once", "exactly-once"}
    for row in delivery.values():
        assert row["throughput_completed"] is True and row["events_per_second"] > 0
        assert row["arrived"] == row["events"] > 0, "a read_committed consumer received every prediction"
        assert row["visible_latency_ms"]["count"] > 0
    assert "## Delivery: exactly-once beside at-least-once" in json_path.with_suffix(".md").read_text()
    assert all(row["drained"] and row["latency_ms"]["count"] > 0 for row in res["latency"])
    for group in ("partitions", "backlog"):
        assert res["scaling"][group]
        assert all(x["predictions"] == x["events"] for x in res["scaling"][group])
    assert {t["figure"] for t in res["targets"]} >= {"end-to-end throughput (events/s)"}
    assert "## Against the targets" in json_path.with_suffix(".md").read_text()


def test_bench_formats_quick_reconciles_json_and_avro(tmp_path):
    out = _bench(tmp_path, "--formats", "--quick", env=_local_env(tmp_path, registry=True))
    (json_path,) = out.glob("*-formats-*.json")
    res = json.loads(json_path.read_text())
    assert set(res["runs"]) == {"json->json", "avro->avro"}
    for runs in res["runs"].values():
        (run,) = runs
        assert run["completed"] is True
        assert run["predictions"] == run["distinct_event_ids"] == run["events"] == 5000
        assert run["events_per_second"] > 0 and run["batches"] >= 1
    assert res["summary"]["json->json"]["ratio_to_json->json"] == 1.0
    assert "| avro->avro |" in json_path.with_suffix(".md").read_text()


def test_bench_serve_quick_measures_the_service_and_the_baseline(tmp_path):
    out = _bench(tmp_path, "--serve", "--quick")
    (json_path,) = out.glob("*-serve-quick.json")
    res = json.loads(json_path.read_text())
    assert [f["target_rps"] for f in res["fixed_rate"]] == [200, 500]
    for f in res["fixed_rate"]:
        assert f["requests"] > 0 and f["non_2xx"] == 0, "every request answered 200 (JWT checked)"
    assert set(res["most"]) == {"1_worker", "2_workers"}
    for m in res["most"].values():
        assert m["single"]["non_2xx"] == 0 and m["batch"]["non_2xx"] == 0
        assert m["batch"]["events_per_second"] == m["batch"]["requests_per_second"] * 100
    assert res["baseline_per_request_spark"]["events"] == 10
    assert "x per-request Spark" in json_path.with_suffix(".md").read_text()


def test_bench_drift_quick_measures_both_plans_and_the_counts_reconcile(tmp_path):
    out = _bench(tmp_path, "--drift", "--quick")
    (json_path,) = out.glob("*-drift.json")
    res = json.loads(json_path.read_text())
    assert res["events"] == 20_000 and len(res["runs_seconds"]["on"]) == len(res["runs_seconds"]["off"]) == 2
    assert res["predictions"] == 20_000, "the bench's events are all valid"
    assert res["reconciles"] is True and set(res["binned_per_feature"]) == {
        "Age", "Blood_Pressure", "Cholesterol", "Heart_Rate", "Sex", "angina", "Glycemia", "ECG",
        "angina_after_sport", "ecg_slope", "fluoroscopy", "thalassemia"}
    assert "Cost:" in json_path.with_suffix(".md").read_text()


def test_bench_feedback_state_quick_fills_the_state_and_leaves_no_broker(tmp_path):
    env = _local_env(tmp_path)
    out = _bench(tmp_path, "--feedback-state", "--quick", env=env)
    (json_path,) = out.glob("*-feedback-state.json")
    res = json.loads(json_path.read_text())
    assert res["predictions"] == 20_000 and res["bound_seconds"] == 7 * 86400
    assert [run["state_rows"] for run in res["runs"]] == [40_000, 40_000], "the join and the dedup hold each one"
    assert "RocksDB" in res["runs"][1]["provider"] and all(run["checkpoint_bytes_on_disk"] > 0 for run in res["runs"])
    status = subprocess.run([HEARTRISK, "kafka", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert "not running" in (status.stdout + status.stderr), "the broker the bench started is stopped"


def test_bench_cluster_quick_measures_every_combination_and_leaves_nothing_running(tmp_path):
    before = _daemons()
    out = _bench(tmp_path, "--cluster", "--quick", timeout=900)
    (json_path,) = out.glob("*-cluster.json")
    res = json.loads(json_path.read_text())
    assert [(r["workers"], r["brokers"]) for r in res["rows"]] == [(1, 1), (1, 3), (2, 1), (2, 3)]
    for r in res["rows"]:
        (rate,) = r["events_per_second"]
        assert rate > 0 and r["median_batches"] >= 20_000 / 5_000 - 1, "micro-batches after the cold first one"
        assert r["median_batch_p99_ms"] > 0
        assert all(v > 0 for v in r["cpu_microseconds_per_event"].values()), r["cpu_microseconds_per_event"]
    table = json_path.with_suffix(".md").read_text()
    assert table.count("\n| 1 | ") == 2 and table.count("\n| 2 | ") == 2
    assert _daemons() == before, "the bench's brokers, master and workers are all stopped"


def _daemons() -> set[int]:
    """Pids of Kafka brokers and Spark standalone daemons on this machine."""
    found = subprocess.run(["pgrep", "-f", "kafka.Kafka |deploy.master.Master|deploy.worker.Worker"],
                           capture_output=True, text=True)
    return {int(p) for p in found.stdout.split()}
