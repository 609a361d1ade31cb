"""The local Kafka's layout (pure units; the brokers themselves run in tests/integration/test_kafka_cluster.py)."""

from __future__ import annotations

import pytest

from stream.config import load_settings
from stream.errors import BrokerError, ConfigError
from stream.local.kafka_cluster import LocalKafka, recorded_size
from stream.local.topics import replication_for


def _settings(tmp_path, **extra):
    return load_settings({"kafka_port": 19092, "kafka_controller_port": 19093,
                          "kafka_state_dir": str(tmp_path), **extra}, environ={})


def test_one_broker_keeps_the_single_node_layout(tmp_path):
    k = LocalKafka.from_settings(_settings(tmp_path))
    (node,) = k.nodes
    assert (k.size, k.bootstrap, node.state_dir, node.node_id) == (1, "localhost:19092", tmp_path, 1)
    props = node.server_properties()
    assert "controller.quorum.voters=1@localhost:19093" in props
    assert "default.replication.factor=1" in props and "min.insync.replicas=1" in props


def test_three_brokers_share_one_quorum_and_replicate_three_ways(tmp_path):
    k = LocalKafka.from_settings(_settings(tmp_path), brokers=3)
    assert k.bootstrap == "localhost:19092,localhost:19094,localhost:19096"
    assert [n.state_dir for n in k.nodes] == [tmp_path / "cluster-3" / f"node-{i}" for i in (1, 2, 3)]
    for node in k.nodes:
        props = node.server_properties().splitlines()
        assert f"node.id={node.node_id}" in props
        assert "controller.quorum.voters=1@localhost:19093,2@localhost:19095,3@localhost:19097" in props
        assert {"default.replication.factor=3", "min.insync.replicas=2", "offsets.topic.replication.factor=3",
                "transaction.state.log.replication.factor=3", "transaction.state.log.min.isr=2"} <= set(props)
    with pytest.raises(BrokerError, match="no broker 4: this local Kafka has brokers 1..3"):
        k.node(4)


def test_down_and_status_follow_the_size_last_started(tmp_path):
    assert recorded_size(tmp_path) is None
    (tmp_path / "brokers").write_text("3\n")
    assert LocalKafka.from_settings(_settings(tmp_path)).size == 3
    assert LocalKafka.from_settings(_settings(tmp_path), brokers=1).size == 1, "an explicit --brokers wins"


def test_bad_sizes_and_colliding_ports_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="--brokers must be at least 1"):
        LocalKafka.from_settings(_settings(tmp_path), brokers=0)
    k = LocalKafka.from_settings(_settings(tmp_path, kafka_controller_port=19094), brokers=3)
    with pytest.raises(BrokerError, match="ports collide .*HEARTRISK_KAFKA_CONTROLLER_PORT"):
        k.up()
    assert not list(tmp_path.glob("cluster-3/node-*/broker.pid")), "nothing started"


@pytest.mark.parametrize(("brokers", "expected"), [(1, (1, "1")), (2, (2, "1")), (3, (3, "2")), (7, (3, "2"))])
def test_new_topics_are_replicated_as_the_cluster_allows(brokers, expected):
    rf, config = replication_for(brokers)
    assert (rf, config["min.insync.replicas"]) == expected
