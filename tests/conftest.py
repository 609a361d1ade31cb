"""Shared fixtures. Kafka for tests comes down a ladder:

1. ``KAFKA_BOOTSTRAP_SERVERS``, when set: an existing cluster;
2. testcontainers' Kafka module, when a Docker engine answers;
3. the project's own local KRaft broker (``stream.local.broker``), on free ports in a temp dir.

The broker is session-scoped; each test makes its own uuid-named topics.

The schema registry: ``HEARTRISK_TEST_SCHEMA_REGISTRY_URL`` when set, else the
project's local Apicurio Registry (``stream.local.registry_server``) on a free port.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator

import pytest

from stream.config import PROJECT_ROOT
from stream.local.broker import LocalBroker
from stream.local.topics import ensure_topics
from tests.helpers import free_port, topic_name

logger = logging.getLogger(__name__)


def _docker_engine_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker for the whole session."""
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        logger.info("kafka rung 1: existing cluster %s", existing)
        yield existing
        return
    if _docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            logger.info("kafka rung 2: testcontainers")
            yield kafka.get_bootstrap_server()
        return
    broker = LocalBroker(
        state_dir=tmp_path_factory.mktemp("kafka"),
        port=free_port(),
        controller_port=free_port(),
        jvm_dir=PROJECT_ROOT / ".jvm",
        heap="768m",
    )
    logger.info("kafka rung 3: local KRaft broker on port %d", broker.port)
    broker.up()
    try:
        yield broker.bootstrap
    finally:
        broker.down()


@pytest.fixture(scope="session")
def schema_registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Confluent-compatible schema registry for the whole session."""
    existing = os.environ.get("HEARTRISK_TEST_SCHEMA_REGISTRY_URL")
    if existing:
        yield existing
        return
    from stream.local.registry_server import LocalRegistry

    registry = LocalRegistry(
        state_dir=tmp_path_factory.mktemp("registry"), port=free_port(), jvm_dir=PROJECT_ROOT / ".jvm"
    )
    registry.up()
    try:
        yield registry.url
    finally:
        registry.down()


@pytest.fixture
def make_topics(kafka_bootstrap: str) -> Callable[..., list[str]]:
    """Create fresh uuid-named topics: make_topics("in", "out", partitions=3)."""

    def _make(*prefixes: str, partitions: int = 3) -> list[str]:
        names = [topic_name(p) for p in prefixes]
        ensure_topics(kafka_bootstrap, names, partitions)
        return names

    return _make


@pytest.fixture(scope="session")
def spark():
    """A local SparkSession with the Kafka and Avro connectors, shared by the session."""
    from stream.config import load_settings
    from stream.session import get_spark

    session = get_spark(load_settings({"spark_master": "local[2]", "shuffle_partitions": 2}), "heartrisk-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def model(spark):
    """The committed current model."""
    from stream.model.artifact import load_model

    return load_model(PROJECT_ROOT / "models" / "heart_lr")
