"""The scorer query: source -> decode -> validate -> score -> encode -> sink.

``build_scores`` wires the steps on any DataFrame of raw Kafka rows, streaming
or batch, so ``score-batch`` and the tests share it with the stream.
``run_scorer`` starts the streaming query and stops it gracefully on
SIGINT/SIGTERM: it lets the micro-batch in flight finish and commit first, so a
graceful stop neither loses nor duplicates events.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Mapping
from types import FrameType
from typing import Any, cast

from pyspark.errors import StreamingQueryException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from stream.avro import prediction_schema, reader_schema
from stream.checkpoint import check_fingerprint
from stream.config import Settings
from stream.decode import decode_events
from stream.encode import encode_output, stamp_scored_at
from stream.errors import BrokerError, ConfigError, HeartriskError, StoppedWhilePaused
from stream.listener import ProgressListener, observe_batch
from stream.model import LoadedModel, load_metadata, load_model
from stream.per_batch import BatchScorer
from stream.registry import SchemaRegistry, subject_for
from stream.score import score_events
from stream.sink import is_real_time, write_per_batch, write_predictions
from stream.source import read_events
from stream.validate import validate_events
from stream.writer_schemas import Writer, WriterSchemas

logger = logging.getLogger(__name__)

STOP_WAIT_S = 120.0


def build_scores(
    raw: DataFrame,
    model: LoadedModel,
    input_format: str = "json",
    writers: Mapping[int, Writer] | None = None,
) -> DataFrame:
    """Decoded, validated and scored rows (every input row, good or bad)."""
    return score_events(validate_events(decode_events(raw, input_format, writers)), model)


def build_output(
    raw: DataFrame,
    model: LoadedModel,
    settings: Settings,
    observe: bool = False,
    prediction_schema_id: int | None = None,
) -> DataFrame:
    """Kafka records for every input row (JSON input); with ``observe``, per-batch counts for the listener."""
    scored = stamp_scored_at(build_scores(raw, model))
    if observe:
        scored = observe_batch(scored)
    return encode_output(scored, settings, prediction_schema_id)


def register_prediction_schema(settings: Settings, registry: SchemaRegistry | None = None) -> int | None:
    """With Avro output, register prediction.v1.avsc under ``<output topic>-value``; returns its id.

    Raises:
        RegistryUnavailable: the registry did not answer.
    """
    if settings.output_format != "avro":
        return None
    registry = registry or SchemaRegistry.from_settings(settings)
    subject = subject_for(settings.output_topic)
    schema_id = registry.register(subject, prediction_schema())
    logger.info('event="prediction schema registered" subject="%s" schema_id=%d', subject, schema_id)
    return schema_id


def check_broker(settings: Settings) -> None:
    """Fail fast with one clear line when the broker or the input topic is missing.

    Raises:
        BrokerError: no broker answers, or a topic does not exist.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka_client_config(**{"log_level": 0}))
    try:
        topics = admin.list_topics(timeout=10).topics
    except KafkaException as exc:
        msg = (
            f"no Kafka broker answers at {settings.bootstrap_servers}: start one with "
            "`heartrisk kafka up` or set HEARTRISK_BOOTSTRAP_SERVERS"
        )
        raise BrokerError(msg) from exc
    missing = [t for t in (settings.input_topic, settings.output_topic, settings.dlq_topic) if t not in topics]
    if missing:
        msg = (
            f"topics {missing} do not exist on {settings.bootstrap_servers}: "
            "create them with `heartrisk kafka topics`"
        )
        raise BrokerError(msg)


def check_real_time(spark: SparkSession, settings: Settings) -> None:
    """Real-time mode runs one long task per input partition: it needs a task slot for each.

    Raises:
        ConfigError: fewer task slots than input partitions.
    """
    if not is_real_time(settings.trigger):
        return
    if settings.input_format != "json":
        msg = (
            f"real-time mode reads JSON only: input format {settings.input_format!r} needs a micro-batch "
            "trigger (e.g. --trigger processing-time=1s), because new Avro schema ids are planned per batch"
        )
        raise ConfigError(msg)
    from confluent_kafka.admin import AdminClient

    md = AdminClient(settings.kafka_client_config()).list_topics(settings.input_topic, timeout=10)
    partitions = len(md.topics[settings.input_topic].partitions)
    slots = spark.sparkContext.defaultParallelism
    if slots < partitions:
        msg = (
            f"real-time mode needs at least one task slot per input partition: {settings.input_topic!r} has "
            f"{partitions} partitions but Spark has {slots} slots. Use --spark-master local[{partitions}] "
            "(or more executor cores), or a micro-batch trigger"
        )
        raise ConfigError(msg)


def start_scorer(
    spark: SparkSession, settings: Settings, model: LoadedModel, stop: threading.Event | None = None
) -> StreamingQuery:
    """Check the checkpoint (and real-time mode's needs), then start the streaming query.

    JSON input runs as one streaming plan into the Kafka sink. Avro or auto input
    runs per micro-batch (``stream.per_batch``), so that schema ids that appear
    mid-stream are planned without a restart. ``stop`` ends a registry pause early.
    """
    check_fingerprint(spark, settings)
    check_real_time(spark, settings)
    uses_registry = settings.input_format != "json" or settings.output_format == "avro"
    registry = SchemaRegistry.from_settings(settings) if uses_registry else None  # one client, one cache
    prediction_schema_id = register_prediction_schema(settings, registry)
    listener = ProgressListener(settings.progress_path, settings.query_name, model.version)
    spark.streams.addListener(listener)
    raw = read_events(spark, settings)
    if settings.input_format == "json":
        out = build_output(raw, model, settings, observe=True, prediction_schema_id=prediction_schema_id)
        query = write_predictions(out, settings).start()
    else:
        assert registry is not None  # avro or auto input
        writers = WriterSchemas(
            registry, json.loads(reader_schema()), settings.registry_unavailable, stop,
            on_pause=listener.registry_paused, on_resume=listener.registry_resumed,
        )
        scorer = BatchScorer(settings, model, writers, listener, prediction_schema_id)
        query = write_per_batch(raw, settings, scorer).start()
    logger.info(
        'event="scorer started" query="%s" id="%s" input="%s" format="%s/%s" checkpoint="%s" model="%s"',
        settings.query_name, query.id, settings.input_topic, settings.input_format, settings.output_format,
        settings.checkpoint_location, model.version,
    )
    return query


def stop_gracefully(query: StreamingQuery, timeout_s: float = STOP_WAIT_S, real_time: bool = False) -> None:
    """Wait for the micro-batch in flight to commit, then stop between batches.

    In real-time mode a "batch" is a long-running checkpoint interval that is
    always active, so there is nothing to wait for: the query stops at once and
    records since the last checkpoint may be written again on restart.
    """
    if real_time:
        query.stop()
        return
    deadline = time.monotonic() + timeout_s
    while query.isActive and time.monotonic() < deadline:
        status = query.status
        if not status.get("isTriggerActive", False):
            break
        time.sleep(0.02)
    query.stop()


def await_stop_or_end(query: StreamingQuery, stop: threading.Event) -> None:
    """Return when a stop is requested or the query ends (its error, if any, is read by the caller).

    ``awaitTermination`` raises when the query ends with an error, and a stop
    while paused on the registry ends it that way on purpose (so the paused
    batch is not committed); the caller decides what the end means.
    """
    while query.isActive and not stop.is_set():
        try:
            query.awaitTermination(cast(Any, 0.5))
        except StreamingQueryException:
            return


def failure_message(exc: BaseException | None, stopped: bool) -> str | None:
    """What to report for how the query ended: None for a clean end.

    A query ended by a stop request while paused on the registry is a clean stop;
    any other error is a failure, even if a stop was requested at the same time.
    """
    if exc is None or (stopped and StoppedWhilePaused.MARKER in str(exc)):
        return None
    return f"the streaming query failed: {str(exc).splitlines()[0][:500]}"


def run_scorer(settings: Settings) -> int:
    """The ``heartrisk score`` command: run until stopped by a signal or a failure."""
    from stream.session import get_spark

    check_broker(settings)
    meta = load_metadata(settings.path(settings.model_dir))  # fail fast, before Spark starts
    spark = get_spark(settings, f"heartrisk-{settings.query_name}")
    model = load_model(settings.path(settings.model_dir), meta)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info('event="stop requested" signal="%s"', signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        query = start_scorer(spark, settings, model, stop)
        await_stop_or_end(query, stop)
        if stop.is_set() and query.isActive:
            stop_gracefully(query, real_time=is_real_time(settings.trigger))
        failure = failure_message(query.exception(), stopped=stop.is_set())
        if failure:
            raise HeartriskError(failure)
        if stop.is_set():
            # a batch paused on the registry ends uncommitted: it is read again on restart
            logger.info('event="scorer stopped" query="%s"', settings.query_name)
        return 0
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        spark.stop()
