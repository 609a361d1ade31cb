"""Real-time mode (Spark's low-latency trigger) on the same query, no second code path."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter

import pytest

from stream.app.lifecycle import stop_gracefully
from stream.app.produce import MIXED_KINDS, bad_event, generate, publish
from stream.app.scorer import start_scorer
from stream.config import load_settings
from stream.errors import ConfigError
from stream.pipeline.trigger import REAL_TIME_DEFAULT_INTERVAL, parse_trigger
from tests.helpers import consume

pytestmark = pytest.mark.integration


def _settings(kafka_bootstrap, topics, tmp_path):
    inp, out, dlq = topics
    return load_settings(
        {
            "bootstrap_servers": kafka_bootstrap,
            "input_topic": inp,
            "output_topic": out,
            "dlq_topic": dlq,
            "checkpoint_dir": str(tmp_path / "ck"),
            "trigger": "real-time=5s",
        }
    )


def test_real_time_mode_scores_and_reconciles(spark, model, kafka_bootstrap, make_topics, tmp_path):
    # the session's Spark is local[2]: two input partitions, one task slot each
    settings = _settings(kafka_bootstrap, make_topics("rt-in", "rt-out", "rt-dlq", partitions=2), tmp_path)
    query = start_scorer(spark, settings, model)
    try:
        valid = list(generate(500, "synthetic", settings, seed=31))
        bad = [bad_event(MIXED_KINDS[i % len(MIXED_KINDS)], i) for i in range(26)]
        publish(iter(valid + bad), len(valid) + len(bad), settings, progress=False)
        preds = consume(settings.bootstrap_servers, settings.output_topic, lambda r: len(r) >= 500, 120)
        dead = consume(settings.bootstrap_servers, settings.dlq_topic, lambda r: len(r) >= 26, 60)
        assert query.isActive and query.exception() is None
    finally:
        stop_gracefully(query, real_time=True)
    ids = Counter(json.loads(m.value())["event_id"] for m in preds)
    assert set(ids) == {json.loads(e.value)["event_id"] for e in valid}
    codes = Counter(json.loads(m.value())["error_code"] for m in dead)
    assert codes == Counter(e.expected_code for e in bad)


def test_real_time_mode_refuses_too_few_task_slots(spark, model, kafka_bootstrap, make_topics, tmp_path):
    settings = _settings(kafka_bootstrap, make_topics("rt3-in", "rt3-out", "rt3-dlq", partitions=3), tmp_path)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="needs at least one task slot per input partition"):
        start_scorer(spark, settings, model)
    assert time.monotonic() - started < 60
    assert not any(q.isActive for q in spark.streams.active)


def test_a_restart_inside_the_default_checkpoint_interval_writes_it_again_and_loses_nothing(
    spark, model, kafka_bootstrap, make_topics, tmp_path
):
    """The default real-time interval is long (minutes): a stop inside it replays the whole interval."""
    settings = _settings(kafka_bootstrap, make_topics("rtr-in", "rtr-out", "rtr-dlq", partitions=2), tmp_path)
    settings = dataclasses.replace(settings, trigger="real-time")  # the default interval
    assert parse_trigger(settings.trigger) == {"realTime": REAL_TIME_DEFAULT_INTERVAL}
    events = list(generate(300, "synthetic", settings, seed=37))
    expected = {json.loads(e.value)["event_id"] for e in events}
    query = start_scorer(spark, settings, model)
    try:
        publish(iter(events), len(events), settings, progress=False)
        consume(settings.bootstrap_servers, settings.output_topic, lambda r: len(r) >= 300, 120)
    finally:
        stop_gracefully(query, real_time=True)  # well inside the interval: nothing was checkpointed
    query = start_scorer(spark, settings, model)
    try:
        records = consume(settings.bootstrap_servers, settings.output_topic, lambda r: len(r) >= 600, 120)
    finally:
        stop_gracefully(query, real_time=True)
    ids = Counter(json.loads(m.value())["event_id"] for m in records)
    assert set(ids) == expected, "nothing lost"
    assert set(ids.values()) == {2}, "every event of the interval was written again after the restart"
