"""The exporter's snapshot: names, labels, up/down logic, and the progress file (pure units)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, generate_latest

from stream.monitor.exporter import SnapshotCollector, build_metrics, scorer_is_up
from stream.monitor.listener import empty_totals, read_progress, write_progress

ALLOWED_LABELS = {"error_code", "topic", "phase", "quantile", "model_version", "le"}


def _progress(**changes):
    totals = empty_totals()
    totals.update(input_rows=110, predictions=100, batches=3, latency_count=100, latency_sum_seconds=42.0)
    totals["dead_letters"]["NOT_JSON"] = 10
    totals["latency_buckets"].update({"0.5": 60, "1.0": 90, "2.0": 100})
    p = {
        "state": "active",
        "query_name": "q",
        "model_version": "1.0.0",
        "last_progress_at": time.time(),
        "batch_id": 7,
        "input_rows_per_second": 50.0,
        "processed_rows_per_second": 400.0,
        "batch_duration_seconds": 0.25,
        "phase_durations_seconds": {"addBatch": 0.2, "getBatch": 0.01},
        "offsets_behind_latest": {"patient-events": 0},
        "latency_p50_seconds": 0.4,
        "latency_p99_seconds": 1.5,
        "totals": totals,
    }
    p.update(changes)
    return p


def _exposition(progress, up):
    collector = SnapshotCollector()
    collector.set(build_metrics(progress, up))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode()


def test_names_units_and_labels_follow_prometheus_conventions():
    text = _exposition(_progress(), True)
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    names = {s.split("{")[0].split(" ")[0] for s in samples}
    assert all(n.startswith("heartrisk_") for n in names)
    for counter in ("input_rows", "predictions", "batches", "dead_letters"):
        assert f"heartrisk_{counter}_total" in names
    assert "heartrisk_prediction_latency_seconds_bucket" in names
    assert 'heartrisk_dead_letters_total{error_code="NOT_JSON"} 10.0' in text
    assert 'heartrisk_prediction_latency_seconds_bucket{le="+Inf"} 100.0' in text
    assert "heartrisk_predictions_total 100.0" in text
    for s in samples:
        if "{" in s:
            labels = {kv.split("=")[0] for kv in s.split("{", 1)[1].split("}")[0].split(",")}
            assert labels <= ALLOWED_LABELS, s
    assert "patient_id" not in text and "cleveland-" not in text


def test_down_scorer_exports_only_up_and_last_progress():
    text = _exposition(_progress(state="terminated"), False)
    samples = [line.split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert samples == ["heartrisk_up", "heartrisk_last_progress_timestamp_seconds"]
    assert "heartrisk_up 0.0" in text


def test_scorer_is_up_needs_active_state_and_recent_progress():
    now = time.time()
    assert scorer_is_up(_progress(last_progress_at=now - 5), stale_after_s=60, now=now)
    assert not scorer_is_up(_progress(last_progress_at=now - 61), stale_after_s=60, now=now)
    assert not scorer_is_up(_progress(state="terminated"), stale_after_s=60, now=now)
    assert not scorer_is_up(_progress(state="failed"), stale_after_s=60, now=now)
    assert not scorer_is_up(None, stale_after_s=60, now=now)


def test_progress_file_round_trip_is_atomic(tmp_path):
    path = tmp_path / "sub" / "progress.json"
    assert read_progress(path) is None
    write_progress(path, _progress())
    assert read_progress(path)["totals"]["predictions"] == 100
    assert [p.name for p in path.parent.iterdir()] == ["progress.json"], "no temp file left behind"


def _samples(exposition: str) -> dict[str, str]:
    return dict(line.rsplit(" ", 1) for line in exposition.splitlines() if line and not line.startswith("#"))


def test_a_pause_on_the_registry_is_exported_and_its_retries_keep_the_scorer_up():
    now = time.time()
    paused = _progress(
        last_progress_at=now - 600, registry_pause={"schema_id": 4, "since": now - 90, "attempts": 7,
                                                    "last_retry_at": now - 20},
    )
    assert scorer_is_up(paused, stale_after_s=60, now=now), "a recent retry is a sign of life"
    stale = {**paused, "registry_pause": {**paused["registry_pause"], "last_retry_at": now - 61}}
    assert not scorer_is_up(stale, stale_after_s=60, now=now), "a pause that stopped retrying is down"
    samples = _samples(_exposition(paused, True))
    assert samples["heartrisk_registry_paused"] == "1.0"
    assert 89.0 <= float(samples["heartrisk_registry_paused_seconds"]) <= 95.0
    running = _samples(_exposition(_progress(), True))
    assert running["heartrisk_registry_paused"] == "0.0" and running["heartrisk_registry_paused_seconds"] == "0.0"
    assert "schema_id" not in _exposition(paused, True), "no per-id label"


def test_the_listener_records_a_registry_pause_and_its_end_in_the_progress_file(tmp_path):
    from stream.monitor.listener import ProgressListener

    path = tmp_path / "progress.json"
    listener = ProgressListener(path, "q", "1.0.0")
    listener.registry_paused(12, 1)
    first = read_progress(path)["registry_pause"]
    assert first["schema_id"] == 12 and first["attempts"] == 1
    listener.registry_paused(12, 2)
    second = read_progress(path)["registry_pause"]
    assert second["since"] == first["since"] and second["attempts"] == 2, "one pause, many retries"
    assert second["last_retry_at"] >= first["last_retry_at"]
    listener.registry_resumed()
    assert read_progress(path)["registry_pause"] is None
    ProgressListener(path, "q", "1.0.0").registry_paused(3, 1)
    assert read_progress(path)["registry_pause"]["schema_id"] == 3
    ProgressListener(path, "q", "1.0.0")  # the scorer restarts
    assert read_progress(path)["registry_pause"] is None, "a restarted scorer does not inherit a pause"
