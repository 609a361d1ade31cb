"""Source: the Kafka topic of patient events, as raw bytes with their coordinates."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from stream.config import Settings
from stream.pipeline.columns import RAW_COLUMNS
from stream.pipeline.trigger import is_real_time


def read_events(spark: SparkSession, settings: Settings) -> DataFrame:
    """A streaming DataFrame of the input topic: key, value, topic, partition, offset, timestamp."""
    reader = (
        spark.readStream.format("kafka")
        .options(**settings.spark_kafka_options())
        .option("subscribe", settings.input_topic)
        .option("startingOffsets", settings.starting_offsets)
        .option("failOnDataLoss", "true")
        # an unanswering broker: an executor's fetch and the driver's offset lookup each wait --broker-wait once
        .option("kafkaConsumer.pollTimeoutMs", str(int(settings.broker_wait * 1000)))
        .option("fetchOffset.numRetries", "1")
    )
    if not is_real_time(settings.trigger):
        # real-time mode reads continuously and refuses a per-batch cap
        reader = reader.option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
    return reader.load().select(*RAW_COLUMNS)
