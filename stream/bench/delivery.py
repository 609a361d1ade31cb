"""The cost of ``--delivery exactly-once``: throughput and latency beside at-least-once, in the same run.

Latency here is what an alerting consumer sees: a ``read_committed`` consumer notes the wall-clock
time each prediction reaches it, minus the input record's timestamp (the prediction's
``event_time``). An exactly-once prediction becomes visible only when its batch's transaction
commits, so the output record's own timestamp (what the latency scenario uses) would flatter it;
both modes are measured this way here, so the two columns compare.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer

from stream.bench.events import paced
from stream.bench.measure import iso_ms, percentiles, say
from stream.local.topics import COMMIT_TOPIC_CONFIG, ensure_topics

MODES = ("at-least-once", "exactly-once")


class Arrivals(threading.Thread):
    """Reads a topic ``read_committed`` from the start; per prediction: arrival time minus event time (ms)."""

    def __init__(self, client_config: dict[str, Any], topic: str, after_ms: float) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({**client_config, "group.id": f"bench-{uuid.uuid4().hex}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                  "isolation.level": "read_committed", "fetch.wait.max.ms": 10})
        self.consumer.subscribe([topic])
        self.after_ms = after_ms
        self.count = 0
        self.latencies_ms: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.is_set():
                for m in self.consumer.consume(num_messages=10_000, timeout=0.2):
                    if m.error():
                        continue
                    now_ms = time.time() * 1000
                    self.count += 1
                    event_ms = iso_ms(json.loads(m.value() or b"{}")["event_time"])
                    if event_ms >= self.after_ms:
                        self.latencies_ms.append(now_ms - event_ms)
        finally:
            self.consumer.close()


def delivery_cost(b: Any, at_least_once: dict[str, Any]) -> list[dict[str, Any]]:
    """Per mode: the drain's throughput, then latency at the plan's first micro-batch rate.

    ``b`` is the run's ``Bench`` (its broker, plan and scorer helpers); ``at_least_once`` its throughput
    run, which exactly-once repeats with the same events, partitions and batch cap. Throughput is the
    events over the time the scorer spent in its batches (their ``triggerExecution``, which holds the
    sink's writes and, for exactly-once, the commit): an exactly-once record's timestamp is its send on
    the driver, after its partition was computed, so the first-to-last timestamp span would flatter it.
    """
    commits = f"bench-commits-{uuid.uuid4().hex[:6]}"
    ensure_topics(b.s.bootstrap_servers, [commits], 1, topic_config=COMMIT_TOPIC_CONFIG)
    rows = []
    for mode in MODES:
        env = {"HEARTRISK_DELIVERY": mode, "HEARTRISK_COMMIT_TOPIC": commits}
        thr = at_least_once
        if mode != "at-least-once":
            n = at_least_once["events"]
            say(f"delivery {mode}: drain {n} events")
            thr = b.drain_throughput(f"eo-{mode}", n, at_least_once["partitions"],
                                     at_least_once["max_offsets_per_trigger"], extra_env=env)
            thr.pop("_topics")
        rate = b.plan.rates_micro_batch[0]
        say(f"delivery {mode}: latency at {rate}/s, {b.plan.warmup_s:.0f}s warm-up + {b.plan.measure_s:.0f}s")
        t = b.topics(f"eo-lat-{mode}", 3)
        sc = b.scorer(t, f"eo-lat-{mode}", "processing-time=0", 50_000, extra_env=env)
        start_ms = time.time() * 1000
        arrivals = Arrivals(b.s.kafka_client_config(), t[1], start_ms + b.plan.warmup_s * 1000)
        arrivals.start()
        sent = 0
        try:
            for progress in paced(b.s, t[0], rate, b.plan.warmup_s + b.plan.measure_s, b.factory, b.next_event):
                sent = progress
            b.next_event += sent
            deadline = time.monotonic() + 300  # until the read_committed consumer has every prediction
            while arrivals.count < sent and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            arrivals.done.set()
            arrivals.join(30)
            b.stop_scorer(sc)
        rows.append({
            "delivery": mode,
            "drain_events": thr["events"],
            "events_per_second": round(thr["events"] / thr["batch_seconds"], 1) if thr["batch_seconds"] else 0.0,
            "batches": thr["batches"],
            "timestamp_span_events_per_second": thr["events_per_second"],
            "throughput_completed": thr["completed"],
            "rate": rate,
            "events": sent,
            "arrived": arrivals.count,
            "visible_latency_ms": {k: round(v, 1) for k, v in percentiles(arrivals.latencies_ms).items()},
        })
    base = rows[0]["events_per_second"] or 1.0
    for row in rows:
        row["throughput_vs_at_least_once"] = round(row["events_per_second"] / base, 3)
    return rows
