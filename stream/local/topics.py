"""Topic admin on any Kafka broker: create the missing topics, describe partitions and end offsets.

Used by the local broker (``heartrisk kafka up``), ``heartrisk kafka topics``
against any broker, the tests and the bench.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from stream.errors import BrokerError
from stream.local.processes import port_in_use

logger = logging.getLogger(__name__)


# --delivery exactly-once's commit markers: one small record per batch, compacted to each query's last.
# An hour's segments let the cleaner keep the topic small, so a scorer's start reads little of it.
COMMIT_TOPIC_CONFIG = {"cleanup.policy": "compact", "segment.ms": "3600000", "min.cleanable.dirty.ratio": "0.1"}


def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    partitions: int,
    extra_config: dict[str, str] | None = None,
    timeout_s: float = 30.0,
    topic_config: dict[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet (with ``topic_config``, e.g. compaction); return the names created.

    They are replicated as the cluster allows: 3 replicas with ``min.insync.replicas=2``
    on 3 or more brokers (a write then survives the loss of any one), else one per broker.
    """
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, **(extra_config or {})}
    admin = AdminClient(conf)
    wanted = list(dict.fromkeys(topics))
    if not wanted:
        return []
    md = admin.list_topics(timeout=timeout_s)
    missing = [t for t in wanted if t not in md.topics]
    created: list[str] = []
    if missing:
        rf, durability = replication_for(len(md.brokers))
        config = {**durability, **(topic_config or {})}
        futures = admin.create_topics(
            [NewTopic(t, num_partitions=partitions, replication_factor=rf, config=config) for t in missing],
            operation_timeout=timeout_s,
        )
        for name, fut in futures.items():
            try:
                fut.result(timeout=timeout_s)
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    msg = f"could not create topic {name!r}: {exc.args[0].str()}"
                    raise BrokerError(msg) from exc
    # Wait until the metadata shows every topic with its leaders.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = admin.list_topics(timeout=timeout_s).topics
        if all(
            t in now and now[t].partitions and not now[t].error
            and all(p.leader >= 0 and not p.error for p in now[t].partitions.values())
            for t in wanted
        ):
            break
        time.sleep(0.2)
    return created


def replication_for(brokers: int) -> tuple[int, dict[str, str]]:
    """(replication factor, topic config) for a new topic on a cluster of ``brokers``."""
    rf = max(1, min(3, brokers))
    return rf, {"min.insync.replicas": "2" if rf >= 3 else "1"}


def end_offsets(client_config: dict[str, Any], topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """The current end offset of each partition of one topic (on any broker).

    Raises:
        BrokerError: the broker kept failing for ``timeout_s``.
    """
    return {p: hi for p, (_lo, hi) in watermarks(client_config, topic, timeout_s).items()}


def watermarks(client_config: dict[str, Any], topic: str, timeout_s: float = 10.0) -> dict[int, tuple[int, int]]:
    """(first, end) offsets of each partition of one topic (on any broker).

    Raises:
        BrokerError: the broker kept failing for ``timeout_s``.
    """
    from confluent_kafka import Consumer

    consumer = Consumer({**client_config, "group.id": "heartrisk-offsets", "enable.auto.commit": False})
    try:
        parts = consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions
        return {p: _watermarks(consumer, topic, p, timeout_s) for p in sorted(parts)}
    finally:
        consumer.close()


def _watermarks(consumer: Any, topic: str, partition: int, timeout_s: float) -> tuple[int, int]:
    """A partition's (first, end) offsets; retries while a new broker is still electing leaders.

    Raises:
        BrokerError: the broker kept failing for ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
            return int(lo), int(hi)
        except KafkaException as exc:
            err = exc.args[0]
            if not err.retriable() and err.name() not in ("NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE"):
                msg = f"cannot read the offsets of {topic}[{partition}]: {err.str()}"
                raise BrokerError(msg) from exc
            if time.monotonic() >= deadline:
                msg = f"cannot read the offsets of {topic}[{partition}] within {timeout_s:.0f}s: {err.str()}"
                raise BrokerError(msg) from exc
            time.sleep(0.2)


@dataclass(frozen=True)
class TopicStatus:
    """One topic as `kafka status` shows it."""

    name: str
    partitions: int
    end_offsets: list[int]
    leaders: list[int] = dataclasses.field(default_factory=list)  # per partition; -1 = none
    in_sync: list[tuple[int, ...]] = dataclasses.field(default_factory=list)  # replicas in sync, per partition

    @property
    def messages(self) -> int:
        """Sum of the partitions' end offsets."""
        return sum(self.end_offsets)


def describe_topics(
    bootstrap: str, extra_config: dict[str, str] | None = None, timeout_s: float = 10.0
) -> list[TopicStatus]:
    """Topics (internal ones hidden) with partitions and end offsets.

    Raises:
        BrokerError: the broker does not answer.
    """
    from confluent_kafka import Consumer

    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, **(extra_config or {})}
    addresses = [a.strip().rpartition(":") for a in bootstrap.split(",")]
    if all(h in ("localhost", "127.0.0.1") and p.isdigit() and not port_in_use(int(p)) for h, _, p in addresses):
        msg = f"no Kafka broker answers at {bootstrap}: start one with `heartrisk kafka up`"
        raise BrokerError(msg)
    try:
        md = AdminClient(conf).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        msg = f"no Kafka broker answers at {bootstrap}: start one with `heartrisk kafka up`"
        raise BrokerError(msg) from exc
    consumer = Consumer({**conf, "group.id": "heartrisk-status", "enable.auto.commit": False})
    try:
        out = []
        for name in sorted(md.topics):
            if name.startswith("__"):
                continue
            meta = md.topics[name].partitions
            parts = sorted(meta)
            ends = [_watermarks(consumer, name, p, timeout_s)[1] for p in parts]
            out.append(TopicStatus(name, len(parts), ends, [meta[p].leader for p in parts],
                                   [tuple(sorted(meta[p].isrs)) for p in parts]))
        return out
    finally:
        consumer.close()


GROUPS_TOOL = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


def consumer_groups_tool(
    bootstrap: str, jvm_dir: Path, *args: str, timeout_s: float = 60.0, client_properties: str = ""
) -> tuple[int, str]:
    """Run the broker's own ``kafka-consumer-groups`` tool (from the Maven-resolved jars); (exit code, output).

    ``client_properties`` (Java client options, e.g. a secure cluster's) go in a private temporary file.

    Raises:
        SetupError: the broker's jars were never resolved (``make setup``).
    """
    import subprocess
    import tempfile

    from stream.local.jvm import classpath_jars

    cp = ":".join(str(j) for j in classpath_jars("kafka", jvm_dir))
    cmd = ["java", "-Xmx256m", "-cp", cp, GROUPS_TOOL, "--bootstrap-server", bootstrap, *args]
    with tempfile.NamedTemporaryFile("w", suffix=".properties") as props:  # created 0600
        if client_properties:
            props.write(client_properties)
            props.flush()
            cmd += ["--command-config", props.name]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    return done.returncode, done.stdout + done.stderr


def usable_broker_topics(bootstrap: str, client_config: dict[str, Any], timeout_s: float = 10.0) -> set[str]:
    """The topics of a broker that accepts these client options, or one clear line on why none can be used.

    Raises:
        BrokerError: nobody answers, the credentials were refused, TLS failed, or the broker wants TLS/SASL.
    """
    seen: list[Any] = []  # librdkafka's errors while trying: they say why (refused credentials, TLS, ...)
    conf: dict[str, Any] = {**client_config, "log_level": 0, "error_cb": seen.append}
    admin = AdminClient(conf)
    try:
        return set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        admin.poll(0.5)  # serves the error callbacks: why it failed
        raise BrokerError(broker_refusal(bootstrap, seen)) from exc


def broker_refusal(bootstrap: str, errors: list[Any]) -> str:
    """One line on why no broker could be used: nobody answers, the credentials were refused, or TLS failed."""
    from confluent_kafka import KafkaError

    codes = {e.code() for e in errors}
    text = " ".join(e.str() for e in errors).lower()
    if KafkaError._AUTHENTICATION in codes or "authentication failed" in text:
        return (f"the Kafka broker at {bootstrap} refused the credentials (authentication failed): check the user "
                "and password in HEARTRISK_KAFKA_SECURITY_FILE")
    if KafkaError._SSL in codes or "ssl" in text:
        return (f"the TLS handshake with the Kafka broker at {bootstrap} failed: check the CA and client certificate "
                "in HEARTRISK_KAFKA_SECURITY_FILE")
    if errors and "refused" not in text:
        return (f"the Kafka broker at {bootstrap} closed the connection: it may require TLS or SASL, which the "
                "client was not configured for (set HEARTRISK_KAFKA_SECURITY_FILE)")
    return (f"no Kafka broker answers at {bootstrap}: start one with `heartrisk kafka up` or set "
            "HEARTRISK_BOOTSTRAP_SERVERS")
