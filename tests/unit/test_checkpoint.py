"""The checkpoint guard on a local Hadoop path: the fingerprint written once and kept, mismatches and damage refused.

No broker here: the cluster id and the lag group's offsets are stubbed (``tests/integration/test_checkpoint_faults.py``
asks a real broker).
"""

from __future__ import annotations

import json

import pytest

from stream.app import checkpoint
from stream.app.checkpoint import FINGERPRINT_FILE, check_fingerprint, damaged_entries, read_fingerprint
from stream.app.checkpoint_log import LocalFiles
from stream.config import load_settings
from stream.errors import CheckpointError


@pytest.fixture
def kafka(monkeypatch):
    """What the broker would say: its cluster id, and the lag group's committed offsets."""
    facts = {"cluster": "cluster-A", "offsets": {}}
    monkeypatch.setattr(checkpoint, "kafka_cluster_id", lambda s: facts["cluster"])
    monkeypatch.setattr(checkpoint, "lag_group_offsets", lambda s: facts["offsets"])
    return facts


def _settings(tmp_path, topic, **more):
    return load_settings({"checkpoint_dir": str(tmp_path), "input_topic": topic, "query_name": "q", **more},
                         environ={})


def _batch(tmp_path, n: int, offsets: str = '{"events-a":{"0":10}}', commit: bool = True) -> None:
    root = tmp_path / "q"
    (root / "offsets").mkdir(parents=True, exist_ok=True)
    (root / "commits").mkdir(exist_ok=True)
    (root / "metadata").write_text('{"id":"5f1c"}\n')
    (root / "offsets" / str(n)).write_text('v1\n{"batchWatermarkMs":0,"batchTimestampMs":1}\n' + offsets)
    if commit:
        (root / "commits" / str(n)).write_text('v1\n{"nextBatchWatermarkMs":0}')


def test_first_use_writes_the_fingerprint_and_a_restart_keeps_it(spark, tmp_path, kafka):
    s = _settings(tmp_path, "events-a")
    assert read_fingerprint(spark, s.checkpoint_location) is None
    check_fingerprint(spark, s)
    stored = json.loads((tmp_path / "q" / FINGERPRINT_FILE).read_text())
    assert stored == {"input_topic": "events-a", "kafka_cluster_id": "cluster-A"}
    check_fingerprint(spark, s)  # the same settings: accepted, unchanged
    assert read_fingerprint(spark, s.checkpoint_location) == stored
    assert [p.name for p in (tmp_path / "q").iterdir()] == [FINGERPRINT_FILE], "written by a rename: no temp left"


def test_another_input_topic_is_refused_with_what_to_do(spark, tmp_path, kafka):
    check_fingerprint(spark, _settings(tmp_path, "events-a"))
    with pytest.raises(CheckpointError, match="input topic 'events-a', but this query reads 'events-b'") as info:
        check_fingerprint(spark, _settings(tmp_path, "events-b"))
    assert "--query-name" in str(info.value) and "--checkpoint-dir" in str(info.value)
    assert info.value.exit_code == 6


def test_another_kafka_cluster_is_refused(spark, tmp_path, kafka):
    check_fingerprint(spark, _settings(tmp_path, "events-a"))
    kafka["cluster"] = "cluster-B"
    with pytest.raises(CheckpointError, match="made against Kafka cluster 'cluster-A'.*is cluster 'cluster-B'"):
        check_fingerprint(spark, _settings(tmp_path, "events-a"))


def test_a_fingerprint_without_a_cluster_id_adopts_it_and_one_from_before_fingerprints_too(spark, tmp_path, kafka):
    _batch(tmp_path, 0)
    check_fingerprint(spark, _settings(tmp_path, "events-a"))
    assert read_fingerprint(spark, str(tmp_path / "q")) == {"input_topic": "events-a", "kafka_cluster_id": "cluster-A"}
    (tmp_path / "q" / FINGERPRINT_FILE).write_text('{"input_topic": "events-a"}')
    check_fingerprint(spark, _settings(tmp_path, "events-a"))
    assert json.loads((tmp_path / "q" / FINGERPRINT_FILE).read_text())["kafka_cluster_id"] == "cluster-A"


def test_a_damaged_fingerprint_is_refused_not_a_traceback(spark, tmp_path, kafka):
    check_fingerprint(spark, _settings(tmp_path, "events-a"))
    (tmp_path / "q" / FINGERPRINT_FILE).write_text('{"input_topic": "eve')
    with pytest.raises(CheckpointError, match="heartrisk-fingerprint.json is damaged"):
        check_fingerprint(spark, _settings(tmp_path, "events-a"))


@pytest.mark.parametrize(("damage", "named"), [
    (lambda root: (root / "offsets" / "1").write_text('v1\n{"batchWatermarkMs":0}\n{"events-a":{"0":'),
     "offsets/1 (line 3"),
    (lambda root: (root / "offsets" / "1").write_text(""), "offsets/1 (empty or truncated)"),
    (lambda root: (root / "commits" / "1").write_text("v1\n{nope"), "commits/1 (line 2"),
    (lambda root: (root / "metadata").write_text("{"), "metadata (not a JSON object)"),
])
def test_a_damaged_log_entry_is_refused_with_the_offsets_that_resume(spark, tmp_path, kafka, damage, named):
    _batch(tmp_path, 0)
    _batch(tmp_path, 1, '{"events-a":{"0":20}}')
    assert damaged_entries(LocalFiles(str(tmp_path / "q"))) == []
    damage(tmp_path / "q")
    kafka["offsets"] = {0: 20}
    with pytest.raises(CheckpointError) as info:
        check_fingerprint(spark, _settings(tmp_path, "events-a"))
    msg = str(info.value)
    assert named in msg and "nothing was read or written" in msg
    assert """--starting-offsets '{"events-a":{"0":20}}'""" in msg


def test_a_new_checkpoint_is_refused_when_the_lag_group_already_scored_the_topic(spark, tmp_path, kafka):
    kafka["offsets"] = {0: 120, 1: 0}
    with pytest.raises(CheckpointError, match="a deleted checkpoint") as info:
        check_fingerprint(spark, _settings(tmp_path, "events-a"))
    assert """--starting-offsets '{"events-a":{"0":120,"1":0}}'""" in str(info.value)
    assert "heartrisk kafka groups --group q --delete" in str(info.value)
    assert not (tmp_path / "q" / FINGERPRINT_FILE).exists(), "a refusal writes nothing"
    check_fingerprint(spark, _settings(tmp_path, "events-a", starting_offsets="latest"))  # the operator chose
    kafka["offsets"] = {}
    check_fingerprint(spark, _settings(tmp_path, "events-b", query_name="q2"))  # nothing scored: a plain first start
