"""The scorer on a real Spark standalone cluster (master + 2 workers, each its own process): kill -9 a worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from stream.app.produce import generate, publish
from stream.config import load_settings
from stream.local.cluster import LocalCluster
from tests.helpers import consume, end_offsets_total, free_port, wait_for

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))


@pytest.fixture
def cluster(tmp_path):
    c = LocalCluster(tmp_path / "cluster", free_port(), free_port())
    try:
        yield c
    finally:
        c.down()
        assert c.pid("master") is None and c.running_workers() == {}, "down leaves no daemon behind"


def _executor_dirs(c: LocalCluster, worker: str) -> list[Path]:
    return list((c.state_dir / worker).glob("app-*/*"))


def test_a_worker_killed_mid_stream_loses_no_event(cluster, kafka_bootstrap, make_topics, tmp_path, capsys):
    assert cluster.up(workers=2, cores=1, memory="1g") is True
    assert cluster.alive_workers() == 2 and list(cluster.running_workers()) == ["worker-1", "worker-2"]
    assert cluster.up(workers=2) is False, "up is idempotent"

    inp, out, dlq = make_topics("events", "predictions", "dlq")
    settings = load_settings({"bootstrap_servers": kafka_bootstrap, "input_topic": inp, "output_topic": out,
                              "dlq_topic": dlq})
    total = 30_000
    events = list(generate(total, "synthetic", settings, bad_fraction=0.01, seed=13))
    valid = {json.loads(e.value)["event_id"] for e in events if e.expected_code is None}
    n_bad = sum(e.expected_code is not None for e in events)
    assert n_bad > 0
    env = {**os.environ, "HEARTRISK_BOOTSTRAP_SERVERS": kafka_bootstrap, "HEARTRISK_INPUT_TOPIC": inp,
           "HEARTRISK_OUTPUT_TOPIC": out, "HEARTRISK_DLQ_TOPIC": dlq,
           "HEARTRISK_CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "HEARTRISK_SPARK_MASTER": cluster.url,
           "HEARTRISK_TRIGGER": "processing-time=500ms", "HEARTRISK_MAX_OFFSETS_PER_TRIGGER": "2000",
           # the executors run no Python: a Python worker started on one would fail on this path
           "PYSPARK_PYTHON": "/nonexistent/python-on-executors"}
    publish(iter(events[:2000]), 2000, settings, progress=False)
    log = tmp_path / "scorer.log"
    scorer = subprocess.Popen([HEARTRISK, "score"], env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    killed = threading.Event()

    def produce_around_the_kill() -> None:
        # the kill always lands mid-stream: the rest waits for it
        publish(iter(events[2000:15_000]), 13_000, settings, rate=3000, progress=False)
        killed.wait(300)
        publish(iter(events[15_000:]), total - 15_000, settings, rate=3000, progress=False)

    producer = threading.Thread(target=produce_around_the_kill)
    try:
        consume(kafka_bootstrap, out, lambda r: len(r) >= 1000, 240)
        assert all(_executor_dirs(cluster, w) for w in ("worker-1", "worker-2")), "an executor ran on each worker"
        producer.start()
        consume(kafka_bootstrap, out, lambda r: len(r) >= 6000, 240)
        assert producer.is_alive(), "the kill lands while events still flow"
        at_kill = end_offsets_total(kafka_bootstrap, out)
        killed_at = time.monotonic()
        killed_pid = cluster.kill_worker("worker-1")
        wait_for(lambda: cluster.alive_workers() == 1, 120, what="the master to see worker-1 gone")
        wait_for(lambda: end_offsets_total(kafka_bootstrap, out) >= at_kill + 1000, 240,
                 what="1,000 new predictions after the kill")
        recovered_s = time.monotonic() - killed_at
        killed.set()
        producer.join(300)
        preds = consume(kafka_bootstrap, out, lambda r: {json.loads(m.value())["event_id"] for m in r} >= valid, 300)
        dead = consume(kafka_bootstrap, dlq, lambda r: len({(m.partition(), m.offset()) for m in r}) >= n_bad, 120)
        assert scorer.poll() is None, "the query never failed: " + log.read_text()[-2000:]
    finally:
        killed.set()
        scorer.send_signal(signal.SIGTERM)
        try:
            scorer.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(scorer.pid, signal.SIGKILL)
    ids = Counter(json.loads(m.value())["event_id"] for m in preds)
    dead_ids = Counter(json.loads(m.value())["event_id"] for m in dead)
    assert set(ids) == valid and len(dead_ids) == n_bad, "input = predictions + dead letters, each id once at least"
    duplicates = sum(ids.values()) - len(ids) + sum(dead_ids.values()) - len(dead_ids)
    with capsys.disabled():  # shown in CI's output
        print(f"\nworker kill -9 (pid {killed_pid}) mid-stream on a 2-worker cluster: {total} events, "
              f"{len(ids)} predicted + {len(dead_ids)} dead-lettered, 0 lost, {duplicates} duplicates; "
              f"1,000 new predictions {recovered_s:.1f}s after the kill")


def test_a_taken_port_is_one_clear_error_and_nothing_starts(tmp_path):
    import socket

    from stream.errors import SetupError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        c = LocalCluster(tmp_path / "cluster", s.getsockname()[1], free_port())
        with pytest.raises(SetupError, match=f"port {s.getsockname()[1]} is already in use .*HEARTRISK_CLUSTER_PORT"):
            c.up(workers=1)
    assert c.pid("master") is None and not list((tmp_path / "cluster").glob("*.pid"))
