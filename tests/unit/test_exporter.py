"""The exporter's snapshot: names, labels, up/down logic, and the progress file (pure units)."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stream.monitor.exporter import SnapshotCollector, build_metrics, scorer_is_up
from stream.monitor.listener import empty_totals, read_progress, write_progress

ALLOWED_LABELS = {"error_code", "topic", "phase", "quantile", "model_version", "le", "feature", "risk_level", "alias",
                  "champion_version", "challenger_version", "outcome"}


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


def _drift_row(ref, patients, levels):
    """An observation row as the query computes it (the drift aggregate's struct of slot counts), from plain values."""
    from stream.monitor.drift import DRIFT, LEVEL_SLOT, LEVELS, PROBABILITY_SUM
    from tests.unit.test_drift import numpy_bins

    d = {"n": len(patients), **{f"{LEVEL_SLOT}_{k}": levels.count(lv) for k, lv in enumerate(LEVELS)}}
    for name, spec in ref["features"].items():
        values = [p[name] for p in patients]
        bins = numpy_bins(values, spec)
        d.update({f"{name}_{k}": n for k, n in enumerate(bins)})
        d[f"{name}_{len(bins) + 1}"] = sum(v is None for v in values)
    return {"rows": len(patients), "predictions": len(patients), PROBABILITY_SUM: 0.4 * len(patients),
            "latency_ms_sum": 0, "latency_ms_p50_p99": None, DRIFT: d}


def test_the_listener_keeps_a_drift_window_that_survives_restarts_and_the_exporter_reports_psi(tmp_path):
    from types import SimpleNamespace

    from stream.config import PROJECT_ROOT
    from stream.contract.codes import ERROR_CODES
    from stream.model.artifact import load_metadata
    from stream.model.distribution import SyntheticPatients
    from stream.monitor.drift import psi, reference
    from stream.monitor.listener import ProgressListener
    from stream.pipeline.columns import LATENCY_BUCKETS, OBSERVATION, bucket_name

    meta = load_metadata(PROJECT_ROOT / "models" / "heart_lr")
    ref = reference(meta)
    path = tmp_path / "progress.json"

    def batch(listener, batch_id, patients, levels):
        row = _drift_row(ref, patients, levels)
        row.update({bucket_name(le): 0 for le in LATENCY_BUCKETS})
        row.update({f"dlq_{c}": 0 for c in ERROR_CODES})
        obs = SimpleNamespace(asDict=lambda: row)
        p = SimpleNamespace(id="qid", batchId=batch_id, numInputRows=len(patients), observedMetrics={OBSERVATION: obs},
                            sources=[], durationMs={}, inputRowsPerSecond=1.0, processedRowsPerSecond=1.0)
        listener.onQueryProgress(SimpleNamespace(progress=p))

    def started(listener):
        listener.onQueryStarted(SimpleNamespace(name="q", id="qid", runId="r"))

    normal = [SyntheticPatients(meta["training_distribution"], seed=1).draw() for _ in range(1)]
    synth = SyntheticPatients(meta["training_distribution"], seed=2, shift={"Blood_Pressure": 25})
    drifted = [synth.draw() for _ in range(3000)]
    first = ProgressListener(path, "q", "1.0.0", drift_reference=ref, drift_window_s=600)
    started(first)
    batch(first, 0, normal, ["Low"])
    second = ProgressListener(path, "q", "1.0.0", drift_reference=ref, drift_window_s=600)  # a restart
    started(second)
    batch(second, 1, drifted, ["High"] * 3000)
    progress = read_progress(path)
    assert progress["totals"]["levels"] == {"Low": 1, "Medium": 0, "High": 3000}
    samples = _samples(_exposition(progress, True))
    assert samples['heartrisk_predictions_by_level_total{risk_level="High"}'] == "3000.0"
    assert samples["heartrisk_drift_window_predictions"] == "3001.0", "the window went on across the restart"
    bp = [p["Blood_Pressure"] for p in normal + drifted]
    spec = ref["features"]["Blood_Pressure"]
    import numpy as np

    inside, _ = np.histogram(bp, bins=spec["edges"])
    bins = [sum(v < spec["edges"][0] for v in bp), *inside, sum(v > spec["edges"][-1] for v in bp)]
    assert float(samples['heartrisk_feature_psi{feature="Blood_Pressure"}']) == pytest.approx(
        psi(spec["expected"], bins), rel=1e-9)
    assert float(samples['heartrisk_feature_psi{feature="Blood_Pressure"}']) > 0.25
    assert float(samples['heartrisk_feature_psi{feature="Sex"}']) < 0.1
    assert samples['heartrisk_window_level_share{risk_level="High"}'] == str(3000 / 3001)
    assert float(samples['heartrisk_reference_level_share{risk_level="High"}']) == pytest.approx(130 / 303)
    assert float(samples["heartrisk_window_mean_probability"]) == pytest.approx(0.4)
    # another model (another reference): the window starts again
    other = {**ref, "levels": [1, 1, 1]}
    ProgressListener(path, "q", "2.0.0", drift_reference=other, drift_window_s=600)
    assert read_progress(path)["drift"]["buckets"] == []


def test_model_metrics_show_both_aliases_swaps_failures_and_the_shadow_agreement():
    from stream.monitor.exporter import build_metrics

    totals = {**empty_totals(), "model_swaps": 2, "model_swap_failures": 1}
    progress = _progress(
        totals=totals,
        models={"champion": {"version": "2.0.0", "number": 2}, "challenger": {"version": "3.0.0", "number": 3}},
        shadow={"pair": ["2.0.0", "3.0.0"], "rows": 200, "agree": 150, "abs_diff_sum": 9.0},
    )
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in build_metrics(progress, True) for s in fam.samples}
    assert samples[("heartrisk_model_info", (("alias", "champion"), ("model_version", "2.0.0")))] == 1
    assert samples[("heartrisk_model_info", (("alias", "challenger"), ("model_version", "3.0.0")))] == 1
    assert samples[("heartrisk_model_swaps_total", ())] == 2
    assert samples[("heartrisk_model_swap_failures_total", ())] == 1
    pair = (("challenger_version", "3.0.0"), ("champion_version", "2.0.0"))
    assert samples[("heartrisk_shadow_agreement_ratio", pair)] == 0.75
    assert samples[("heartrisk_shadow_probability_abs_diff_mean", pair)] == 0.045
    assert samples[("heartrisk_shadow_events", pair)] == 200
