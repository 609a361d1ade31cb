"""Publish clinicians' outcomes for the predictions already on the output topic (``heartrisk outcomes``).

Each prediction's outcome is the data set's true label when its patient is one
of the Cleveland patients (``cleveland-001`` ..., and their replays), with the
patient's sex and age, so the accuracy the feedback query reports, overall and
per subgroup, can be checked; otherwise it is drawn with
the prediction's own probability (a well-calibrated model's expected outcome).
``--unknown N`` adds outcomes for event ids never scored; ``--late N`` confirms
N outcomes further in the past than the feedback bound: both must come out as
unmatched. ``--share`` leaves some predictions without an outcome, as in life.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from stream.app.produce import Event, publish
from stream.app.tail import record_decoder
from stream.config import Settings
from stream.local.topics import end_offsets
from stream.model.dataset import read_csv


def read_predictions(settings: Settings, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Every prediction on the output topic now (up to its end offsets at the call)."""
    ends = end_offsets(settings.kafka_client_config(), settings.output_topic)
    consumer = Consumer(settings.kafka_client_config(**{
        "group.id": f"heartrisk-outcomes-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
    }))
    consumer.assign([TopicPartition(settings.output_topic, p, 0) for p, end in ends.items() if end > 0])
    decode = record_decoder(settings)
    out: list[dict[str, Any]] = []
    left = {p: end for p, end in ends.items() if end > 0}
    deadline = time.monotonic() + timeout_s
    try:
        while left and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            part, offset = int(msg.partition() or 0), int(msg.offset() or 0)
            if offset + 1 >= left.get(part, 0):
                left.pop(part, None)
            rec = decode(msg.value() or b"", settings.output_topic)
            if rec.get("event_id"):
                out.append(rec)
    finally:
        consumer.close()
    return out


def outcome_events(
    settings: Settings, preds: list[dict[str, Any]], share: float = 1.0, unknown: int = 0, late: int = 0,
    seed: int = 7,
) -> Iterator[Event]:
    """One outcome per chosen prediction (true label or drawn), then the unknown and the late ones."""
    rng = random.Random(seed)
    rows = {r["patient_id"]: r for r in read_csv(settings.path(settings.data_file))}
    now_ms = int(time.time() * 1000)

    def event(event_id: str, patient: str, outcome: int, at_ms: int, row: dict[str, Any] | None = None) -> Event:
        body = {"event_id": event_id, "patient_id": patient, "outcome": outcome, "confirmed_at": at_ms,
                "source": "heartrisk-outcomes"}
        if row is not None:  # the subgroup the model card reports on
            body.update(Sex=row["Sex"], Age=row["Age"])
        return Event(patient.encode(), json.dumps(body).encode())

    # the same choice on every run over the same predictions
    ordered = sorted(preds, key=lambda p: (str(p.get("patient_id", "")), str(p["event_id"])))
    chosen = [p for p in ordered if rng.random() < share]
    for p in chosen[late:]:
        row = rows.get(str(p.get("patient_id", "")).split("-r")[0])
        y = (1 if row["disease"] == "Yes" else 0) if row else int(rng.random() < float(p["probability"]))
        yield event(p["event_id"], str(p.get("patient_id", "")), y, now_ms, row)
    for p in chosen[:late]:
        old = now_ms - int(2 * settings.feedback_bound * 1000)
        yield event(p["event_id"], str(p.get("patient_id", "")), 1, old)
    for i in range(unknown):
        yield event(f"never-scored-{seed}-{i}", f"unknown-{i}", i % 2, now_ms)


def publish_outcomes(settings: Settings, **kwargs: Any) -> tuple[int, int]:
    """Read the predictions, publish their outcomes; return (predictions seen, outcomes published)."""
    preds = read_predictions(settings)
    events = list(outcome_events(settings, preds, **kwargs))
    n = publish(iter(events), len(events), settings, topic=settings.outcomes_topic, progress=False)
    return len(preds), n
