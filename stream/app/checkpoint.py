"""The checkpoint's guard: refuse to resume a checkpoint made elsewhere, a damaged one, or a forgotten one.

Beside Spark's own files, ``<checkpoint>/heartrisk-fingerprint.json`` records what the
query was first started against: its input topic (``Settings.fingerprint``) and the Kafka
cluster's id, so offsets are never read against another topic or cluster. It is written
atomically; an older one without the cluster id adopts it. Before Spark reads anything, the
files it reads at a restart (metadata, the last two offsets entries, the last commit) are
checked; and a new, empty checkpoint is refused when the query's lag group shows it had
already scored this topic (a deleted checkpoint would otherwise score it all again). Each
refusal is a ``CheckpointError`` (exit code 6) that says what to do, with the exact
``--starting-offsets`` that resumes where the query stopped (at most one batch again).
Works on any Hadoop path.
"""

from __future__ import annotations

import json
import logging

from pyspark.sql import SparkSession

from stream.app.checkpoint_log import COMMITS, OFFSETS, HadoopFiles, LogFiles, batch_ids, open_log
from stream.config import Settings
from stream.errors import CheckpointError

logger = logging.getLogger(__name__)

FINGERPRINT_FILE = "heartrisk-fingerprint.json"
CLUSTER_ID = "kafka_cluster_id"


def fingerprint_of(files: LogFiles) -> dict[str, str] | None:
    """The stored fingerprint of a checkpoint, or None when it has none yet.

    Raises:
        CheckpointError: the file is there but not a JSON object.
    """
    text = files.read(FINGERPRINT_FILE)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        msg = (f"checkpoint {files.location}: {FINGERPRINT_FILE} is damaged (not a JSON object). It records the "
               "input topic and Kafka cluster the checkpoint belongs to: if it is this query's, delete that one "
               "file and start again (it is written anew); if not, use another --query-name")
        raise CheckpointError(msg)
    return {str(k): str(v) for k, v in data.items()}


def read_fingerprint(spark: SparkSession, location: str) -> dict[str, str] | None:
    """The stored fingerprint (any Hadoop path), or None when the checkpoint has none yet."""
    return fingerprint_of(HadoopFiles(spark, location))


def damaged_entries(files: LogFiles) -> list[str]:
    """The files Spark reads at a restart that do not read: ``["offsets/12 (line 2 is not JSON)", ...]``."""
    out = []
    meta = files.read("metadata")
    if meta is not None and not _json_object(meta.strip()):
        out.append("metadata (not a JSON object)")
    for folder, ids in ((OFFSETS, batch_ids(files, OFFSETS)[-2:]), (COMMITS, batch_ids(files, COMMITS)[-1:])):
        for batch_id in ids:
            lines = (files.read(f"{folder}/{batch_id}") or "").splitlines()
            if len(lines) < 2 or lines[0].strip() != "v1":
                out.append(f"{folder}/{batch_id} (empty or truncated)")
            elif bad := [n for n, line in enumerate(lines[1:], start=2) if line.strip() and not _json(line)]:
                out.append(f"{folder}/{batch_id} (line {bad[0]} is not JSON)")
    return out


def _json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except json.JSONDecodeError:
        return False


def kafka_cluster_id(settings: Settings) -> str | None:
    """The id of the cluster the bootstrap servers belong to; None when the broker does not say."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        cluster_id = AdminClient(settings.kafka_client_config()).list_topics(timeout=15).cluster_id
    except KafkaException:
        return None
    return str(cluster_id) if cluster_id else None


def lag_group_offsets(settings: Settings) -> dict[int, int]:
    """Where the lag group says the query stands in its input topic (the end of its last committed batch)."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    group = settings.lag_group_id
    if group is None:
        return {}
    consumer = Consumer(settings.kafka_client_config(**{"group.id": group, "enable.auto.commit": False}))
    try:
        topic = consumer.list_topics(settings.input_topic, timeout=15).topics.get(settings.input_topic)
        parts = [TopicPartition(settings.input_topic, p) for p in sorted(topic.partitions)] if topic else []
        done = consumer.committed(parts, timeout=15) if parts else []
    except KafkaException:
        return {}
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in done if tp.offset >= 0}


def _resume(settings: Settings, offsets: dict[int, int]) -> str:
    """The words that resume a query at ``offsets``."""
    if not offsets:
        return ("start with --starting-offsets set to where it stopped (its lag group recorded nothing), or restore "
                "the folder from a backup")
    position = json.dumps({settings.input_topic: {str(p): o for p, o in sorted(offsets.items())}},
                          separators=(",", ":"))
    return (f"start with --starting-offsets '{position}' (where the lag group {settings.lag_group_id!r} says the "
            "query stopped: at most one batch is scored again)")


def check_fingerprint(spark: SparkSession, settings: Settings) -> None:
    """Refuse a checkpoint made for another input or cluster, a damaged one, or a forgotten one; then record.

    Raises:
        CheckpointError: as the module says, with what to do.
    """
    location = settings.checkpoint_location
    files = open_log(location, spark)
    damaged = damaged_entries(files)
    if damaged:
        msg = (f"checkpoint {location} is damaged: {', '.join(damaged)}; nothing was read or written. To go on: "
               f"move the folder aside, then {_resume(settings, lag_group_offsets(settings))}")
        raise CheckpointError(msg)
    stored = fingerprint_of(files)
    cluster = kafka_cluster_id(settings)
    wanted = {**settings.fingerprint(), **({CLUSTER_ID: cluster} if cluster else {})}
    if stored is None:
        if batch_ids(files, OFFSETS):
            logger.warning('event="checkpoint without fingerprint, adopting it" location="%s"', location)
        else:
            _refuse_forgotten(settings)
        files.write(FINGERPRINT_FILE, json.dumps(wanted, indent=2, sort_keys=True))
        return
    if stored.get("input_topic") != wanted["input_topic"]:
        msg = (f"checkpoint {location} was made for input topic {stored.get('input_topic')!r}, but this query "
               f"reads {wanted['input_topic']!r}. Use another --query-name or --checkpoint-dir for the new input, "
               "or delete the checkpoint to start over (the new query then starts from --starting-offsets)")
        raise CheckpointError(msg)
    if cluster and stored.get(CLUSTER_ID, cluster) != cluster:
        msg = (f"checkpoint {location} was made against Kafka cluster {stored[CLUSTER_ID]!r}, but "
               f"{settings.bootstrap_servers} is cluster {cluster!r}: its offsets mean nothing there. Point "
               "--bootstrap-servers at the first cluster, or use another --query-name or --checkpoint-dir here")
        raise CheckpointError(msg)
    if cluster and CLUSTER_ID not in stored:
        files.write(FINGERPRINT_FILE, json.dumps({**stored, CLUSTER_ID: cluster}, indent=2, sort_keys=True))


def _refuse_forgotten(settings: Settings) -> None:
    """A new checkpoint, but the lag group shows this query already scored the topic: refuse the default start."""
    if settings.starting_offsets != "earliest":
        return  # the operator said where to start
    offsets = lag_group_offsets(settings)
    if any(offsets.values()):
        msg = (f"checkpoint {settings.checkpoint_location} holds no batch, but the query's lag group "
               f"{settings.lag_group_id!r} shows it already scored {settings.input_topic} (a deleted checkpoint?). "
               f"To resume: {_resume(settings, offsets)}. To score the whole topic again: heartrisk kafka groups "
               f"--group {settings.lag_group_id} --delete, then start")
        raise CheckpointError(msg)
