"""One broker under the scorer while 2,000 events/s flow: stopped past --broker-wait, kill -9, stopped 30 s and 150 s.

The broker is this module's own (the session's shared broker is never stopped).
Events are published at 2,000/s from before the first fault to after the last;
every event id is counted on the output topics: 0 lost, duplicates printed.
With the default ``--broker-wait`` (300 s) the scorer rides through all three
outages; with a wait shorter than an outage it exits 4 with one line, and the
restart on the same checkpoint loses nothing.
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
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from stream.app.produce import Event, generate, publish
from stream.config import Settings, load_settings
from stream.local.kafka_cluster import LocalKafka
from stream.local.topics import ensure_topics
from tests.helpers import free_port_run, topic_name, wait_for

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))
RATE = 2000  # events/s


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    base = free_port_run(2)
    kafka = LocalKafka.from_settings(load_settings({
        "kafka_port": base, "kafka_controller_port": base + 1, "kafka_heap": "512m",
        "kafka_state_dir": str(tmp_path_factory.mktemp("kafka-outages"))}), brokers=1)
    kafka.up()
    try:
        yield kafka
    finally:
        kafka.down()


class Tally:
    """A consumer in a thread that counts every id on the output topics as it arrives."""

    def __init__(self, bootstrap: str, out: str, dlq: str) -> None:
        self.bootstrap, self.out, self.dlq = bootstrap, out, dlq
        self.predicted: Counter[str] = Counter()
        self.dead: Counter[tuple[int, int]] = Counter()  # the dead letter's input (partition, offset)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.error: BaseException | None = None  # the thread's death, raised by counts()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        # assigned, not subscribed: a group would rebalance when its coordinator (the broker) returns,
        # and without committed offsets it would read everything again
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": topic_name("tally"),
                             "enable.auto.commit": False, "log_level": 0,
                             "auto.offset.reset": "earliest"})  # a topic made again is read from its start
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in (self.out, self.dlq) for p in range(3)])
        try:
            self._count(consumer)
        except BaseException as exc:  # a silent death would look like a scorer that makes nothing
            self.error = exc
        finally:
            consumer.close()

    def _count(self, consumer: Consumer) -> None:
        while not self.stopping.is_set():
            for msg in consumer.consume(num_messages=5000, timeout=0.5):
                if msg.error() is not None:
                    continue
                record = json.loads(msg.value())
                with self.lock:
                    if msg.topic() == self.out:
                        self.predicted[record["event_id"]] += 1
                    else:
                        self.dead[(record["partition"], record["offset"])] += 1

    def counts(self) -> tuple[int, int]:
        """Distinct predictions, distinct dead letters."""
        if self.error is not None:
            raise AssertionError(f"the tally's consumer died: {self.error!r}") from self.error
        with self.lock:
            return len(self.predicted), len(self.dead)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(30)


class Flow:
    """``heartrisk score`` as a process on the broker; events published at 2,000/s until ``stop_publishing``."""

    def __init__(self, kafka: LocalKafka, tmp: Path, **extra_env: str) -> None:
        self.kafka, self.tmp = kafka, tmp
        self.inp, self.out, self.dlq = (topic_name(p) for p in ("events", "predictions", "dlq"))
        ensure_topics(kafka.bootstrap, [self.inp, self.out, self.dlq], 3)
        self.settings: Settings = load_settings({"bootstrap_servers": kafka.bootstrap, "input_topic": self.inp,
                                                 "output_topic": self.out, "dlq_topic": self.dlq,
                                                 "kafka_librdkafka_options": {"log_level": "0"}})
        self.env = {**os.environ, **{f"HEARTRISK_{k}": v for k, v in {
            "BOOTSTRAP_SERVERS": kafka.bootstrap, "INPUT_TOPIC": self.inp, "OUTPUT_TOPIC": self.out,
            "DLQ_TOPIC": self.dlq, "CHECKPOINT_DIR": str(tmp / "checkpoints"), "SPARK_MASTER": "local[2]",
            "TRIGGER": "processing-time=500ms", "MAX_OFFSETS_PER_TRIGGER": "50000", **extra_env}.items()}}
        self.log = tmp / "scorer.log"
        self.valid: set[str] = set()
        self.n_bad = 0
        self.published = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.publishing = threading.Event()
        self.publisher: threading.Thread | None = None
        self.publish_error: BaseException | None = None

    # ---- the scorer --------------------------------------------------------
    def start_scorer(self, **env: str) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([HEARTRISK, "score"], env={**self.env, **env}, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def stop_scorer(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(30)

    # ---- the events --------------------------------------------------------
    def _events(self) -> Iterator[Event]:
        for ev in generate(10**8, "synthetic", self.settings, bad_fraction=0.01, seed=31):
            if not self.publishing.is_set():
                return
            if ev.expected_code is None:
                self.valid.add(json.loads(ev.value or b"")["event_id"])
            else:
                self.n_bad += 1
            self.published += 1
            yield ev

    def start_publishing(self) -> None:
        self.publishing.set()

        def run() -> None:
            try:
                publish(self._events(), 0, self.settings, rate=RATE, progress=False)
            except BaseException as exc:  # reported by stop_publishing
                self.publish_error = exc

        self.publisher = threading.Thread(target=run)
        self.publisher.start()

    def stop_publishing(self) -> None:
        self.publishing.clear()
        assert self.publisher is not None
        self.publisher.join(300)
        assert not self.publisher.is_alive() and self.publish_error is None, f"publisher: {self.publish_error}"

    def drain(self, tally: Tally) -> None:
        """Stop publishing, wait until every published event is on the output topics; the scorer still runs."""
        self.stop_publishing()
        wait_for(lambda: tally.counts() == (len(self.valid), self.n_bad) and set(tally.predicted) >= self.valid,
                 300, what="every published event on the output topics")
        assert self.proc is not None and self.proc.poll() is None, "the scorer still runs"

    def wait_predictions(self, tally: Tally, n: int, timeout_s: float, what: str) -> None:
        """Wait for ``n`` distinct predictions; fail at once, saying why, if the scorer or the publisher died."""
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the scorer exited {self.proc.returncode} while waiting for {what}")
            if self.publish_error is not None:
                raise AssertionError(f"the publisher failed while waiting for {what}: {self.publish_error!r}")
            return tally.counts()[0] >= n
        wait_for(ready, timeout_s, what=what)

    def diagnosis(self, tally: Tally) -> str:
        """What a failed run's reader needs: the scorer's state and log tail (ids and errors, never records)."""
        code = None if self.proc is None else self.proc.poll()
        tail = self.log.read_text(errors="replace").splitlines()[-40:] if self.log.exists() else []
        return (f"scorer exit code {code}; published {self.published} (publisher error {self.publish_error!r}); "
                f"tally {len(tally.predicted)} predicted, {len(tally.dead)} dead (error {tally.error!r})\n"
                "scorer log, last lines:\n" + "\n".join(tail))

    def close(self, tally: Tally) -> None:
        self.publishing.clear()
        self.stop_scorer()
        tally.stop()


def _error_lines(log: Path) -> list[str]:
    return [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("heartrisk: error:")]


def test_broker_outages_while_events_flow_lose_nothing(kafka, tmp_path, capsys):
    flow = Flow(kafka, tmp_path)
    tally = Tally(kafka.bootstrap, flow.out, flow.dlq)
    figures: list[str] = []
    broker = kafka.nodes[0]

    def flowing_again(name: str, before: int, back: float) -> None:
        target = flow.published * 0.9
        flow.wait_predictions(tally, max(before + 1000, int(target)), 300,
                              what=f"predictions flowing again after the {name}")
        figures.append(f"{name}: predictions flowing again {time.monotonic() - back:.1f}s after the broker was back")

    def outage(name: str, seconds: float, kill: bool) -> None:
        """The broker down for ``seconds`` (from the stop or kill), then started; the scorer must ride through."""
        before = tally.counts()[0]
        began = time.monotonic()
        if kill:
            kafka.kill(1)
        else:
            assert broker.down() is True
        wait_for(lambda: time.monotonic() - began >= seconds or flow.proc.poll() is not None, seconds + 5,
                 what=f"the {name}'s end")
        assert flow.proc.poll() is None, f"the scorer rode through the {name}: {_error_lines(flow.log)}"
        assert kafka.start(1) is True
        flowing_again(name, before, time.monotonic())

    try:
        # 1. --broker-wait 15 and a 30 s outage: the scorer exits 4 with one line; the restart loses nothing
        flow.start_scorer(HEARTRISK_BROKER_WAIT="15")
        flow.start_publishing()
        flow.wait_predictions(tally, 5000, 240, what="the first 5,000 predictions")
        before, began = tally.counts()[0], time.monotonic()
        assert broker.down() is True
        code = flow.proc.wait(120)
        exited_s = time.monotonic() - began
        wait_for(lambda: time.monotonic() - began >= 30, 35, what="the outage's 30 s")
        assert kafka.start(1) is True
        back = time.monotonic()
        (line,) = _error_lines(flow.log)
        assert code == 4, flow.log.read_text()[-3000:]
        assert f"the Kafka broker ({kafka.bootstrap}) did not answer for 15s" in line, line
        assert "nothing is lost" in line and "\x1b" not in line
        figures.append(f"30 s stop with --broker-wait 15: the scorer exited 4 after {exited_s:.1f}s: {line}")
        flow.start_scorer()  # the default --broker-wait, 300 s
        flowing_again("restart after the exit", before, back)

        # 2. the default --broker-wait rides through each of these
        outage("kill -9 of the broker", 2, kill=True)
        outage("30 s stop", 30, kill=False)
        outage("150 s stop", 150, kill=False)

        flow.drain(tally)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{flow.diagnosis(tally)}") from exc
    finally:
        flow.close(tally)
    assert set(tally.predicted) == flow.valid, "every valid event predicted"
    assert len(tally.dead) == flow.n_bad, "every bad event dead-lettered"
    assert len(_error_lines(flow.log)) == 1, "one exit, the planned one"
    duplicates = sum(tally.predicted.values()) - len(tally.predicted) + sum(tally.dead.values()) - len(tally.dead)
    with capsys.disabled():
        print(f"\n{flow.published} events at {RATE}/s: {len(flow.valid)} predicted + {flow.n_bad} dead-lettered, "
              f"0 lost, {duplicates} duplicates")
        for line in figures:
            print(line)


def test_the_output_topic_deleted_mid_run_stops_the_scorer_with_one_line_and_the_restart_loses_nothing(
        kafka, tmp_path, capsys):
    from confluent_kafka.admin import AdminClient

    flow = Flow(kafka, tmp_path)
    tally = Tally(kafka.bootstrap, flow.out, flow.dlq)
    try:
        # the sink's producer waits max.block.ms (Java's default 60 s) for a topic it does not know: 10 s here,
        # through the Java-only options
        flow.start_scorer(HEARTRISK_KAFKA_JAVA_OPTIONS="max.block.ms=10000")
        flow.start_publishing()
        flow.wait_predictions(tally, 5000, 240, what="the first 5,000 predictions")
        began = time.monotonic()
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
        admin.delete_topics([flow.out])[flow.out].result(30)
        code = flow.proc.wait(120)
        exited_s = time.monotonic() - began
        (line,) = _error_lines(flow.log)
        ensure_topics(kafka.bootstrap, [flow.out], 3)
        flow.start_scorer()
        flow.drain(tally)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{flow.diagnosis(tally)}") from exc
    finally:
        flow.close(tally)
    with capsys.disabled():
        print(f"\noutput topic deleted: the scorer exited {code} after {exited_s:.1f}s: {line}")
        print(f"{flow.published} events: {len(tally.predicted)} predicted + {len(tally.dead)} dead-lettered, 0 lost")
    assert code == 4, line
    assert flow.out in line and "heartrisk kafka topics" in line, line
