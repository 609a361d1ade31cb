"""A round trip through the real broker with confluent-kafka."""

from __future__ import annotations

from collections import defaultdict

import pytest
from confluent_kafka import Consumer, Producer

from tests.helpers import wait_for

pytestmark = pytest.mark.integration

N = 10_000


def test_10k_keyed_messages_round_trip_in_order_per_partition(kafka_bootstrap, make_topics):
    (topic,) = make_topics("roundtrip", partitions=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5, "enable.idempotence": True})
    errors: list[str] = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(str(err))

    for i in range(N):
        producer.produce(topic, key=f"patient-{i % 97}", value=f"{i}", on_delivery=on_delivery)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    assert errors == []

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"rt-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    received: dict[int, list[tuple[str, int]]] = defaultdict(list)
    count = 0

    def drain() -> bool:
        nonlocal count
        for msg in consumer.consume(num_messages=2000, timeout=0.5):
            assert msg.error() is None, msg.error()
            received[msg.partition()].append((msg.key().decode(), int(msg.value())))
            count += 1
        return count >= N

    try:
        wait_for(drain, timeout_s=60, interval_s=0, what=f"{N} messages")
    finally:
        consumer.close()

    values = sorted(v for part in received.values() for _, v in part)
    assert values == list(range(N)), "every message is received exactly once"
    assert len(received) == 3, "keys spread over all three partitions"
    key_partition: dict[str, int] = {}
    for partition, msgs in received.items():
        seq = [v for _, v in msgs]
        assert seq == sorted(seq), f"order kept in partition {partition}"
        for key, _ in msgs:
            assert key_partition.setdefault(key, partition) == partition, "a key stays on one partition"
