"""Spark's checkpoint logs read and extended in plain Python: positions, resets and their guard rails."""

from __future__ import annotations

import json
import os

import pytest

from stream.app.checkpoint_log import LocalFiles, batch_ids, committed, source_offsets
from stream.app.checkpoint_reset import parse_offsets, parse_time, reset
from stream.app.status import is_running, render
from stream.errors import CheckpointError, ConfigError

META = {"batchWatermarkMs": 0, "batchTimestampMs": 1, "conf": {"spark.sql.shuffle.partitions": "4"}}


def spark_like(root, topic="events", batches=((0, {"0": 10, "1": 20}), (1, {"0": 15, "1": 25})), done=(0,)):
    """A checkpoint laid out as Spark writes it (the initial offsets file starts with a zero byte)."""
    (root / "sources/0").mkdir(parents=True)
    (root / "sources/0/0").write_text("\x00v1\n" + json.dumps({topic: {"0": 0, "1": 0}}))
    (root / "offsets").mkdir()
    (root / "commits").mkdir()
    for n, offsets in batches:
        (root / f"offsets/{n}").write_text("v1\n" + json.dumps(META) + "\n" + json.dumps({topic: offsets}))
    for n in done:
        (root / f"commits/{n}").write_text('v1\n{"nextBatchWatermarkMs":0}')
    return LocalFiles(str(root))


def test_the_position_is_the_end_of_the_last_committed_batch(tmp_path):
    files = spark_like(tmp_path)
    pos = committed(files, "events")
    assert pos is not None and pos.batch_id == 0 and pos.offsets == {0: 10, 1: 20}, "batch 1 is not committed"
    assert committed(files, "other") is None
    assert source_offsets("v1\n{}\n" + json.dumps({"t": {"3": 7}}), "t") == {3: 7}


def test_a_query_that_committed_nothing_stands_where_it_started(tmp_path):
    files = spark_like(tmp_path, done=())
    pos = committed(files, "events")
    assert pos is not None and pos.batch_id is None and pos.offsets == {0: 0, 1: 0}
    assert committed(LocalFiles(str(tmp_path / "missing")), "events") is None


def test_a_reset_appends_a_committed_batch_and_keeps_a_backup(tmp_path):
    files = spark_like(tmp_path)
    asked: list[str] = []
    done = reset(files, "events", {0: 3, 1: 4}, running=False, confirm=lambda q: asked.append(q) or True)
    assert done is not None and done.batch_id == 2 and done.before == {0: 10, 1: 20}
    assert "p0 10 -> 3" in asked[0] and "p1 20 -> 4" in asked[0]
    pos = committed(files, "events")
    assert pos is not None and pos.batch_id == 2 and pos.offsets == {0: 3, 1: 4}
    assert pos.metadata["conf"] == META["conf"], "the last batch's metadata is carried over"
    backup = json.loads((tmp_path / done.backup).read_text())
    assert backup["committed_offsets"] == {"0": 10, "1": 20} and backup["last_logged_batch_id"] == 1
    assert sorted(os.listdir(tmp_path / "offsets")) == ["0", "1", "2"], "nothing of Spark's is removed"


def test_a_reset_is_refused_while_running_without_a_batch_or_without_a_yes(tmp_path):
    files = spark_like(tmp_path)
    with pytest.raises(CheckpointError, match="the query is running"):
        reset(files, "events", {0: 1, 1: 1}, running=True, confirm=lambda q: True)
    assert reset(files, "events", {0: 1, 1: 1}, running=False, confirm=lambda q: False) is None
    assert committed(files, "events").offsets == {0: 10, 1: 20}, "not confirmed: nothing written"
    with pytest.raises(CheckpointError, match="no batch yet"):
        reset(LocalFiles(str(tmp_path / "new")), "events", {0: 1}, running=False, confirm=lambda q: True)


def test_reset_targets_are_parsed_strictly():
    assert parse_time("2026-11-27T10:00:00Z") == 1795773600000
    assert parse_time("1795773600000") == 1795773600000
    with pytest.raises(ConfigError, match="ISO 8601"):
        parse_time("yesterday")
    assert parse_offsets('{"0": 5, "1": 6}', "t", {0, 1}) == {0: 5, 1: 6}
    assert parse_offsets('{"t": {"0": 5, "1": 6}}', "t", {0, 1}) == {0: 5, 1: 6}
    with pytest.raises(ConfigError, match="give each once"):
        parse_offsets('{"0": 5}', "t", {0, 1})
    with pytest.raises(ConfigError, match="JSON like"):
        parse_offsets("5", "t", {0})


def test_running_means_an_active_state_and_a_live_process():
    alive = {"state": "active", "pid": os.getpid(), "updated_at": 0}
    assert is_running(alive)
    assert not is_running({**alive, "state": "terminated"})
    assert not is_running({**alive, "pid": 2**22 + 12345})
    assert is_running({**alive, "host": "elsewhere", "updated_at": 100.0}, now=130.0), "another host: fresh file"
    assert not is_running({**alive, "host": "elsewhere", "updated_at": 100.0}, now=500.0)
    text = render({
        "query_name": "q", "running": False, "state": "terminated", "pid": None, "uptime_seconds": None,
        "model_version": "1.0.0", "topics": {"input": "i", "output": "o", "dead_letters": "d"},
        "last_batch": {"id": 4, "rows": 1200, "duration_seconds": 0.4, "age_seconds": 75},
        "events_per_second": 0.0, "totals": {"batches": 5, "input_rows": 5000, "predictions": 4990},
        "lag": {"total": 30, "partitions": {"0": 10, "1": 20}}, "committed": {"batch_id": 4, "offsets": {}},
        "dead_letters_by_code": {"NOT_JSON": 10}, "registry_pause": None,
    })
    assert "not running (last state: terminated)" in text and "#4, 1,200 rows" in text and "1m 15s ago" in text
    assert "lag: 30 (p0 10, p1 20)" in text and "NOT_JSON 10" in text
    assert "exactly-once" not in text, "at-least-once: no transactions to show"


def test_status_shows_exactly_once_transactions_and_skipped_batches():
    st = {"query_name": "q", "running": False, "state": "terminated", "pid": None, "uptime_seconds": None,
          "model_version": "1.0.0", "topics": {"input": "i", "output": "o", "dead_letters": "d"},
          "last_batch": None, "events_per_second": 0.0,
          "totals": {"batches": 1300, "input_rows": 9000, "predictions": 8900}, "lag": None, "committed": None,
          "dead_letters_by_code": {}, "registry_pause": None,
          "delivery": {"committed": 1299, "aborted": 2, "skipped": 1}}
    line = next(ln for ln in render(st).splitlines() if "exactly-once" in ln)
    assert line.strip() == ("exactly-once transactions: 1,299 committed, 2 aborted; "
                            "1 replayed batch(es) skipped (committed before a crash)")


def test_replay_filters_all_must_hold():
    from stream.app.replay import Filters

    letter = {"error_code": "OUT_OF_RANGE", "partition": 1, "offset": 40, "event_id": "e-1"}
    assert Filters().keep(letter, 1000)
    assert Filters(codes=frozenset({"OUT_OF_RANGE"}), since_ms=900, until_ms=1000, partition=1,
                   offsets=(40, 40), event_ids=frozenset({"e-1"})).keep(letter, 1000)
    assert not Filters(codes=frozenset({"NOT_JSON"})).keep(letter, 1000)
    assert not Filters(since_ms=1001).keep(letter, 1000)
    assert not Filters(until_ms=999).keep(letter, 1000)
    assert not Filters(partition=0).keep(letter, 1000)
    assert not Filters(offsets=(41, 90)).keep(letter, 1000)
    assert not Filters(event_ids=frozenset({"e-2"})).keep(letter, 1000)


def test_field_ranges_are_checked_against_the_contract():
    from stream.pipeline.validate import parse_ranges

    assert parse_ranges({"Cholesterol": "100:700", "Age": "0:130"}) == {"Cholesterol": (100.0, 700.0),
                                                                     "Age": (0.0, 130.0)}
    with pytest.raises(ConfigError, match="not a numeric clinical field"):
        parse_ranges({"Sex": "0:1"})
    with pytest.raises(ConfigError, match="must be lo:hi"):
        parse_ranges({"Cholesterol": "700"})
    with pytest.raises(ConfigError, match="lo > hi"):
        parse_ranges({"Cholesterol": "700:100"})


def test_a_hadoop_path_is_read_and_extended_through_spark_the_same_way(spark, tmp_path):
    """The path an HDFS or S3 checkpoint takes (Spark's Hadoop file system), here on the local disk."""
    from stream.app.checkpoint_log import HadoopFiles

    spark_like(tmp_path)
    files = HadoopFiles(spark, f"file://{tmp_path}")
    assert batch_ids(files, "offsets") == [0, 1] and files.names("nothing") == []
    assert files.names("commits") == ["0"]
    pos = committed(files, "events")
    assert pos is not None and pos.batch_id == 0 and pos.offsets == {0: 10, 1: 20}
    done = reset(files, "events", {0: 3, 1: 4}, running=False, confirm=lambda q: True)
    assert done is not None and committed(LocalFiles(str(tmp_path)), "events").offsets == {0: 3, 1: 4}
    assert files.names("heartrisk-backups") == ["reset-2.json"], "the backups are listed on any Hadoop path"
    assert files.read("missing") is None
