"""Checkpoint faults on the real broker and real Spark: each is refused in one line, and its remedy loses nothing.

One query through four faults, counting every event id on the output topic:
a truncated offsets entry, a deleted checkpoint (the lag group remembers), a checkpoint that
names another Kafka cluster, and a damaged fingerprint. After each refusal the test follows the
remedy the message prints (``--starting-offsets`` from the lag group) and requires every event
scored, none lost and none twice.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from stream.app.checkpoint import FINGERPRINT_FILE, kafka_cluster_id, lag_group_offsets
from stream.app.produce import generate, publish
from stream.app.scorer import start_scorer
from stream.config import load_settings
from stream.errors import CheckpointError
from stream.local.topics import end_offsets
from tests.helpers import consume, wait_for

pytestmark = pytest.mark.integration


def _score(spark, model, settings) -> None:
    query = start_scorer(spark, settings, model)
    query.awaitTermination(300)
    assert query.exception() is None
    # the listener mirrors the end of the last batch to the lag group (asynchronously): wait for it
    wait_for(lambda: lag_group_offsets(settings) == end_offsets(settings.kafka_client_config(), settings.input_topic),
             60, what="the lag group at the end of the input")


def _refusal(spark, model, settings) -> str:
    with pytest.raises(CheckpointError) as info:
        start_scorer(spark, settings, model)
    assert info.value.exit_code == 6
    assert not any(q.isActive for q in spark.streams.active)
    return str(info.value)


def _resume_offsets(message: str) -> str:
    found = re.search(r"--starting-offsets '([^']+)'", message)
    assert found, message
    return found.group(1)


def test_checkpoint_faults_are_refused_and_their_remedies_lose_nothing(spark, model, kafka_bootstrap, make_topics,
                                                                      tmp_path):
    inp, out, dlq = make_topics("events", "predictions", "dlq")
    s = load_settings({"bootstrap_servers": kafka_bootstrap, "input_topic": inp, "output_topic": out,
                       "dlq_topic": dlq, "checkpoint_dir": str(tmp_path / "checkpoints"),
                       "query_name": f"faults-{uuid.uuid4().hex[:8]}", "trigger": "available-now",
                       "spark_master": "local[2]"})
    root = Path(s.checkpoint_location)
    sent = 0

    def more(n: int, seed: int) -> None:
        nonlocal sent
        sent += publish(generate(n, "synthetic", s, seed=seed), n, s, progress=False)

    more(1000, 1)
    _score(spark, model, s)
    stored = json.loads((root / FINGERPRINT_FILE).read_text())
    assert stored == {"input_topic": inp, "kafka_cluster_id": kafka_cluster_id(s)} and stored["kafka_cluster_id"]

    # 1. a truncated offsets entry: refused before Spark reads it; the remedy resumes where the query stopped
    last = max(int(p.name) for p in (root / "offsets").iterdir() if p.name.isdigit())
    entry = root / "offsets" / str(last)
    entry.write_text(entry.read_text()[:25])
    message = _refusal(spark, model, s)
    assert f"offsets/{last}" in message and "nothing was read or written" in message
    more(500, 2)
    shutil.move(root, tmp_path / "damaged")
    _score(spark, model, dataclasses.replace(s, starting_offsets=_resume_offsets(message)))

    # 2. a deleted checkpoint: the lag group remembers, so the default start is refused; its remedy loses nothing
    shutil.rmtree(root)
    message = _refusal(spark, model, s)
    assert "a deleted checkpoint" in message and f"--group {s.query_name} --delete" in message
    more(500, 3)
    _score(spark, model, dataclasses.replace(s, starting_offsets=_resume_offsets(message)))

    # 3. a checkpoint that names another cluster, 4. a damaged fingerprint: refused, nothing scored
    good = (root / FINGERPRINT_FILE).read_text()
    (root / FINGERPRINT_FILE).write_text(json.dumps({"input_topic": inp, "kafka_cluster_id": "another-cluster"}))
    assert "made against Kafka cluster 'another-cluster'" in _refusal(spark, model, s)
    (root / FINGERPRINT_FILE).write_text(good[: len(good) // 2])
    assert "heartrisk-fingerprint.json is damaged" in _refusal(spark, model, s)
    (root / FINGERPRINT_FILE).write_text(good)

    preds = consume(kafka_bootstrap, out, lambda r: len(r) >= sent, 60)
    ids = [json.loads(m.value())["event_id"] for m in preds]
    print(f"\ncheckpoint faults: {sent} events in, {len(ids)} predictions, {len(ids) - len(set(ids))} duplicates")
    assert len(set(ids)) == sent == 2000, "none lost"
    assert len(ids) == sent, "and none twice: each remedy resumed at the end of the last committed batch"

    # starting over on purpose: delete the checkpoint and the group (README), and the topic is scored again
    shutil.rmtree(root)
    deleted = subprocess.run([str(Path(sys.executable).with_name("heartrisk")), "kafka", "groups", "--group",
                              s.query_name, "--delete", "--bootstrap-servers", kafka_bootstrap],
                             capture_output=True, text=True, timeout=120)
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert lag_group_offsets(s) == {}
    _score(spark, model, s)
    again = consume(kafka_bootstrap, out, lambda r: len(r) >= 2 * sent, 60)
    assert len(again) == 2 * sent
