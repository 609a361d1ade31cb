"""Sink: the Kafka sink for predictions and dead letters, with its checkpoint."""

from __future__ import annotations

from typing import Any, cast

from pyspark.sql import DataFrame
from pyspark.sql.streaming.readwriter import DataStreamWriter

from stream.config import Settings
from stream.pipeline.trigger import parse_trigger


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
    if settings.progress_tracking != "async" or "processingTime" not in parse_trigger(settings.trigger):
        return {}
    return {
        "asyncProgressTrackingEnabled": "true",
        "asyncProgressTrackingCheckpointIntervalMs": str(ASYNC_COMMIT_INTERVAL_MS),
    }


def write_predictions(df: DataFrame, settings: Settings) -> DataStreamWriter:
    """The configured (not yet started) Kafka writer."""
    return (
        df.writeStream.format("kafka")
        .queryName(settings.query_name)
        .outputMode("update")
        .options(**kafka_sink_options(settings), checkpointLocation=settings.checkpoint_location)
        .options(**progress_options(settings))
        .trigger(**cast(Any, parse_trigger(settings.trigger)))
    )
