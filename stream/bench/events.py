"""Benchmark events: realistic synthetic patients as compact JSON (about 250 bytes each)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Protocol

from confluent_kafka import Producer

from stream.config import Settings
from stream.model.artifact import load_metadata
from stream.model.distribution import SyntheticPatients


class EventFactory:
    """Cycles a pool of synthetic patients, each event with a unique event_id.

    Events carry no ``event_time``, so the scorer uses the input record's Kafka
    timestamp and copies it into the prediction: latency is then exactly the
    output record's Kafka timestamp minus the input record's.
    """

    def __init__(self, settings: Settings, pool: int = 5000, seed: int = 13) -> None:
        synth = SyntheticPatients(load_metadata(settings.path(settings.model_dir))["training_distribution"], seed)
        self.pool = []
        for i in range(pool):
            p = synth.draw()
            for k in ("Blood_Pressure", "Cholesterol", "Heart_Rate"):
                p[k] = int(p[k])
            self.pool.append((f"p{seed}-{i:05d}", json.dumps(p, separators=(",", ":"))[1:]))
        self.run = uuid.uuid4().hex[:6]

    def event(self, i: int) -> tuple[bytes, bytes]:
        """Key and value of event number i."""
        pid, body = self.pool[i % len(self.pool)]
        value = f'{{"event_id":"{self.run}-{i:08d}","patient_id":"{pid}",{body}'
        return pid.encode(), value.encode()


def producer(settings: Settings) -> Producer:
    """A throughput-tuned producer."""
    return Producer(
        settings.kafka_client_config(
            **{
                "linger.ms": 10,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 2_000_000,
                "enable.idempotence": True,
            }
        )
    )


class Events(Protocol):
    """Anything that makes event number i (``EventFactory``, or ``stream.bench.formats.AvroEvents``)."""

    def event(self, i: int) -> tuple[bytes, bytes]:
        """Key and value of event number i."""
        ...


def preload(settings: Settings, topic: str, n: int, factory: Events, start: int = 0) -> float:
    """Publish n events as fast as possible (not timed by the benchmark); return seconds taken."""
    p = producer(settings)
    t0 = time.monotonic()
    for i in range(start, start + n):
        key, value = factory.event(i)
        while True:
            try:
                p.produce(topic, value=value, key=key)
                break
            except BufferError:
                p.poll(0.05)
        if i % 10_000 == 0:
            p.poll(0)
    left = p.flush(120)
    if left:
        msg = f"{left} preload events were not delivered"
        raise RuntimeError(msg)
    return time.monotonic() - t0


def paced(
    settings: Settings, topic: str, rate: float, seconds: float, factory: EventFactory, start: int
) -> Iterator[int]:
    """Publish at a fixed rate for a duration, in 5 ms slices; yields the number sent so far."""
    p = producer(settings)
    slice_s = 0.005
    t0 = time.monotonic()
    sent = 0
    i = start
    while True:
        elapsed = time.monotonic() - t0
        if elapsed >= seconds:
            break
        due = int(min(elapsed + slice_s, seconds) * rate)
        while sent < due:
            key, value = factory.event(i)
            try:
                p.produce(topic, value=value, key=key)
            except BufferError:
                p.poll(0.01)
                continue
            sent += 1
            i += 1
        p.poll(0)
        wait = t0 + (sent / rate) - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, slice_s))
        yield sent
    p.flush(60)
    yield sent
