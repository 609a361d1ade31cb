"""Source: the Kafka topic of patient events, as raw bytes with their coordinates."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from stream.config import Settings

RAW_COLUMNS = ("key", "value", "topic", "partition", "offset", "timestamp")


def read_events(spark: SparkSession, settings: Settings) -> DataFrame:
    """A streaming DataFrame of the input topic: key, value, topic, partition, offset, timestamp."""
    reader = (
        spark.readStream.format("kafka")
        .options(**settings.spark_kafka_options())
        .option("subscribe", settings.input_topic)
        .option("startingOffsets", settings.starting_offsets)
        .option("maxOffsetsPerTrigger", str(settings.max_offsets_per_trigger))
        .option("failOnDataLoss", "true")
    )
    return reader.load().select(*RAW_COLUMNS)
