"""Model lifecycle on real Kafka, real Spark and MLflow's own stores: hot swap, rollback, refusal, shadow, server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest

from stream.app.produce import generate, publish
from stream.config import PROJECT_ROOT, load_settings
from stream.contract.schema import load_json
from stream.model.registry import ModelRegistry
from stream.monitor.exporter import build_metrics
from stream.monitor.progress import read_progress
from tests.helpers import consume, end_offsets_total, free_port, http_get, terminate, wait_for

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))
COMMITTED = PROJECT_ROOT / "models" / "heart_lr" / "1.0.0"


@pytest.fixture(scope="module")
def store(tmp_path_factory, spark):
    """A local MLflow store (SQLite): 1 (the committed model), 2 (another fit) and 3 (1 copied, then tampered)."""
    from stream.model.train import train

    tmp = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    registry = ModelRegistry(uri, tmp / "artifacts")
    # version 2: a genuinely different model (strong regularisation), trained quickly (2 folds, one configuration)
    train(spark, PROJECT_ROOT / "data" / "heart_disease.csv", tmp / "models", "2.0.0", promote=False, folds=2,
          progress=False, reg_params=(1.0,), elastic_net=(0.0,))
    shutil.copytree(COMMITTED, tmp / "models" / "3.0.0")
    meta = json.loads((tmp / "models" / "3.0.0" / "model.json").read_text())
    (tmp / "models" / "3.0.0" / "model.json").write_text(json.dumps({**meta, "version": "3.0.0"}))
    assert registry.register(COMMITTED, spark) == (1, True)
    assert registry.register(tmp / "models" / "2.0.0") == (2, True)
    assert registry.register(tmp / "models" / "3.0.0") == (3, True)
    (stored,) = (tmp / "artifacts").rglob("heartrisk/3.0.0/pipeline/stages/5_*/data/part-*.parquet")
    stored.write_bytes(stored.read_bytes()[:-16])  # truncated after registration
    return {"uri": uri, "registry": registry, "models": tmp / "models"}


def read_all(bootstrap: str, topic: str) -> list:
    """Every record the topic holds now."""
    n = end_offsets_total(bootstrap, topic)
    return consume(bootstrap, topic, lambda r: len(r) >= n, 60)


def _ids(records) -> Counter:
    return Counter(json.loads(m.value())["event_id"] for m in records)


def _scored_at(record) -> float:
    return datetime.fromisoformat(json.loads(record.value())["scored_at"].replace("Z", "+00:00")).timestamp()


def test_promote_and_rollback_mid_stream_swap_at_a_batch_boundary_exactly_once(
    store, kafka_bootstrap, make_topics, tmp_path, capsys
):
    """30,000 events; promote 2, roll back to 1, promote a tampered 3: one scorer process throughout."""
    registry = store["registry"]
    registry.promote(1)
    registry.unset("challenger")
    inp, out, dlq, shadow = make_topics("events", "predictions", "dlq", "shadow")
    env = {**os.environ, "HEARTRISK_BOOTSTRAP_SERVERS": kafka_bootstrap, "HEARTRISK_INPUT_TOPIC": inp,
           "HEARTRISK_OUTPUT_TOPIC": out, "HEARTRISK_DLQ_TOPIC": dlq, "HEARTRISK_SHADOW_TOPIC": shadow,
           "HEARTRISK_CHECKPOINT_DIR": str(tmp_path / "ck"), "HEARTRISK_SPARK_MASTER": "local[2]",
           "HEARTRISK_MLFLOW_TRACKING_URI": store["uri"], "HEARTRISK_MODEL_URI": "models:/heart-risk@champion",
           "HEARTRISK_MODEL_CHECK_INTERVAL": "1", "HEARTRISK_MAX_OFFSETS_PER_TRIGGER": "2000",
           # batches here take 0.3-0.6 s of fixed cost: a 1 s trigger leaves the gap between batches a swap waits for
           "HEARTRISK_TRIGGER": "processing-time=1s"}
    settings = load_settings({"bootstrap_servers": kafka_bootstrap, "input_topic": inp, "output_topic": out,
                              "dlq_topic": dlq, "checkpoint_dir": str(tmp_path / "ck")})
    total = 30_000
    events = list(generate(total, "synthetic", settings, bad_fraction=0.01, seed=21))
    log = tmp_path / "scorer.log"
    scorer = subprocess.Popen([HEARTRISK, "score"], env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                              start_new_session=True)

    def cli(*args: str) -> str:
        r = subprocess.run([HEARTRISK, "model", *args], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout

    def swapped(n: int) -> int:
        """Wait (reading only the log: the stream must not starve) for swap ``n``; then 3,000 more predictions."""
        wait_for(lambda: log.read_text().count('event="model swapped"') >= n, 120, interval_s=0.5,
                 what=f"model swap {n}")
        at = end_offsets_total(kafka_bootstrap, out)
        wait_for(lambda: end_offsets_total(kafka_bootstrap, out) >= at + 3000, 120, interval_s=0.5,
                 what="3,000 predictions after the swap")
        return at

    def first_by(version: str, after: float) -> float:
        """When the first prediction by ``version`` scored after ``after`` was scored."""
        return min(_scored_at(m) for m in read_all(kafka_bootstrap, out)
                   if json.loads(m.value())["model_version"] == version and _scored_at(m) > after)

    try:
        wait_for(lambda: 'event="scorer started"' in log.read_text(), 180, what="the scorer to start")
        producer = threading.Thread(target=publish, args=(iter(events), total, settings),
                                    kwargs={"rate": 500, "progress": False})
        producer.start()
        wait_for(lambda: end_offsets_total(kafka_bootstrap, out) >= 4000, 120, interval_s=0.5,
                 what="4,000 predictions by 1")
        assert "champion: 1 -> 2" in cli("promote", "2")
        promoted = time.time()  # the alias has moved (the command returns right after)
        swapped(1)
        gap_up = first_by("2.0.0", promoted) - promoted
        assert "champion: 2 -> 1 (rolled back)" in cli("rollback")
        rolled = time.time()
        swapped(2)
        gap_back = first_by("1.0.0", rolled) - rolled
        # a tampered version is refused; version 1 keeps scoring
        cli("promote", "3")
        wait_for(lambda: (read_progress(settings.progress_path) or {}).get("totals", {}).get("model_swap_failures"),
                 60, interval_s=0.5, what="the swap failure to be counted")
        refused_at = time.time()
        producer.join(120)
        valid = {json.loads(e.value)["event_id"] for e in events if e.expected_code is None}
        n_bad = sum(e.expected_code is not None for e in events)
        wait_for(lambda: end_offsets_total(kafka_bootstrap, out) + end_offsets_total(kafka_bootstrap, dlq) >= total,
                 180, what="every event scored or dead-lettered")
        predictions, dead = read_all(kafka_bootstrap, out), read_all(kafka_bootstrap, dlq)
        assert scorer.poll() is None, "the scorer process never restarted"
        progress = read_progress(settings.progress_path)
    finally:
        scorer.send_signal(signal.SIGTERM)
        code = scorer.wait(120)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert progress is not None and progress["pid"] == scorer.pid

    ids, dead_ids = _ids(predictions), _ids(dead)
    assert set(ids) == valid and len(dead_ids) == n_bad, "input = predictions + dead letters"
    assert sum(ids.values()) + sum(dead_ids.values()) == total, "every event exactly once: 0 lost, 0 duplicates"
    # by input offset, each partition was scored by 1, then 2, then 1: each switch at one place, none interleaved
    inputs = consume(kafka_bootstrap, inp, lambda r: len(r) >= total, 60)
    version_of = {json.loads(m.value())["event_id"]: json.loads(m.value())["model_version"] for m in predictions}
    by_partition: dict[int, list[tuple[int, str]]] = {}
    for m in inputs:
        try:
            event_id = json.loads(m.value())["event_id"]
        except (ValueError, KeyError, TypeError):
            continue
        if event_id in version_of:
            by_partition.setdefault(m.partition(), []).append((m.offset(), version_of[event_id]))
    for partition, rows in by_partition.items():
        runs = [v for i, (_, v) in enumerate(sorted(rows)) if i == 0 or v != sorted(rows)[i - 1][1]]
        assert runs == ["1.0.0", "2.0.0", "1.0.0"], f"partition {partition}: {runs}"
    assert not [m for m in predictions if _scored_at(m) > refused_at and json.loads(m.value())["model_version"]
                != "1.0.0"], "after the refusal version 1 kept scoring"
    assert text.count('event="model swapped"') == 2 and 'event="stop mid-batch"' not in text
    assert 'event="model swap refused" role="champion" number=3' in text and "does not match the manifest" in text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in build_metrics(progress, True)
               for s in f.samples}
    assert samples[("heartrisk_model_swap_failures_total", ())] == 1, "the refused version is counted once"
    assert samples[("heartrisk_model_swaps_total", ())] == 2
    assert samples[("heartrisk_model_info", (("alias", "champion"), ("model_version", "1.0.0")))] == 1
    r = subprocess.run([HEARTRISK, "status", "--json"], env=env, capture_output=True, text=True, timeout=120)
    status = json.loads(r.stdout.splitlines()[0])
    assert status["model_swaps"] == {"model_swaps": 2, "model_swap_failures": 1}
    assert status["models"]["champion"] == {"version": "1.0.0", "number": 1}
    with capsys.disabled():
        print(f"\nhot swap: {total} events, {sum(ids.values())} predicted + {sum(dead_ids.values())} dead-lettered, "
              f"0 lost, 0 duplicates; alias change to first prediction by the new version: promote {gap_up:.1f}s, "
              f"rollback {gap_back:.1f}s (check interval 1s)")


def test_shadow_scoring_writes_one_record_per_valid_event_and_the_agreement_matches(
    store, spark, kafka_bootstrap, make_topics, tmp_path
):
    from stream.app.scorer import start_scorer
    from stream.app.swap import ModelSource

    registry = store["registry"]
    registry.promote(1)
    registry.promote(2, "challenger")
    inp, out, dlq, shadow = make_topics("events", "predictions", "dlq", "shadow")
    settings = load_settings({
        "bootstrap_servers": kafka_bootstrap, "input_topic": inp, "output_topic": out, "dlq_topic": dlq,
        "shadow_topic": shadow, "checkpoint_dir": str(tmp_path / "ck"), "query_name": "shadow-test",
        "mlflow_tracking_uri": store["uri"], "model_uri": "models:/heart-risk@champion",
    })
    models = ModelSource(settings).load()
    assert (models.champion.version, models.challenger and models.challenger.version) == ("1.0.0", "2.0.0")
    total = 3000
    events = list(generate(total, "synthetic", settings, bad_fraction=0.02, seed=5))
    publish(iter(events), total, settings, progress=False)
    query = start_scorer(spark, settings, models)
    try:
        wait_for(lambda: end_offsets_total(kafka_bootstrap, out) + end_offsets_total(kafka_bootstrap, dlq) >= total,
                 180, what="every event scored or dead-lettered")
        predictions, dead = read_all(kafka_bootstrap, out), read_all(kafka_bootstrap, dlq)
        wait_for(lambda: end_offsets_total(kafka_bootstrap, shadow) >= len(predictions), 60, what="shadow records")
        shadows = read_all(kafka_bootstrap, shadow)
        wait_for(lambda: ((read_progress(settings.progress_path) or {}).get("shadow") or {}).get("rows")
                 == len(predictions), 60, what="the shadow figures of every batch")
    finally:
        query.stop()
    registry.unset("challenger")
    champion = {json.loads(m.value())["event_id"]: json.loads(m.value()) for m in predictions}
    challenger = {json.loads(m.value())["event_id"]: json.loads(m.value()) for m in shadows}
    assert len(champion) == len(predictions) and len(champion) + len(dead) == total
    assert len(shadows) == len(challenger) == len(champion)
    assert set(challenger) == set(champion), "one shadow record per valid event, none for a dead letter"
    schema = load_json("shadow_prediction.v1.schema.json")
    for record in challenger.values():
        jsonschema.validate(record, schema)
    assert {r["model_version"] for r in challenger.values()} == {"2.0.0"}
    assert all(challenger[i]["champion_probability"] == champion[i]["probability"] for i in champion)
    assert {r["model_version"] for r in champion.values()} == {"1.0.0"}, "alerting consumers never see 2"
    agree = sum(challenger[i]["risk_level"] == champion[i]["risk_level"] for i in champion) / len(champion)
    diff = sum(abs(challenger[i]["probability"] - champion[i]["probability"]) for i in champion) / len(champion)
    assert 0 < diff and agree < 1, "the two models differ, so the figures are not trivially 1 and 0"
    progress = read_progress(settings.progress_path)
    pair = (("challenger_version", "2.0.0"), ("champion_version", "1.0.0"))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in build_metrics(progress, True)
               for s in f.samples}
    assert samples[("heartrisk_shadow_agreement_ratio", pair)] == pytest.approx(agree, abs=1e-12)
    assert samples[("heartrisk_shadow_probability_abs_diff_mean", pair)] == pytest.approx(diff, abs=1e-6)
    assert samples[("heartrisk_model_info", (("alias", "challenger"), ("model_version", "2.0.0")))] == 1


def test_promote_and_rollback_through_a_real_mlflow_server(store, tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=open(tmp_path / "mlflow.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HEARTRISK_MLFLOW_TRACKING_URI": uri, "HEARTRISK_SPARK_MASTER": "local[1]"}

    def cli(*args: str) -> str:
        r = subprocess.run([HEARTRISK, "model", *args], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout

    try:
        wait_for(lambda: http_get(f"{uri}/health")[0] == 200, 120, interval_s=0.5, what="mlflow server")
        assert "as heart-risk version 1" in cli("import", str(COMMITTED), "--champion-if-unset")
        assert "as heart-risk version 2" in cli("import", str(store["models"] / "2.0.0"))
        assert "champion: 1 -> 2" in cli("promote", "2")
        listing = cli("list")
        assert [line.split()[:3] for line in listing.splitlines()[1:3]] == [["1", "1.0.0", "-"],
                                                                          ["2", "2.0.0", "champion"]]
        assert "champion: 2 -> 1 (rolled back)" in cli("rollback")
        shown = json.loads(cli("show", "1"))
        assert shown["aliases"] == ["champion"] and shown["tracking_uri"] == uri
        registry = ModelRegistry(uri, None)
        assert registry.holder("champion") == 1
        model_dir, meta = registry.fetch(2, tmp_path / "dl")  # the artifacts come back through the server
        assert meta["version"] == "2.0.0" and model_dir.name == "2.0.0"
        run_id = registry.versions()[0].run_id
        assert "spark-model/MLmodel" in {a.path for a in registry.client.list_artifacts(run_id, "spark-model")}
    finally:
        terminate([server])


def test_real_time_mode_swaps_by_restarting_the_query_on_its_checkpoint(
    store, spark, kafka_bootstrap, make_topics, tmp_path, capsys
):
    """Real-time mode has no gap between batches: the swap restarts the query at once, at-least-once."""
    from stream.app.graceful import stop_gracefully
    from stream.app.lifecycle import follow
    from stream.app.scorer import start_scorer
    from stream.app.swap import ModelSource

    registry = store["registry"]
    registry.promote(1)
    registry.unset("challenger")
    # one input partition: the session's local[2] then keeps a task slot free for loading the new version
    # (with every slot held by real-time tasks, the load waited 19.5 s for one)
    inp, out, dlq, shadow = make_topics("rt-events", "rt-predictions", "rt-dlq", "rt-shadow", partitions=1)
    settings = load_settings({
        "bootstrap_servers": kafka_bootstrap, "input_topic": inp, "output_topic": out, "dlq_topic": dlq,
        "shadow_topic": shadow, "checkpoint_dir": str(tmp_path / "ck"), "query_name": "rt-swap",
        "trigger": "real-time=5s", "mlflow_tracking_uri": store["uri"], "model_uri": "models:/heart-risk@champion",
    })
    events = list(generate(2000, "synthetic", settings, seed=41))
    before, after = events[:1000], events[1000:]
    source = ModelSource(settings)
    models = source.load()
    listeners: list = []
    query = start_scorer(spark, settings, models, on_listener=listeners.append)
    try:
        publish(iter(before), len(before), settings, progress=False)
        wait_for(lambda: end_offsets_total(kafka_bootstrap, out) >= 1000, 120, what="1,000 predictions by 1")
        registry.promote(2)
        moved = time.time()
        follow(source, models, query, listeners[-1], settings.trigger)  # one step of the scorer's own loop
        publish(iter(after), len(after), settings, progress=False)
        expected = {json.loads(e.value)["event_id"] for e in events}
        records = consume(kafka_bootstrap, out, lambda r: set(_ids(r)) >= expected, 120)
        assert query.isActive and query.exception() is None
    finally:
        stop_gracefully(query, real_time=True)
    ids = _ids(records)
    assert set(ids) == expected, "nothing lost"
    late = {json.loads(e.value)["event_id"] for e in after}
    by_version = {json.loads(m.value())["event_id"]: json.loads(m.value())["model_version"] for m in records
                  if json.loads(m.value())["event_id"] in late}
    assert set(by_version.values()) == {"2.0.0"}, "every event published after the swap is scored by 2"
    duplicates = sum(ids.values()) - len(ids)
    assert duplicates <= len(before), "at most the records since the last real-time checkpoint are written again"
    gap = min(_scored_at(m) for m in records if json.loads(m.value())["model_version"] == "2.0.0") - moved
    with capsys.disabled():
        print(f"\nreal-time swap: alias change to first prediction by 2 {gap:.1f}s (swap called at once); "
              f"{duplicates} of the 1,000 events before it written again (the records since the last checkpoint)")
