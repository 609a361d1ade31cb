"""A 3-broker local Kafka (KRaft, RF 3, min.insync.replicas 2) under the scorer: kill -9 a leader, restart every broker.

One cluster serves the module. Each fault test runs ``heartrisk score`` as a
process against it and counts every event id: input = predictions + dead
letters, 0 lost, duplicates printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from stream.app.produce import generate, publish
from stream.config import Settings, load_settings
from stream.local.kafka_cluster import LocalKafka
from stream.local.topics import ensure_topics
from tests.helpers import consume, free_port_run, topic_name, wait_for

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalKafka, dict[str, str]]]:
    base = free_port_run(6)  # node i: client port base + 2(i-1), controller port base + 1 + 2(i-1)
    env = {**os.environ, "HEARTRISK_KAFKA_PORT": str(base), "HEARTRISK_KAFKA_CONTROLLER_PORT": str(base + 1),
           "HEARTRISK_KAFKA_STATE_DIR": str(tmp_path_factory.mktemp("kafka3")), "HEARTRISK_KAFKA_HEAP": "512m"}
    up = subprocess.run([HEARTRISK, "kafka", "up", "--brokers", "3"], env=env, capture_output=True, text=True,
                        timeout=240, check=False)
    kafka = LocalKafka.from_settings(load_settings({"kafka_port": base, "kafka_controller_port": base + 1,
                                                    "kafka_state_dir": env["HEARTRISK_KAFKA_STATE_DIR"],
                                                    "kafka_heap": "512m"}))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "3-broker cluster started" in up.stdout
        yield kafka, env
    finally:
        down = subprocess.run([HEARTRISK, "kafka", "down"], env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        assert down.returncode == 0 and "brokers stopped: 1, 2, 3" in down.stdout, down.stdout + down.stderr
        assert kafka.pids() == {1: None, 2: None, 3: None}, "down leaves no broker behind"


def _leaders(bootstrap: str, topic: str) -> dict[int, tuple[int, tuple[int, ...], tuple[int, ...]]]:
    """partition -> (leader, replicas, in-sync replicas)."""
    parts = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10).topics[topic].partitions
    return {p: (m.leader, tuple(sorted(m.replicas)), tuple(sorted(m.isrs))) for p, m in parts.items()}


def _fully_in_sync(bootstrap: str, topics: list[str]) -> bool:
    return all(isr == (1, 2, 3) and leader > 0 for t in topics for leader, _, isr in _leaders(bootstrap, t).values())


def test_up_makes_replicated_topics_and_status_shows_each_broker_and_leaders(cluster):
    kafka, env = cluster
    pids = kafka.pids()
    assert all(pids.values()) and len(set(pids.values())) == 3, pids
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    for topic in ("patient-events", "risk-predictions", "patient-events-dlq"):
        parts = _leaders(kafka.bootstrap, topic)
        assert len(parts) == 3 and all(replicas == (1, 2, 3) for _, replicas, _ in parts.values()), parts
        res = ConfigResource("topic", topic)
        conf = admin.describe_configs([res])[res].result(10)
        assert conf["min.insync.replicas"].value == "2"
    status = subprocess.run([HEARTRISK, "kafka", "status"], env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert status.returncode == 0, status.stderr
    for node_id, pid in pids.items():
        assert f"broker {node_id}: running, pid {pid}, localhost:{kafka.ports[node_id - 1]}" in status.stdout
    leaders = _leaders(kafka.bootstrap, "patient-events")
    shown = " ".join(f"p{p}={leaders[p][0]}" for p in sorted(leaders))
    assert f"leaders {shown}; in sync p0=1,2,3 p1=1,2,3 p2=1,2,3" in status.stdout
    again = subprocess.run([HEARTRISK, "kafka", "up"], env=env, capture_output=True, text=True, timeout=120,
                           check=False)
    assert again.returncode == 0 and "3-broker cluster already running" in again.stdout, again.stdout
    assert kafka.pids() == pids, "a second `up` starts nothing"
    one = subprocess.run([HEARTRISK, "kafka", "up", "--brokers", "1"], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert one.returncode == 4, one.stderr
    assert "a 3-broker local Kafka already runs from" in one.stderr and "heartrisk kafka down" in one.stderr


class Scorer:
    """``heartrisk score`` as a process on the cluster, with fresh topics and checkpoint."""

    def __init__(self, kafka: LocalKafka, tmp: Path, total: int, seed: int) -> None:
        self.kafka, self.tmp = kafka, tmp
        self.inp, self.out, self.dlq = (topic_name(p) for p in ("events", "predictions", "dlq"))
        ensure_topics(kafka.bootstrap, [self.inp, self.out, self.dlq], 3)
        self.settings: Settings = load_settings({"bootstrap_servers": kafka.bootstrap, "input_topic": self.inp,
                                                 "output_topic": self.out, "dlq_topic": self.dlq})
        self.events = list(generate(total, "synthetic", self.settings, bad_fraction=0.01, seed=seed))
        self.valid = {json.loads(e.value)["event_id"] for e in self.events if e.expected_code is None}
        self.n_bad = len(self.events) - len(self.valid)
        self.env = {**os.environ, **{f"HEARTRISK_{k}": v for k, v in {
            "BOOTSTRAP_SERVERS": kafka.bootstrap, "INPUT_TOPIC": self.inp, "OUTPUT_TOPIC": self.out,
            "DLQ_TOPIC": self.dlq, "CHECKPOINT_DIR": str(tmp / "checkpoints"), "SPARK_MASTER": "local[2]",
            "TRIGGER": "processing-time=500ms", "MAX_OFFSETS_PER_TRIGGER": "3000"}.items()}}
        self.log = tmp / "scorer.log"
        self.proc = subprocess.Popen([HEARTRISK, "score"], env=self.env, stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def predictions(self, until: Callable[[list], bool], timeout_s: float) -> list:
        return consume(self.kafka.bootstrap, self.out, until, timeout_s)

    def run_with(self, fault: Callable[[], str], capsys) -> None:
        """Publish around ``fault`` (called while events flow), then count every id."""
        first, total = 3000, len(self.events)
        publish(iter(self.events[:first]), first, self.settings, progress=False)
        faulted = threading.Event()

        def produce_around_the_fault() -> None:
            # half the rest flows into the fault, the other half waits for it to end
            mid = first + (total - first) // 2
            publish(iter(self.events[first:mid]), mid - first, self.settings, rate=2000, progress=False)
            faulted.wait(600)
            publish(iter(self.events[mid:]), total - mid, self.settings, rate=2000, progress=False)

        producer = threading.Thread(target=produce_around_the_fault)
        try:
            self.predictions(lambda r: len(r) >= 1000, 240)
            producer.start()
            self.predictions(lambda r: len(r) >= first + 2000, 240)
            assert producer.is_alive(), "the fault lands while events still flow"
            figures = fault()
            faulted.set()
            producer.join(600)
            preds = self.predictions(lambda r: {json.loads(m.value())["event_id"] for m in r} >= self.valid, 300)
            dead = consume(self.kafka.bootstrap, self.dlq,
                           lambda r: len({(m.partition(), m.offset()) for m in r}) >= self.n_bad, 120)
            assert self.proc.poll() is None, "the query never failed: " + self.log.read_text()[-3000:]
        finally:
            faulted.set()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        ids = Counter(json.loads(m.value())["event_id"] for m in preds)
        dead_ids = Counter(json.loads(m.value())["event_id"] for m in dead)
        assert set(ids) == self.valid and len(dead_ids) == self.n_bad, "input = predictions + dead letters"
        duplicates = sum(ids.values()) - len(ids) + sum(dead_ids.values()) - len(dead_ids)
        with capsys.disabled():  # shown in CI's output
            print(f"\n{figures}: {total} events, {len(ids)} predicted + {len(dead_ids)} dead-lettered, 0 lost, "
                  f"{duplicates} duplicates")


def test_the_leader_of_a_partition_killed_mid_stream_loses_no_event(cluster, tmp_path, capsys):
    kafka, _ = cluster
    scorer = Scorer(kafka, tmp_path, 24_000, seed=21)

    def kill_the_leader_then_restart_it() -> str:
        victim = _leaders(kafka.bootstrap, scorer.inp)[0][0]
        killed_at = time.monotonic()
        pid = kafka.kill(victim)

        def new_leader() -> int:
            leader = _leaders(kafka.bootstrap, scorer.inp)[0][0]
            return leader if leader not in (victim, -1) else 0

        leader = wait_for(new_leader, 120, what=f"a new leader of {scorer.inp}[0] after broker {victim} died")
        elected_s = time.monotonic() - killed_at
        assert kafka.start(victim) is True
        topics = [scorer.inp, scorer.out, scorer.dlq]
        wait_for(lambda: _fully_in_sync(kafka.bootstrap, topics), 180, what=f"broker {victim} back in sync")
        return (f"leader broker {victim} (pid {pid}) of {scorer.inp}[0] killed with kill -9: broker {leader} "
                f"led it after {elected_s:.1f}s, all replicas back in sync {time.monotonic() - killed_at:.1f}s "
                "after the kill")

    scorer.run_with(kill_the_leader_then_restart_it, capsys)


def test_a_rolling_restart_of_every_broker_loses_no_event(cluster, tmp_path, capsys):
    kafka, _ = cluster
    scorer = Scorer(kafka, tmp_path, 24_000, seed=22)

    def restart_each_broker() -> str:
        topics = [scorer.inp, scorer.out, scorer.dlq]
        took = []
        for node in kafka.nodes:
            began = time.monotonic()
            assert node.down() is True
            assert kafka.start(node.node_id) is True
            wait_for(lambda: _fully_in_sync(kafka.bootstrap, topics), 180,
                     what=f"broker {node.node_id} back in sync after its restart")
            took.append(time.monotonic() - began)
        return "rolling restart of brokers 1, 2, 3 (" + ", ".join(f"{t:.1f}s" for t in took) + " each, to in sync)"

    scorer.run_with(restart_each_broker, capsys)
