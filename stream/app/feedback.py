"""The feedback query as a process (``heartrisk feedback``): outcomes joined to predictions, figures out.

A query of its own (name ``<query name>-feedback``, its own checkpoint and
progress file), so it never slows or endangers the scorer, and it can be
restarted on its own. It creates the outcome and quality topics if missing. The
join's state lives in RocksDB unless ``--spark-conf`` names another store.
SIGINT/SIGTERM let the batch in flight finish first.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import Producer
from pyspark.sql import SparkSession

from stream.app.ends import query_failure
from stream.app.graceful import stop_gracefully
from stream.app.lifecycle import await_stop_or_end, stop_on_signals
from stream.app.scorer import check_broker
from stream.config import Settings
from stream.local.topics import ensure_topics
from stream.model.evaluation import AGE_BANDS
from stream.quality.join import labelled
from stream.quality.read import outcomes, predictions, read_topic
from stream.quality.record import FeedbackRecorder

logger = logging.getLogger(__name__)

TRIGGER = "1 second"
STATE_STORE = "spark.sql.streaming.stateStore.providerClass"
ROCKSDB = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"


def with_rocksdb(settings: Settings) -> Settings:
    """RocksDB for the join's state unless the user chose a store: a week of predictions is too much for the heap.

    ``heartrisk bench --feedback-state`` measured it (see bench/results).
    """
    import dataclasses

    return dataclasses.replace(settings, spark_conf={STATE_STORE: ROCKSDB, **settings.spark_conf})


def start_feedback(spark: SparkSession, settings: Settings) -> tuple[Any, FeedbackRecorder]:
    """Start the feedback query; return it and its recorder."""
    fs = settings.feedback()
    ensure_topics(settings.bootstrap_servers, [settings.outcomes_topic, settings.quality_topic], settings.partitions,
                  dict(settings.kafka_options))
    producer = Producer(settings.kafka_client_config(**{"enable.idempotence": True}))

    def publish(value: bytes) -> None:
        producer.produce(settings.quality_topic, key=fs.query_name.encode(), value=value)
        producer.flush(30)

    recorder = FeedbackRecorder(fs.progress_path, fs.query_name, settings.feedback_window, publish)
    spark.streams.addListener(recorder)
    joined = labelled(
        outcomes(read_topic(spark, settings, settings.outcomes_topic), AGE_BANDS),
        predictions(read_topic(spark, settings, settings.output_topic), settings.output_format),
        settings.feedback_bound,
    )
    query = (
        joined.writeStream.queryName(fs.query_name).option("checkpointLocation", fs.checkpoint_location)
        .trigger(processingTime=TRIGGER).foreachBatch(recorder.record_batch).start()
    )
    logger.info(
        'event="feedback started" query="%s" outcomes="%s" predictions="%s" bound_s=%.0f checkpoint="%s"',
        fs.query_name, settings.outcomes_topic, settings.output_topic, settings.feedback_bound,
        fs.checkpoint_location,
    )
    return query, recorder


def run_feedback(settings: Settings) -> int:
    """The ``heartrisk feedback`` command: run until stopped by a signal or a failure."""
    from stream.session import get_spark

    check_broker(settings)
    settings = with_rocksdb(settings)
    spark = get_spark(settings, f"heartrisk-{settings.feedback().query_name}")
    stop = threading.Event()
    try:
        with stop_on_signals(stop):
            query, _ = start_feedback(spark, settings)
            await_stop_or_end(query, stop)
            if stop.is_set() and query.isActive:
                stop_gracefully(query)
            failure = query_failure(query.exception(), stop.is_set(), settings)
            if failure:
                raise failure
            return 0
    finally:
        spark.stop()
