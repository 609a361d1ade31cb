"""Sink: the Kafka sink for predictions and dead letters, with its checkpoint.

``--delivery at-least-once`` (the default) is Spark's streaming Kafka sink. ``exactly-once``
hands each micro-batch to the project's JVM sink (``io.heartrisk.spark.TransactionalSink``),
which writes it in one Kafka transaction with a commit marker, and skips a replayed batch
that was already committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

from pyspark.sql import DataFrame
from pyspark.sql.streaming.readwriter import DataStreamWriter

from stream.config import Settings
from stream.pipeline.trigger import parse_trigger

logger = logging.getLogger(__name__)
QUERY_ID_PROPERTY = "sql.streaming.queryId"  # the local property Spark sets on a query's batches
MAX_TRANSACTION_TIMEOUT_MS = 900_000  # the broker's default transaction.max.timeout.ms


def kafka_sink_options(settings: Settings) -> dict[str, str]:
    """Options of the Kafka sink (the streaming query's, or a batch write's)."""
    return {
        # defaults a user's kafka.* options may override. A write counts once every in-sync
        # replica has it (min.insync.replicas of the topic), and a retried send is not
        # written twice: what a replicated cluster needs to lose nothing when a broker dies.
        "kafka.acks": "all",
        "kafka.enable.idempotence": "true",
        "kafka.max.request.size": str(2 * 1024 * 1024),
        "kafka.linger.ms": "5",
        "kafka.compression.type": "lz4",
        **settings.spark_kafka_options(),
    }


ASYNC_COMMIT_INTERVAL_MS = 0  # log every batch, off its critical path


def progress_options(settings: Settings) -> dict[str, str]:
    """Async progress tracking, where Spark allows it: the Kafka sink with a processing-time trigger.

    Each batch's offset and commit entries are then written by a background
    thread instead of before and after the batch, which takes two checkpoint
    writes off every batch's critical path. A graceful stop waits for the queued
    writes. After a crash the query restarts from the last entry that reached
    the checkpoint, so the batches not yet logged are written again
    (at-least-once, as before; never lost). Real-time mode refuses it in Spark
    4.2.
    """
    if (settings.progress_tracking != "async" or "processingTime" not in parse_trigger(settings.trigger)
            or settings.delivery == "exactly-once"):  # foreachBatch records its progress itself
        return {}
    return {
        "asyncProgressTrackingEnabled": "true",
        "asyncProgressTrackingCheckpointIntervalMs": str(ASYNC_COMMIT_INTERVAL_MS),
    }


def transactional_options(settings: Settings) -> dict[str, str]:
    """The exactly-once sink's Kafka client options (the sink's own, without Spark's ``kafka.`` prefix).

    A transaction stays open for one whole batch: its timeout is ``--broker-wait`` (at least 60 s, at most
    the broker's default cap of 15 min), unless ``HEARTRISK_KAFKA_JAVA_OPTIONS`` sets
    ``transaction.timeout.ms``.
    """
    wait_ms = int(settings.broker_wait * 1000)
    timeout = str(min(MAX_TRANSACTION_TIMEOUT_MS, max(60_000, wait_ms)))
    opts = {"kafka.transaction.timeout.ms": timeout, **kafka_sink_options(settings)}
    return {k.removeprefix("kafka."): v for k, v in opts.items()}


DeliveryCallback = Callable[[str], None]


class TransactionalBatches:
    """The ``foreachBatch`` function of ``--delivery exactly-once``: each batch to the JVM sink, whole.

    ``on_outcome`` hears ``committed``, ``skipped`` (already committed before a crash) or ``aborted``.
    """

    def __init__(self, settings: Settings, on_outcome: DeliveryCallback | None = None) -> None:
        self.settings = settings
        self.options = transactional_options(settings)
        self.on_outcome = on_outcome or (lambda _outcome: None)
        self.sinks: dict[str, Any] = {}  # query id -> its JVM sink (opened once: no per-batch Py4J calls for it)

    def _sink(self, spark: Any, query_id: str) -> Any:
        """The query's JVM sink; the first call per driver opens it, which fences a killed driver."""
        if query_id not in self.sinks:
            jvm = spark._jvm
            options = jvm.java.util.HashMap()
            for k, v in self.options.items():
                options.put(k, v)
            self.sinks[query_id] = jvm.io.heartrisk.spark.TransactionalSink.forQuery(
                query_id, self.settings.commit_topic, options)
        return self.sinks[query_id]

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        """Write one micro-batch in one transaction (or skip it); an error aborts it and fails the batch."""
        spark = batch.sparkSession
        query_id = spark.sparkContext.getLocalProperty(QUERY_ID_PROPERTY)
        if not query_id:
            msg = f"no {QUERY_ID_PROPERTY} on batch {batch_id}: the exactly-once sink runs inside a streaming query"
            raise RuntimeError(msg)
        sink = self._sink(spark, query_id)
        try:
            rows = sink.write(cast(Any, batch)._jdf, batch_id)
        except Exception:
            self.on_outcome("aborted")
            raise
        if rows < 0:
            logger.info('event="batch skipped, already committed" batch_id=%d query_id="%s"', batch_id, query_id)
            self.on_outcome("skipped")
        else:
            self.on_outcome("committed")


def write_predictions(df: DataFrame, settings: Settings,
                      on_outcome: DeliveryCallback | None = None) -> DataStreamWriter:
    """The configured (not yet started) Kafka writer; ``on_outcome`` hears each exactly-once transaction."""
    writer = df.writeStream.queryName(settings.query_name).outputMode("update")
    if settings.delivery == "exactly-once":
        writer = writer.foreachBatch(TransactionalBatches(settings, on_outcome))
    else:
        writer = writer.format("kafka").options(**kafka_sink_options(settings))
    return (
        writer.option("checkpointLocation", settings.checkpoint_location)
        .options(**progress_options(settings))
        .trigger(**cast(Any, parse_trigger(settings.trigger)))
    )
