"""The scorer's streaming query: checked, wired and started (``heartrisk score`` runs it via ``lifecycle``).

JSON and Avro input run the same kind of plan: one streaming query into the
Kafka sink. With Avro (or auto) input the plan decodes the writer schema ids
known when it is planned, and re-plans itself on the same checkpoint when a
new one appears (``stream.app.replanning``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from stream.app.checkpoint import check_fingerprint
from stream.app.lag_group import LagGroup
from stream.app.replanning import ReplanningQuery, pending_schema_ids
from stream.app.swap import Models, RestartableQuery
from stream.config import Settings
from stream.contract.avro import prediction_schema, reader_schema
from stream.contract.registry import SchemaRegistry, subject_for
from stream.contract.writer_schemas import Writer, WriterSchemas
from stream.errors import BrokerError, ConfigError, RegistryUnavailable
from stream.local.topics import end_offsets, usable_broker_topics
from stream.model.artifact import LoadedModel
from stream.monitor.drift import reference
from stream.monitor.listener import ProgressListener
from stream.monitor.observe import observer
from stream.pipeline.build import Tap, build_output
from stream.pipeline.sink import write_predictions
from stream.pipeline.source import read_events
from stream.pipeline.trigger import is_real_time

logger = logging.getLogger(__name__)

RunningQuery = StreamingQuery | ReplanningQuery | RestartableQuery


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


def check_broker(settings: Settings, extra_topics: tuple[str, ...] = ()) -> None:
    """Fail fast with one clear line when the broker or a topic (the three, and ``extra_topics``) is missing.

    Raises:
        BrokerError: no broker can be used (``usable_broker_topics``), or a topic does not exist.
    """
    topics = usable_broker_topics(settings.bootstrap_servers, settings.kafka_client_config())
    marker = (settings.commit_topic,) if settings.delivery == "exactly-once" else ()
    wanted = (settings.input_topic, settings.output_topic, settings.dlq_topic, *marker, *extra_topics)
    missing = [t for t in wanted if t not in topics]
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
    if settings.delivery == "exactly-once":
        msg = ("real-time mode writes through Spark's streaming Kafka sink, which is at-least-once: "
               "--delivery exactly-once needs a micro-batch trigger (e.g. --trigger processing-time=250ms)")
        raise ConfigError(msg)
    if settings.input_format != "json":
        msg = (
            f"real-time mode reads JSON only: input format {settings.input_format!r} needs a micro-batch "
            "trigger (e.g. --trigger processing-time=250ms), because a new Avro schema id re-plans the query, "
            "which in real-time mode would write a whole checkpoint interval again"
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


def drift_reference(settings: Settings, model: LoadedModel) -> dict[str, Any] | None:
    """What the drift counts compare with (the model's training distribution), or None when drift is off."""
    return reference(model.meta) if settings.drift == "on" else None


def warm_up(
    spark: SparkSession, settings: Settings, model: LoadedModel, writers: Mapping[int, Writer] | None = None,
    tap: Tap | None = None,
) -> float:
    """Run the scoring plan once before the stream starts, on an empty batch read of the input topic.

    Its generated code is the stream's own, so the first micro-batch finds it in
    Spark's codegen cache, and the planner's code paths are warm: the first batch
    took 1.7 s instead of 3.2 s (2,000 events, local[2]), for about 3.6 s spent here
    before the stream starts. So it helps the first events that arrive after the
    start, not a backlog that is already waiting (launch to first prediction was
    12.4-14.1 s either way). A warm-up on 2,000 synthetic rows cost 6 s and saved no more.
    Returns the seconds spent; a failure only logs a warning.
    """
    import time

    from stream.pipeline.columns import RAW_COLUMNS

    t0 = time.perf_counter()
    try:
        ends = end_offsets(settings.kafka_client_config(), settings.input_topic)
        at_end = json.dumps({settings.input_topic: {str(p): o for p, o in ends.items()}})
        empty = (
            spark.read.format("kafka").options(**settings.spark_kafka_options())
            .option("subscribe", settings.input_topic)
            .option("startingOffsets", at_end).option("endingOffsets", at_end).load()
            .select(*RAW_COLUMNS)
        )
        plan = build_output(empty, model, settings, tap=tap, writers=writers)
        plan.write.format("noop").mode("overwrite").save()
    except Exception as exc:  # an optimisation only: never keep the scorer from starting
        logger.warning('event="warm-up skipped" reason="%s"', str(exc).splitlines()[0][:300])
    seconds = time.perf_counter() - t0
    logger.info('event="warm-up done" seconds=%.2f', seconds)
    return seconds


def known_schema_ids(settings: Settings, registry: SchemaRegistry) -> list[int]:
    """The ids registered under the input topic's subject ([] if the registry is down).

    With the ids already waiting in the topic, the Avro query is planned for them from the start.
    """
    try:
        return registry.subject_schema_ids(subject_for(settings.input_topic))
    except RegistryUnavailable as exc:
        logger.warning('event="schema ids not listed at start" reason="%s"', str(exc)[:300])
        return []


def start_scorer(
    spark: SparkSession,
    settings: Settings,
    model: LoadedModel | Models,
    stop: threading.Event | None = None,
    warm: bool = False,
    on_listener: Callable[[ProgressListener], None] | None = None,
) -> RunningQuery:
    """Check the checkpoint (and real-time mode's needs), then start the streaming query.

    ``stop`` ends a registry pause early; ``warm`` runs the plan once on an empty
    batch first (``warm_up``). Given ``Models`` (a champion, maybe a challenger
    to shadow-score with) the query can be re-planned for new ones (``replan``:
    ``stream.app.swap``); ``on_listener`` receives the progress listener.
    """
    swappable = isinstance(model, Models)
    models = model if isinstance(model, Models) else Models(model)
    model = models.champion
    check_fingerprint(spark, settings)
    check_real_time(spark, settings)
    uses_registry = settings.input_format != "json" or settings.output_format == "avro"
    registry = SchemaRegistry.from_settings(settings) if uses_registry else None  # one client, one cache
    prediction_schema_id = register_prediction_schema(settings, registry)
    drift = drift_reference(settings, model)
    group_id = settings.lag_group_id
    lag_group = LagGroup(settings, group_id) if group_id else None
    listener = ProgressListener(
        settings.progress_path, settings.query_name, model.version,
        on_batch_committed=lag_group.commit if lag_group is not None else None,
        on_closed=lag_group.close if lag_group is not None else None,
        drift_reference=drift, drift_window_s=settings.drift_window,
    )
    if swappable:
        listener.set_models(models.describe())
    spark.streams.addListener(listener)
    if on_listener is not None:
        on_listener(listener)
    observe_batch = observer(drift)  # the stream's tap, and the warm-up's, so the warm-up plan is the stream's

    def plan(writers: Mapping[int, Writer] | None) -> StreamingQuery:
        raw = read_events(spark, settings)  # the models are read now: a re-plan picks up a swap
        out = build_output(raw, models.champion, settings, prediction_schema_id, tap=observe_batch, writers=writers,
                           challenger=models.challenger)
        return write_predictions(out, settings, on_outcome=listener.delivered).start()

    query: RunningQuery
    if settings.input_format == "json":
        if warm:
            warm_up(spark, settings, model, tap=observe_batch)
        query = RestartableQuery(lambda: plan(None)) if swappable else plan(None)
    else:
        assert registry is not None  # avro or auto input
        stop = stop or threading.Event()
        writers = WriterSchemas(
            registry, json.loads(reader_schema()), settings.registry_unavailable, stop,
            on_pause=listener.registry_paused, on_resume=listener.registry_resumed,
        )

        def learn() -> set[int]:
            return pending_schema_ids(spark, settings)

        known = set(known_schema_ids(settings, registry)) | learn()
        if warm:
            warm_up(spark, settings, model, writers.resolve(known), tap=observe_batch)
        query = ReplanningQuery(plan, writers, known, stop, learn=learn).start()
    logger.info(
        'event="scorer started" query="%s" id="%s" input="%s" format="%s/%s" checkpoint="%s" model="%s"',
        settings.query_name, query.id, settings.input_topic, settings.input_format, settings.output_format,
        settings.checkpoint_location, model.version,
    )
    return query
