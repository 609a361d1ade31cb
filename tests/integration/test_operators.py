"""The operators' console on a real broker and real scorers: `heartrisk status`, `checkpoint show | reset`, `run`.

Every command runs as the operator runs it: the `heartrisk` console script, in
a subprocess, reading the scorer's progress file, its checkpoint and the broker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from stream.app.produce import Event, generate, publish
from stream.config import load_settings
from tests.helpers import consume, end_offsets_total, free_port, http_get, wait_for

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))


class Operator:
    """One query's topics and settings, and the scorer and commands run against them."""

    def __init__(self, kafka_bootstrap: str, topics: list[str], tmp: Path, **env: str) -> None:
        inp, out, dlq = topics
        self.tmp = tmp
        self.settings = load_settings(
            {"bootstrap_servers": kafka_bootstrap, "input_topic": inp, "output_topic": out, "dlq_topic": dlq}
        )
        self.env = {
            **os.environ,
            "HEARTRISK_BOOTSTRAP_SERVERS": kafka_bootstrap, "HEARTRISK_INPUT_TOPIC": inp,
            "HEARTRISK_OUTPUT_TOPIC": out, "HEARTRISK_DLQ_TOPIC": dlq,
            "HEARTRISK_CHECKPOINT_DIR": str(tmp / "checkpoints"), "HEARTRISK_SPARK_MASTER": "local[2]",
            "HEARTRISK_TRIGGER": "processing-time=500ms", **env,
        }
        self.log = tmp / "scorer.log"
        self.scorer: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.scorer = subprocess.Popen(
            [HEARTRISK, "score"], env=self.env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(lambda: 'event="scorer started"' in self.log.read_text() or self.scorer.poll() is not None, 180,
                 what="the scorer's start")
        assert self.scorer.poll() is None, self.log.read_text()[-3000:]

    def stop(self) -> None:
        assert self.scorer is not None
        self.scorer.send_signal(signal.SIGTERM)
        assert self.scorer.wait(120) == 0, self.log.read_text()[-3000:]

    def kill(self) -> None:
        if self.scorer is not None and self.scorer.poll() is None:
            os.killpg(self.scorer.pid, signal.SIGKILL)
            self.scorer.wait()

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([HEARTRISK, *args], env=self.env, capture_output=True, text=True, timeout=120,
                              input=stdin)

    def status(self) -> dict:
        done = self.run("status", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def publish(self, n: int, seed: int) -> list[str]:
        """Publish n synthetic events; their event ids."""
        events = list(generate(n, "synthetic", self.settings, seed=seed))
        assert publish(iter(events), n, self.settings, progress=False) == n
        return [json.loads(e.value)["event_id"] for e in events]


def group_offsets(settings, group: str) -> dict[str, int]:
    """The group's committed offsets of the input topic, read with confluent-kafka."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(settings.kafka_client_config(**{"group.id": group, "enable.auto.commit": False}))
    try:
        got = consumer.committed([TopicPartition(settings.input_topic, p) for p in range(3)], timeout=10)
    finally:
        consumer.close()
    return {str(tp.partition): tp.offset for tp in got if tp.offset >= 0}


def topic_config(settings, topic: str) -> dict[str, str]:
    """A topic's configuration, as the broker reports it."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    admin = AdminClient(settings.kafka_client_config())
    (fut,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    return {k: v.value for k, v in fut.result(30).items()}


def _prom(text: str, name: str, **labels: str) -> float | None:
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return None


def test_status_shows_the_lag_falling_to_zero_and_agrees_with_the_exporter(kafka_bootstrap, make_topics, tmp_path):
    exporter_port = free_port()
    op = Operator(kafka_bootstrap, make_topics("events", "predictions", "dlq"), tmp_path,
                  HEARTRISK_QUERY_NAME=f"ops-status-{uuid.uuid4().hex[:6]}", HEARTRISK_MAX_OFFSETS_PER_TRIGGER="2000",
                  HEARTRISK_EXPORTER_PORT=str(exporter_port),
                  HEARTRISK_PUSHGATEWAY=f"127.0.0.1:{free_port()}", HEARTRISK_EXPORTER_INTERVAL="1")
    before = op.status()
    assert before["running"] is False and before["state"] == "never started" and before["lag"] is None
    exporter = subprocess.Popen([HEARTRISK, "exporter"], env=op.env, stdout=open(tmp_path / "exporter.log", "ab"),
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        op.start()
        sent = op.publish(50_000, seed=3)  # a backlog: at most 2,000 per batch
        seen: list[int] = []

        def drained() -> bool:
            st = op.status()
            if not st["running"]:  # the listener reports the start asynchronously
                assert op.scorer.poll() is None, op.log.read_text()[-3000:]
                return False
            assert st["pid"] == op.scorer.pid
            if st["lag"] is not None:
                seen.append(st["lag"]["total"])
            return st["lag"] is not None and st["lag"]["total"] == 0 and st["totals"]["input_rows"] == len(sent)

        wait_for(drained, 240, interval_s=1.0, what="the lag to fall to 0")
        assert max(seen) > 0 and seen[-1] == 0, f"the backlog showed as lag, then none: {seen}"
        st = op.status()
        assert st["committed"]["offsets"] == st["end_offsets"] and st["last_batch"]["rows"] > 0
        assert st["totals"]["predictions"] + sum(st["dead_letters_by_code"].values()) == 50_000
        # the same figures as the exporter's /metrics (both read the same progress file)
        url = f"http://127.0.0.1:{exporter_port}/metrics"
        wait_for(lambda: _prom(http_get(url)[1], "heartrisk_input_rows_total") == 50_000, 60,
                 what="the exporter's count")
        metrics = http_get(url)[1]
        assert _prom(metrics, "heartrisk_predictions_total") == st["totals"]["predictions"]
        assert _prom(metrics, "heartrisk_batch_id") == st["last_batch"]["id"]
        assert _prom(metrics, "heartrisk_batches_total") == st["totals"]["batches"]
        text = op.run("status")
        assert text.returncode == 0 and "running (pid" in text.stdout and "lag: 0" in text.stdout
        print("\n" + text.stdout)

        # the lag Kafka's own tools see: the same offsets, mirrored to a group named after the query
        group = op.env["HEARTRISK_QUERY_NAME"]
        wait_for(lambda: group_offsets(op.settings, group) == st["committed"]["offsets"], 30,
                 what="the consumer group's offsets to equal the checkpoint's")
        tool = op.run("kafka", "groups", "--group", group)
        assert tool.returncode == 0, tool.stdout + tool.stderr
        rows = [line.split() for line in tool.stdout.splitlines() if op.settings.input_topic in line]
        assert len(rows) == 3 and all(r[rows[0].index(op.settings.input_topic) + 4] == "0" for r in rows), tool.stdout
        print(tool.stdout)

        op.stop()
        op.publish(100, seed=4)  # with the scorer stopped, status still reads the checkpoint
        st = op.status()
        assert st["running"] is False and st["pid"] is None
        assert st["lag"]["total"] == 100
        assert sum(st["committed"]["offsets"].values()) == 50_000
    finally:
        op.kill()
        exporter.send_signal(signal.SIGTERM)
        exporter.wait(30)


def test_checkpoint_reset_to_time_re_scores_exactly_the_later_events(kafka_bootstrap, make_topics, tmp_path):
    query = f"ops-reset-{uuid.uuid4().hex[:6]}"
    op = Operator(kafka_bootstrap, make_topics("events", "predictions", "dlq"), tmp_path,
                  HEARTRISK_QUERY_NAME=query, HEARTRISK_LAG_GROUP="off")
    early = op.publish(300, seed=5)  # flushed: every timestamp is before the cut
    cut_ms = int(time.time() * 1000) + 1
    wait_for(lambda: int(time.time() * 1000) > cut_ms, 5, interval_s=0.001, what="the clock to pass the cut")
    late = op.publish(200, seed=6)  # every timestamp after the cut
    try:
        op.start()
        consume(kafka_bootstrap, op.settings.output_topic, lambda r: len(r) >= 500, 180)
        refused = op.run("checkpoint", "reset", "--to-time", str(cut_ms), "--yes")
        assert refused.returncode == 6 and "the query is running" in refused.stderr
        op.stop()

        shown = json.loads(op.run("checkpoint", "show", "--json").stdout)
        assert sum(shown["committed"]["offsets"].values()) == 500 and shown["running"] is False
        no_tty = op.run("checkpoint", "reset", "--to-time", str(cut_ms))
        assert no_tty.returncode == 1 and "add --yes" in no_tty.stderr, "never moved without a confirmation"
        done = op.run("checkpoint", "reset", "--to-time", str(cut_ms), "--yes")
        assert done.returncode == 0, done.stderr
        assert "backup of the replaced position" in done.stdout
        shown = json.loads(op.run("checkpoint", "show", "--json").stdout)
        assert sum(shown["committed"]["offsets"].values()) == 300, "the position is now the cut"
        assert len(shown["reset_backups"]) == 1

        op.start()
        preds = consume(kafka_bootstrap, op.settings.output_topic, lambda r: len(r) >= 700, 180)
        op.stop()
    finally:
        op.kill()
    listed = op.run("kafka", "groups")
    assert listed.returncode == 0 and query not in listed.stdout.split(), "lag group off: no group"
    got = Counter(json.loads(m.value())["event_id"] for m in preds)
    assert len(preds) == 700 == end_offsets_total(kafka_bootstrap, op.settings.output_topic)
    assert {e for e, n in got.items() if n == 2} == set(late), "exactly the events after the cut, again"
    assert all(got[e] == 1 for e in early)


def test_run_exits_non_zero_with_the_scorers_last_words_when_the_scorer_dies(tmp_path):
    env = {
        **os.environ,
        "HEARTRISK_KAFKA_PORT": str(free_port()), "HEARTRISK_KAFKA_CONTROLLER_PORT": str(free_port()),
        "HEARTRISK_KAFKA_STATE_DIR": str(tmp_path / "kafka"), "HEARTRISK_KAFKA_HEAP": "512m",
        "HEARTRISK_CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "HEARTRISK_SPARK_MASTER": "local[2]",
    }
    proc = subprocess.Popen([HEARTRISK, "run", "--no-replay"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("press Ctrl-C" in e for e in errors) or proc.poll() is not None, 240,
                 what="the scorer running")
        pid = int(next(e for e in errors if "scorer starting (pid" in e).split("pid ")[1].split(",")[0])
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: any("the scorer exited" in e for e in errors), 10, interval_s=0.1,
                 what="`run` to notice within 10 s")
        noticed_s = time.monotonic() - killed_at
        code = proc.wait(60)  # it then stops the broker it started
        exited_s = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    assert code == 1
    said = next(e for e in errors if "the scorer exited" in e)
    assert "code -9" in said and "SIGKILL" in said, said
    print(f"\n`run` noticed the dead scorer after {noticed_s:.1f} s and exited after {exited_s:.1f} s: {said.strip()}")


def test_replay_sends_the_fixed_dead_letters_back_once(kafka_bootstrap, make_topics, tmp_path):
    op = Operator(kafka_bootstrap, make_topics("events", "predictions", "dlq"), tmp_path,
                  HEARTRISK_QUERY_NAME=f"ops-replay-{uuid.uuid4().hex[:6]}")
    events = list(generate(150, "synthetic", op.settings, seed=8))
    bad_ids = set()
    for i, e in enumerate(events[:100]):  # a feed that sends cholesterol above the contract's 600
        body = json.loads(e.value)
        body["Cholesterol"] = 650
        events[i] = Event(e.key, json.dumps(body).encode())
        bad_ids.add(body["event_id"])
    assert publish(iter(events), 150, op.settings, progress=False) == 150
    try:
        op.start()
        consume(kafka_bootstrap, op.settings.output_topic, lambda r: len(r) >= 50, 180)
        letters = consume(kafka_bootstrap, op.settings.dlq_topic, lambda r: len(r) >= 100, 60)
        assert {json.loads(m.value())["error_code"] for m in letters} == {"OUT_OF_RANGE"}
        op.stop()

        dry = op.run("replay", "--code", "OUT_OF_RANGE", "--dry-run")
        assert dry.returncode == 0 and len(dry.stdout.splitlines()) == 100, dry.stderr
        assert "would send 100" in dry.stderr
        assert end_offsets_total(kafka_bootstrap, op.settings.input_topic) == 150, "a dry run sends nothing"

        op.env["HEARTRISK_FIELD_RANGES"] = "Cholesterol=100:700"  # the fix: a settings change
        op.start()
        sent = op.run("replay", "--code", "OUT_OF_RANGE", "--quiet")
        assert sent.returncode == 0 and "sent 100" in sent.stderr, sent.stderr
        preds = consume(kafka_bootstrap, op.settings.output_topic, lambda r: len(r) >= 150, 180)
        again = op.run("replay", "--code", "OUT_OF_RANGE")
        assert again.returncode == 0 and "sent 0" in again.stderr and "100 already replayed" in again.stderr
        assert topic_config(op.settings, op.settings.dlq_topic + ".replayed")["cleanup.policy"] == "compact"
        op.stop()
    finally:
        op.kill()
    scored = Counter(json.loads(m.value())["event_id"] for m in preds)
    assert {e for e in bad_ids if scored[e] == 1} == bad_ids, "each fixed event scored exactly once"
    assert len(preds) == 150 and end_offsets_total(kafka_bootstrap, op.settings.dlq_topic) == 100
    replayed = consume(kafka_bootstrap, op.settings.input_topic, lambda r: len(r) >= 250, 60)
    marked = [dict(m.headers() or []) for m in replayed if m.headers()]
    assert len(replayed) == 250 and len(marked) == 100
    assert all(h["heartrisk-replay-of"].decode().startswith(op.settings.input_topic + "/") for h in marked)

    # a range of input records scored again: now, by a batch job, into a topic of its own ...
    (rescored_topic,) = make_topics("rescored")
    first_ten = sorted((m for m in replayed if m.partition() == 0), key=lambda m: m.offset())[:10]
    done = op.run("replay", "--from-input", "--partition", "0", "--offsets", "0-9", "--into", rescored_topic)
    assert done.returncode == 0 and "scored 10 records" in done.stderr, done.stderr
    rescored = consume(kafka_bootstrap, rescored_topic, lambda r: len(r) >= 10, 60)
    assert sorted(json.loads(m.value())["event_id"] for m in rescored) == sorted(
        json.loads(m.value())["event_id"] for m in first_ten)
    # ... or published again, headers and all, for the running scorer
    again = op.run("replay", "--from-input", "--partition", "0", "--offsets", "0-4", "--quiet")
    assert again.returncode == 0 and "published 5 records" in again.stderr, again.stderr
    inputs = consume(kafka_bootstrap, op.settings.input_topic, lambda r: len(r) >= 255, 60)
    copies = [m for m in inputs if m.headers() and "heartrisk-replay-letter" not in dict(m.headers())
              and dict(m.headers()).get("heartrisk-replay-of", b"").decode()
              in {f"{op.settings.input_topic}/0/{i}" for i in range(5)}]  # not the dead-letter replays
    assert sorted(m.value() for m in copies) == sorted(m.value() for m in first_ten[:5])
    bad = op.run("replay", "--from-input", "--partition", "0", "--offsets", "0-999999")
    assert bad.returncode == 2 and "holds offsets" in bad.stderr
