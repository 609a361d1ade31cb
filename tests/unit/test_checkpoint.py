"""The checkpoint fingerprint on a local Hadoop path: written once, kept, and a mismatch refused."""

from __future__ import annotations

import json

import pytest

from stream.app.checkpoint import FINGERPRINT_FILE, check_fingerprint, read_fingerprint
from stream.config import load_settings
from stream.errors import CheckpointError


def _settings(tmp_path, topic):
    return load_settings({"checkpoint_dir": str(tmp_path), "input_topic": topic, "query_name": "q"}, environ={})


def test_first_use_writes_the_fingerprint_and_a_restart_keeps_it(spark, tmp_path):
    s = _settings(tmp_path, "events-a")
    assert read_fingerprint(spark, s.checkpoint_location) is None
    check_fingerprint(spark, s)
    stored = json.loads((tmp_path / "q" / FINGERPRINT_FILE).read_text())
    assert stored == {"input_topic": "events-a"}
    check_fingerprint(spark, s)  # the same settings: accepted, unchanged
    assert read_fingerprint(spark, s.checkpoint_location) == stored


def test_another_input_topic_is_refused_with_what_to_do(spark, tmp_path):
    check_fingerprint(spark, _settings(tmp_path, "events-a"))
    with pytest.raises(CheckpointError, match="input topic 'events-a', but this query reads 'events-b'") as info:
        check_fingerprint(spark, _settings(tmp_path, "events-b"))
    assert "--query-name" in str(info.value) and "--checkpoint-dir" in str(info.value)


def test_a_checkpoint_from_before_fingerprints_is_adopted(spark, tmp_path):
    (tmp_path / "q" / "offsets").mkdir(parents=True)
    check_fingerprint(spark, _settings(tmp_path, "events-a"))
    assert read_fingerprint(spark, str(tmp_path / "q")) == {"input_topic": "events-a"}
