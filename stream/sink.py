"""Sink: the Kafka sink for predictions and dead letters, with its checkpoint."""

from __future__ import annotations

import re
from typing import Any, cast

from pyspark.sql import DataFrame
from pyspark.sql.streaming import DataStreamWriter

from stream.config import Settings
from stream.errors import ConfigError

_DURATION = re.compile(r"^\s*\d+(\.\d+)?\s*(ms|s|sec|seconds?|m|min|minutes?)?\s*$")


def parse_trigger(text: str) -> dict[str, object]:
    """``processing-time=1s`` | ``available-now`` -> kwargs for ``DataStreamWriter.trigger``.

    Raises:
        ConfigError: any other value.
    """
    kind, _, arg = text.strip().partition("=")
    kind = kind.strip().lower()
    if kind == "processing-time" and _DURATION.match(arg or ""):
        unit_fixed = re.sub(r"(\d)\s*s$", r"\1 seconds", arg.strip())
        unit_fixed = re.sub(r"(\d)\s*ms$", r"\1 milliseconds", unit_fixed)
        unit_fixed = re.sub(r"(\d)\s*m(in)?$", r"\1 minutes", unit_fixed)
        if unit_fixed.replace(".", "").isdigit():
            unit_fixed += " seconds"
        return {"processingTime": unit_fixed}
    if kind == "available-now" and not arg:
        return {"availableNow": True}
    msg = f"trigger {text!r} is not valid: use processing-time=<duration> (e.g. 1s, 500ms) or available-now"
    raise ConfigError(msg)


def write_predictions(df: DataFrame, settings: Settings) -> DataStreamWriter:
    """The configured (not yet started) Kafka writer."""
    options = {
        # defaults a user's kafka.* options may override
        "kafka.max.request.size": str(2 * 1024 * 1024),
        "kafka.linger.ms": "5",
        "kafka.compression.type": "lz4",
        **settings.spark_kafka_options(),
        "checkpointLocation": settings.checkpoint_location,
    }
    return (
        df.writeStream.format("kafka")
        .queryName(settings.query_name)
        .outputMode("update")
        .options(**options)
        .trigger(**cast(Any, parse_trigger(settings.trigger)))
    )
