"""``--delivery exactly-once`` on the real broker and Spark: kills and injected crashes give every event once.

Every output is counted by what it stands for: a prediction by its ``event_id``, a dead letter by
the input record it rejects (partition and offset). The consumers are assigned every partition of
both output topics and read from the beginning, ``read_committed`` unless a test says otherwise.
The crashes are injected by the sink's test hook (``HEARTRISK_TEST_CRASH``), which halts the JVM
the way ``kill -9`` does: right after a transaction commits, or after its sends and before its commit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from stream.app.produce import generate, publish
from stream.config import load_settings
from stream.local.topics import COMMIT_TOPIC_CONFIG, ensure_topics
from stream.monitor.progress import read_progress
from tests.helpers import end_offsets_total, kill_mid_stream, topic_name, wait_for

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))
SKIP_LINE = 'event="batch skipped, already committed" batch_id={}'
JVM_DIED = "heartrisk: error: the Spark JVM under this command died"  # the test hook halts the JVM


@pytest.fixture
def flow(kafka_bootstrap, make_topics, tmp_path):
    """Fresh topics (and commit-marker topic), the scorer's environment and settings."""
    inp, out, dlq = make_topics("events", "predictions", "dlq")
    commits = topic_name("commits")
    ensure_topics(kafka_bootstrap, [commits], 1, topic_config=COMMIT_TOPIC_CONFIG)
    env = {
        **os.environ,
        "HEARTRISK_BOOTSTRAP_SERVERS": kafka_bootstrap, "HEARTRISK_INPUT_TOPIC": inp,
        "HEARTRISK_OUTPUT_TOPIC": out, "HEARTRISK_DLQ_TOPIC": dlq, "HEARTRISK_COMMIT_TOPIC": commits,
        "HEARTRISK_CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "HEARTRISK_SPARK_MASTER": "local[2]",
        "HEARTRISK_TRIGGER": "processing-time=500ms", "HEARTRISK_MAX_OFFSETS_PER_TRIGGER": "5000",
        "HEARTRISK_DELIVERY": "exactly-once",
    }
    env.pop("HEARTRISK_TEST_CRASH", None)
    settings = load_settings({"bootstrap_servers": kafka_bootstrap, "input_topic": inp, "output_topic": out,
                              "dlq_topic": dlq, "commit_topic": commits, "delivery": "exactly-once"})
    return env, settings, tmp_path


def start(env: dict[str, str], log: Path, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([HEARTRISK, "score"], env={**env, **extra}, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def output_ids(settings, isolation: str = "read_committed", until=None, timeout_s: float = 10.0) -> Counter:
    """Every output's id on both topics, read from the beginning until ``until(ids)`` (or, without it, the end)."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "unused",
                         "enable.auto.commit": False, "isolation.level": isolation, "enable.partition.eof": True})
    parts = [TopicPartition(t, p, OFFSET_BEGINNING)
             for t in (settings.output_topic, settings.dlq_topic)
             for p in consumer.list_topics(t, timeout=10).topics[t].partitions]
    consumer.assign(parts)
    ids: Counter = Counter()
    at_end: set[tuple[str, int]] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for m in consumer.consume(num_messages=5000, timeout=0.5):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add((m.topic(), m.partition()))
                    continue
                rec = json.loads(m.value())
                ids[rec["event_id"] if m.topic() == settings.output_topic
                    else f"input {rec['partition']}/{rec['offset']}"] += 1
            if until is not None and until(ids):
                return ids
            if until is None and len(at_end) == len(parts):
                return ids
    finally:
        consumer.close()
    if until is not None:
        raise AssertionError(f"timed out after {timeout_s:.0f}s: {sum(ids.values())} outputs, {len(ids)} distinct")
    return ids


def exits(proc: subprocess.Popen, log: Path, timeout_s: float = 240) -> int:
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"the scorer did not crash: {log.read_text()[-2000:]}") from None


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(120)


def batch_files(tmp: Path, folder: str) -> set[int]:
    root = tmp / "checkpoints" / "heartrisk-scorer" / folder
    return {int(p.name) for p in root.iterdir() if p.name.isdigit()} if root.exists() else set()


def markers(settings) -> list[dict]:
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "unused",
                         "isolation.level": "read_committed", "enable.partition.eof": True})
    consumer.assign([TopicPartition(settings.commit_topic, 0, OFFSET_BEGINNING)])
    out: list[dict] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error() is not None:
                return out
            if m is not None:
                out.append(json.loads(m.value()))
    finally:
        consumer.close()
    raise AssertionError("the commit-marker topic was not read to its end in 20s")


KILLS = 3


def test_the_driver_killed_3_times_in_a_60000_event_run_gives_every_event_exactly_once(flow, capsys):
    env, settings, tmp = flow
    total = 60_000
    events = list(generate(total, "synthetic", settings, bad_fraction=0.02, seed=11))
    # batches back to back, so a transaction is open most of the time and a kill is likely to land in one
    env = {**env, "HEARTRISK_TRIGGER": "processing-time=0"}
    kill_mid_stream(events, KILLS, settings, lambda k: start(env, tmp / f"scorer{k + 1}.log"),
                    lambda: end_offsets_total(settings.bootstrap_servers, settings.output_topic))
    scorer = start(env, tmp / "scorer-last.log")
    try:
        ids = output_ids(settings, until=lambda c: len(c) >= total, timeout_s=300)
    finally:
        assert stop(scorer) == 0
    ids = output_ids(settings)  # read again to the end: a duplicate written after the last id would show
    uncommitted = output_ids(settings, "read_uncommitted")
    skipped = sum(p.read_text().count('event="batch skipped, already committed"') for p in tmp.glob("scorer*.log"))
    with capsys.disabled():
        print(f"\nexactly-once, driver kill -9 x{KILLS} in one run: {total} events, {len(ids)} distinct ids, "
              f"{sum(ids.values()) - len(ids)} duplicates read_committed; read_uncommitted saw "
              f"{sum(uncommitted.values()) - len(uncommitted)} records of aborted transactions; "
              f"{skipped} replayed batches skipped as committed")
    assert len(ids) == total, "every event has its prediction or dead letter"
    assert sum(ids.values()) == total, "and only one"
    predictions = sum(1 for i in ids if not i.startswith("input "))
    assert 0 < total - predictions < total, "both topics are counted"


def test_crashes_before_and_after_the_commit_give_every_event_once(flow, capsys):
    """Before the commit: the transaction is aborted. After it: the replayed batch is skipped."""
    env, settings, tmp = flow
    total = 2000
    publish(generate(total, "synthetic", settings, bad_fraction=0.05, seed=12), total, settings, progress=False)

    # 1. sends done, no commit: the records are in the log, but not for a read_committed consumer
    scorer = start(env, tmp / "before.log", HEARTRISK_TEST_CRASH="before-commit")
    assert exits(scorer, tmp / "before.log") == 1
    assert JVM_DIED in (tmp / "before.log").read_text(), "one line, not Py4J's traceback"
    assert batch_files(tmp, "offsets") == {0} and batch_files(tmp, "commits") == set()
    open_tx = output_ids(settings, "read_uncommitted")
    assert sum(open_tx.values()) == total, "the crashed batch's sends reached the log"
    assert output_ids(settings) == Counter(), "a read_committed consumer sees none of them"

    # 2. the restart aborts that transaction, replays batch 0, commits it, and crashes before Spark records it
    scorer = start(env, tmp / "after.log", HEARTRISK_TEST_CRASH="after-commit")
    assert exits(scorer, tmp / "after.log") == 1
    assert JVM_DIED in (tmp / "after.log").read_text()
    assert batch_files(tmp, "commits") == set(), "Spark did not record the batch"
    committed = [m for m in markers(settings) if m["batch_id"] == 0]
    assert len(committed) == 1 and committed[0]["records"] == total, "but its transaction is committed"
    once = output_ids(settings)
    assert len(once) == total and sum(once.values()) == total

    # 3. a clean restart: Spark replays batch 0, the sink skips it
    scorer = start(env, tmp / "clean.log")
    try:
        wait_for(lambda: 0 in batch_files(tmp, "commits"), 240, what="batch 0 recorded by Spark")
    finally:
        assert stop(scorer) == 0
    assert SKIP_LINE.format(0) in (tmp / "clean.log").read_text()
    ids = output_ids(settings)
    assert len(ids) == total and sum(ids.values()) == total, f"{sum(ids.values()) - total} duplicates"
    uncommitted = output_ids(settings, "read_uncommitted")
    assert sum(uncommitted.values()) == 2 * total, "read_uncommitted sees the aborted batch and the committed one"
    progress = read_progress(tmp / "checkpoints" / "heartrisk-scorer" / "heartrisk-progress.json")
    assert progress is not None and progress["totals"]["delivery"]["skipped"] == 1
    status = subprocess.run([HEARTRISK, "status"], env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr[-2000:]
    assert "0 aborted; 1 replayed batch(es) skipped (committed before a crash)" in status.stdout, status.stdout
    with capsys.disabled():
        print(f"\nexactly-once crashes: {total} events; before the commit: {total} records aborted (seen only "
              f"read_uncommitted); after the commit: batch 0 skipped on replay; read_committed: {len(ids)} "
              f"distinct, 0 duplicates")


def test_the_same_crash_at_least_once_writes_the_batch_twice(flow, capsys):
    """The control: Spark's own Kafka sink, and the checkpoint a crash after its writes leaves behind."""
    env, settings, tmp = flow
    env = {**env, "HEARTRISK_DELIVERY": "at-least-once"}
    total = 2000
    publish(generate(total, "synthetic", settings, bad_fraction=0.05, seed=13), total, settings, progress=False)
    scorer = start(env, tmp / "first.log")
    try:
        output_ids(settings, until=lambda c: len(c) >= total, timeout_s=240)
        last = max(wait_for(lambda: batch_files(tmp, "commits"), 60, what="a recorded batch"))
    finally:
        assert stop(scorer) == 0
    # The batch's rows are in Kafka; remove Spark's record of it, as a crash right after the sink's writes would
    commits = tmp / "checkpoints" / "heartrisk-scorer" / "commits"
    (commits / str(last)).unlink()
    (commits / f".{last}.crc").unlink(missing_ok=True)
    before = sum(output_ids(settings).values())
    scorer = start(env, tmp / "second.log")
    try:
        wait_for(lambda: last in batch_files(tmp, "commits"), 240, what=f"batch {last} replayed")
    finally:
        assert stop(scorer) == 0
    ids = output_ids(settings)
    duplicates = sum(ids.values()) - len(ids)
    with capsys.disabled():
        print(f"\nat-least-once, the same crash: {total} events, batch {last} written again: {duplicates} "
              "duplicates")
    assert len(ids) == total
    assert duplicates > 0 and sum(ids.values()) == before + duplicates
