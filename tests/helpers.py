"""Test helpers: waiting with deadlines, free ports, topic names."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], timeout_s: float, interval_s: float = 0.2, what: str = "condition"
) -> T:
    """Poll until `condition()` returns a truthy value; fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}; last value: {last!r}")


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port nothing listens on right now, and never one this session handed out before.

    The kernel may give the same ephemeral port to two bind(0) calls in a row; two
    services told to listen on it (a broker's controller and a registry, say) would clash.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def topic_name(prefix: str) -> str:
    """A unique topic name for one test."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def consume(bootstrap: str, topic: str, until: Callable[[list], bool], timeout_s: float) -> list:
    """Read a topic from the beginning until `until(records)` holds; fail after the deadline.

    Returns confluent-kafka messages (key(), value(), headers(), partition(), offset()).
    """
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=5000, timeout=0.5):
                if msg.error() is None:
                    records.append(msg)
            if until(records):
                return records
    finally:
        consumer.close()
    raise AssertionError(f"timed out after {timeout_s:.0f}s reading {topic}: {len(records)} records")


def end_offsets_total(bootstrap: str, topic: str) -> int:
    """Sum of end offsets of a topic's partitions."""
    from stream.broker import describe_topics

    for t in describe_topics(bootstrap):
        if t.name == topic:
            return t.messages
    raise AssertionError(f"no topic {topic}")
