"""``heartrisk replay --from-input``: a range of input records scored again, after a model fix.

``--partition P --offsets A-B`` names the range. Without ``--into``, the
records are published again to the input topic (or ``--to-topic``) with their
own headers plus ``heartrisk-replay-of`` and ``heartrisk-replayed-at``, and the
running scorer scores them with the model it serves now. With ``--into TOPIC``
a Spark batch job scores them at once, with the stream's own plan, into that
topic (dead letters to the usual dead-letter topic). Moving a stopped query
back (``heartrisk checkpoint reset``) is the other way to score a range again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stream.app.replay import Sender, read_ranges
from stream.config import Settings
from stream.errors import ConfigError
from stream.local.topics import watermarks


@dataclass(frozen=True)
class InputRange:
    """Input offsets to score again: one partition, ``first``..``last`` inclusive."""

    partition: int
    first: int
    last: int


def check_range(settings: Settings, rng: InputRange) -> None:
    """Refuse a range the input topic does not hold.

    Raises:
        ConfigError: no such partition, or offsets outside what the topic still holds.
    """
    marks = watermarks(settings.kafka_client_config(), settings.input_topic)
    if rng.partition not in marks:
        msg = f"--partition {rng.partition}: {settings.input_topic} has partitions {sorted(marks)}"
        raise ConfigError(msg)
    lo, hi = marks[rng.partition]
    if not lo <= rng.first <= rng.last < hi:
        msg = (
            f"--offsets {rng.first}-{rng.last}: partition {rng.partition} of {settings.input_topic} "
            f"holds offsets {lo}-{hi - 1}"
        )
        raise ConfigError(msg)


def republish_input(
    settings: Settings, rng: InputRange, to_topic: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Publish the range's records again (key, value and their own headers, plus the replay headers).

    The running scorer then scores them again, with the model it serves now.
    """
    check_range(settings, rng)
    target = to_topic or settings.input_topic
    total = rng.last - rng.first + 1
    sender = Sender(settings)
    now = str(int(time.time() * 1000)).encode()
    sent = 0

    def resend(msg: Any) -> None:
        nonlocal sent
        origin = f"{msg.topic()}/{msg.partition()}/{msg.offset()}".encode()
        sender.send(target, msg.key(), msg.value(),
                    [*(msg.headers() or []), ("heartrisk-replay-of", origin), ("heartrisk-replayed-at", now)])
        sent += 1
        if progress is not None:
            progress(sent, total)

    read_ranges(settings, settings.input_topic, {rng.partition: (rng.first, rng.last + 1)}, resend)
    sender.flush(f"republishing to {target}")
    return sent


def rescore_input(spark: Any, settings: Settings, model: Any, rng: InputRange, output_topic: str) -> int:
    """Score the range again with Spark, the stream's own plan, into ``output_topic`` (dead letters as usual).

    Returns the number of records written (predictions and dead letters).
    """
    import dataclasses

    from stream.pipeline.build import build_output
    from stream.pipeline.columns import RAW_COLUMNS
    from stream.pipeline.sink import kafka_sink_options

    if settings.input_format != "json" or settings.output_format != "json":
        msg = (
            "replay --from-input --into scores JSON in and out; for Avro, leave out --into: "
            "the records are published again and the running scorer scores them"
        )
        raise ConfigError(msg)
    check_range(settings, rng)
    topic = settings.input_topic
    raw = (
        spark.read.format("kafka").options(**settings.spark_kafka_options())
        .option("assign", json.dumps({topic: [rng.partition]}))
        .option("startingOffsets", json.dumps({topic: {str(rng.partition): rng.first}}))
        .option("endingOffsets", json.dumps({topic: {str(rng.partition): rng.last + 1}}))
        .load().select(*RAW_COLUMNS)
    )
    out = build_output(raw, model, dataclasses.replace(settings, output_topic=output_topic)).cache()
    try:
        written = out.count()
        out.write.format("kafka").options(**kafka_sink_options(settings)).save()
    finally:
        out.unpersist()
    return int(written)
