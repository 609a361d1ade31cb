"""Batch scoring of files with the stream's own decode -> validate -> score -> encode code.

Each input row becomes the JSON text the stream would receive (JSON-lines files
are used as they are; CSV and Parquet rows are rendered with ``to_json``), so
predictions and rejects are exactly what the stream writes. Output:
``<out>/predictions/`` and ``<out>/rejects/``, JSON lines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from stream.config import Settings
from stream.errors import ConfigError
from stream.model.artifact import LoadedModel
from stream.pipeline.build import build_output
from stream.pipeline.decode import event_ddl

logger = logging.getLogger(__name__)

FileFormat = Literal["csv", "json", "parquet"]


@dataclass(frozen=True)
class BatchResult:
    """Counts of one batch run."""

    inputs: int
    predictions: int
    rejects: int
    output: Path


def detect_format(path: Path) -> FileFormat:
    """The format from the file (or first file's) extension.

    Raises:
        ConfigError: unknown or missing input.
    """
    if not path.exists():
        msg = f"input {path} does not exist"
        raise ConfigError(msg)
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(("_", ".")))
    for p in files:
        ext = p.suffix.lower().lstrip(".")
        if ext in ("csv",):
            return "csv"
        if ext in ("json", "jsonl", "ndjson"):
            return "json"
        if ext in ("parquet",):
            return "parquet"
    msg = f"cannot tell the format of {path}: name files *.csv, *.json(l) or *.parquet, or pass --format"
    raise ConfigError(msg)


def read_as_kafka_rows(spark: SparkSession, path: Path, fmt: FileFormat) -> DataFrame:
    """Input rows shaped like the Kafka source: key, value, topic, partition, offset, timestamp."""
    if fmt == "json":
        df = spark.read.text(str(path)).select(F.col("value").cast("binary").alias("value"))
        key = F.get_json_object(F.col("value").cast("string"), "$.patient_id")
    else:
        if fmt == "csv":
            raw = spark.read.options(header=True, enforceSchema=False).csv(str(path))
            wanted = {c.split("`")[1]: c.split("` ")[1] for c in event_ddl().split(", ")}
            raw = raw.select(
                *[F.col(f"`{c}`").cast(wanted[c]).alias(c) if c in wanted else F.col(f"`{c}`") for c in raw.columns]
            )
        else:
            raw = spark.read.parquet(str(path))
        df = raw.select(F.to_json(F.struct(*raw.columns), {"ignoreNullFields": "false"}).cast("binary").alias("value"))
        key = F.get_json_object(F.col("value").cast("string"), "$.patient_id")
    return df.select(
        key.cast("binary").alias("key"),
        F.col("value"),
        F.lit(f"file:{path.name}").alias("topic"),
        F.lit(0).alias("partition"),
        F.monotonically_increasing_id().alias("offset"),
        F.current_timestamp().alias("timestamp"),
    )


def score_files(
    spark: SparkSession,
    settings: Settings,
    model: LoadedModel,
    input_path: Path,
    output: Path,
    fmt: FileFormat | None = None,
) -> BatchResult:
    """Score files and write predictions and rejects.

    Raises:
        ConfigError: the output exists, or the input is unreadable.
    """
    if output.exists() and any(output.iterdir()):
        msg = f"output {output} exists and is not empty: choose another --output or delete it"
        raise ConfigError(msg)
    fmt = fmt or detect_format(input_path)
    raw = read_as_kafka_rows(spark, input_path, fmt).cache()
    out = build_output(raw, model, settings).cache()
    n_in = raw.count()
    preds = out.where(F.col("topic") == settings.output_topic)
    rejects = out.where(F.col("topic") == settings.dlq_topic)
    preds.select(F.col("value").cast("string")).write.text(str(output / "predictions"))
    rejects.select(F.col("value").cast("string")).write.text(str(output / "rejects"))
    result = BatchResult(n_in, preds.count(), rejects.count(), output)
    out.unpersist()
    raw.unpersist()
    logger.info(
        'event="batch scored" inputs=%d predictions=%d rejects=%d output="%s"',
        result.inputs, result.predictions, result.rejects, output,
    )
    return result
