"""``--delivery exactly-once``: its settings, the sink's client options, its metrics and its error lines."""

from __future__ import annotations

import pytest

from stream.app.ends import query_failure
from stream.app.scorer import check_real_time
from stream.config import load_settings
from stream.errors import BrokerError, ConfigError
from stream.monitor.exporter import build_metrics
from stream.monitor.progress import empty_totals
from stream.pipeline.sink import progress_options, transactional_options


def test_at_least_once_stays_the_default_and_the_choice_is_checked():
    assert load_settings({}, environ={}).delivery == "at-least-once"
    s = load_settings({}, environ={"HEARTRISK_DELIVERY": "exactly-once", "HEARTRISK_COMMIT_TOPIC": "c"})
    assert (s.delivery, s.commit_topic) == ("exactly-once", "c")
    with pytest.raises(ConfigError, match="HEARTRISK_DELIVERY"):
        load_settings({}, environ={"HEARTRISK_DELIVERY": "twice"})


def test_the_transactional_sink_gets_the_kafka_options_without_sparks_prefix_and_a_batch_long_timeout():
    opts = transactional_options(load_settings({"bootstrap_servers": "b:9092", "broker_wait": 120.0}, environ={}))
    assert opts["bootstrap.servers"] == "b:9092"
    assert opts["transaction.timeout.ms"] == "120000"  # a batch may wait --broker-wait for the broker
    assert opts["acks"] == "all" and opts["enable.idempotence"] == "true"
    assert not [k for k in opts if k.startswith("kafka.")]
    short = transactional_options(load_settings({"broker_wait": 5.0}, environ={}))
    assert short["transaction.timeout.ms"] == "60000"  # never below a minute
    long = transactional_options(load_settings({"broker_wait": 3600.0}, environ={}))
    assert long["transaction.timeout.ms"] == "900000"  # the broker's default transaction.max.timeout.ms
    mine = transactional_options(load_settings({"kafka_java_options": {"transaction.timeout.ms": "300000"}},
                                               environ={}))
    assert mine["transaction.timeout.ms"] == "300000"


def test_exactly_once_records_progress_synchronously():
    base = {"trigger": "processing-time=1s", "progress_tracking": "async"}
    assert progress_options(load_settings(base, environ={}))  # Spark's Kafka sink: async
    assert progress_options(load_settings({**base, "delivery": "exactly-once"}, environ={})) == {}


def test_real_time_mode_refuses_exactly_once_with_what_to_do():
    s = load_settings({"trigger": "real-time", "delivery": "exactly-once"}, environ={})
    with pytest.raises(ConfigError, match="needs a micro-batch trigger"):
        check_real_time(None, s)  # type: ignore[arg-type]  # refused before Spark is asked anything


def test_a_fenced_scorer_exits_4_with_one_line():
    text = ("py4j.Py4JException: ...\nCaused by: org.apache.kafka.common.errors.ProducerFencedException: There is "
            "a newer producer with the same transactionalId")
    err = query_failure(RuntimeError(text), stopped=False, settings=load_settings({}, environ={}))
    assert isinstance(err, BrokerError) and err.exit_code == 4
    assert str(err).startswith("another scorer took over the checkpoint")
    assert "\n" not in str(err)


def test_transactions_and_skipped_batches_are_exported():
    totals = {**empty_totals(), "delivery": {"committed": 12, "aborted": 1, "skipped": 2}}
    progress = {"state": "active", "last_progress_at": 1e12, "totals": totals}
    samples = {(s.name, tuple(s.labels.items())): s.value for fam in build_metrics(progress, True)
               for s in fam.samples}
    assert samples[("heartrisk_transactions_total", (("outcome", "committed"),))] == 12
    assert samples[("heartrisk_transactions_total", (("outcome", "aborted"),))] == 1
    assert samples[("heartrisk_batches_skipped_committed_total", ())] == 2

