"""Publish patient events: replay the data set, or synthesize realistic patients.

Synthetic patients are drawn field by field from the training distribution in
model.json (decile bins for numbers, frequencies for categories), so they look
like the Cleveland patients without copying any; drifted ones are synthetic
patients with fields shifted (blood pressure +25 mmHg by default), to see the
drift metrics move. ``bad_fraction`` mixes in
malformed events of every kind the scorer rejects, for demos and tests.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Producer

from stream.config import Settings
from stream.contract.schema import clinical_fields
from stream.errors import BrokerError, ConfigError
from stream.model.dataset import read_csv
from stream.model.distribution import SyntheticPatients

DEFAULT_SHIFT: Mapping[str, float] = {"Blood_Pressure": 25.0}


@dataclass(frozen=True)
class Event:
    """One message to publish; ``expected_code`` is None for a valid event."""

    key: bytes | None
    value: bytes | None
    expected_code: str | None = None


def event_json(patient: dict[str, Any], patient_id: str, event_id: str | None = None) -> dict[str, Any]:
    """An event object: envelope plus the 12 clinical fields."""
    body: dict[str, Any] = {
        "event_id": event_id or str(uuid.uuid4()),
        "patient_id": patient_id,
        "event_time": int(time.time() * 1000),
        "source": "heartrisk-produce",
    }
    for f in clinical_fields():
        body[f.name] = patient.get(f.name)
    return body


def dataset_patients(path: Path) -> list[dict[str, Any]]:
    """The data set's rows, clinical fields only, with their ids."""
    return read_csv(path)


def _valid(patient: dict[str, Any] | None = None) -> dict[str, Any]:
    base = {
        "Age": 54, "Blood_Pressure": 130, "Cholesterol": 242, "Heart_Rate": 150, "Sex": "Male",
        "angina": "Asymptomatic", "Glycemia": "Less than 120 mg/dl", "ECG": "Normal",
        "angina_after_sport": "No", "ecg_slope": "Rising", "fluoroscopy": 2, "thalassemia": "No",
    }
    return dict(patient or base)


def _json(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _with(**changes: Any) -> bytes:
    body = _valid()
    body.update(changes)
    return _json(body)


def _without(name: str) -> bytes:
    body = _valid()
    del body[name]
    return _json(body)


# kind -> (expected code, builder of (key, value) from an index)
BAD_EVENT_KINDS: dict[str, tuple[str, Callable[[int], tuple[bytes | None, bytes | None]]]] = {
    "tombstone": ("TOMBSTONE", lambda i: (f"bad-{i}".encode(), None)),
    "empty": ("EMPTY_VALUE", lambda i: (f"bad-{i}".encode(), b"")),
    "not_utf8": ("NOT_UTF8", lambda i: (f"bad-{i}".encode(), b'{"Age": "\xff\xfe"}')),
    "not_json": ("NOT_JSON", lambda i: (f"bad-{i}".encode(), b'{"Age": 54, "Sex": "Male"')),
    "not_object": ("NOT_AN_OBJECT", lambda i: (f"bad-{i}".encode(), b"[54, 130, 242]")),
    "missing_field": ("MISSING_FIELD", lambda i: (f"bad-{i}".encode(), _without("Cholesterol"))),
    "null_field": ("NULL_FIELD", lambda i: (f"bad-{i}".encode(), _with(Age=None))),
    "wrong_type": ("WRONG_TYPE", lambda i: (f"bad-{i}".encode(), _with(Heart_Rate="fast"))),
    "nan": ("NOT_FINITE", lambda i: (f"bad-{i}".encode(), _with(Cholesterol=float("nan")))),
    "infinite": ("NOT_FINITE", lambda i: (f"bad-{i}".encode(), _with(Blood_Pressure=float("inf")))),
    "out_of_range": ("OUT_OF_RANGE", lambda i: (f"bad-{i}".encode(), _with(Age=150))),
    "invalid_enum": ("INVALID_ENUM", lambda i: (f"bad-{i}".encode(), _with(Sex="M"))),
    "no_patient_id": ("NO_PATIENT_ID", lambda i: (None, _valid_bytes_without_id())),
    "bad_event_time": ("BAD_EVENT_TIME", lambda i: (f"bad-{i}".encode(), _with(event_time="yesterday"))),
    "too_large": ("MESSAGE_TOO_LARGE", lambda i: (f"bad-{i}".encode(), _with(note="x" * (1024 * 1024 + 10)))),
    "duplicate_field": ("DUPLICATE_FIELD", lambda i: (f"bad-{i}".encode(), _with()[:-1] + b', "Age": "x"}')),
    "epoch_seconds": ("EVENT_TIME_OUT_OF_WINDOW", lambda i: (f"bad-{i}".encode(), _with(event_time=1_764_151_200))),
    "key_not_utf8": ("KEY_NOT_UTF8", lambda i: (f"bad-{i}-\xff".encode("latin-1"), _with())),
}
# Kinds mixed in by --bad-fraction (an oversized message needs a broker that accepts it).
MIXED_KINDS = tuple(sorted(k for k in BAD_EVENT_KINDS if k != "too_large"))


def _valid_bytes_without_id() -> bytes:
    return _json(_valid())


def bad_event(kind: str, i: int) -> Event:
    """One malformed event of a kind from ``BAD_EVENT_KINDS``."""
    code, build = BAD_EVENT_KINDS[kind]
    key, value = build(i)
    return Event(key, value, code)


Encoder = Callable[[dict[str, Any]], bytes]


def avro_encoder(settings: Settings, version: int | None = None) -> Encoder:
    """Serialize events with confluent-kafka's ``AvroSerializer`` (Confluent framing, auto-registered).

    The schema is ``schemas/patient_event.v<version>.avsc`` (default: the newest),
    registered under the input topic's subject (TopicNameStrategy).

    Raises:
        ConfigError: no such schema version.
        RegistryUnavailable: the registry does not answer.
    """
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from stream.contract.avro import event_schema_versions, load_avsc
    from stream.contract.registry import SchemaRegistry, subject_for

    versions = event_schema_versions()
    version = version if version is not None else max(versions)
    if version not in versions:
        msg = f"no schemas/patient_event.v{version}.avsc; versions: {sorted(versions)}"
        raise ConfigError(msg)
    registry = SchemaRegistry.from_settings(settings)
    schema_str = json.dumps(load_avsc(versions[version]))
    registry.register(subject_for(settings.input_topic), schema_str)  # fails fast, with a clear message
    serializer = AvroSerializer(registry.client, schema_str, conf={"auto.register.schemas": True})
    ctx = SerializationContext(settings.input_topic, MessageField.VALUE)

    def encode(body: dict[str, Any]) -> bytes:
        out = serializer(body, ctx)
        assert out is not None
        return bytes(out)

    return encode


def avro_bad_event(kind: str, i: int, encode: Encoder) -> Event:
    """One malformed Avro event of a kind from ``AVRO_BAD_KINDS`` (as an ``avro``-format scorer sees it)."""
    from stream.contract.avro import frame, parse_header

    key = f"bad-{i}".encode()
    good = encode(_valid())
    schema_id, payload = parse_header(good)
    value = {
        "bad_magic": b"\x01" + good[1:],
        "short_header": good[:3],
        "truncated": good[: len(good) // 2],
        "unknown_schema_id": frame(0x7FFF0000 + i % 1000, payload),
        "out_of_range": encode({**_valid(), "Age": 150}),
    }[kind]
    return Event(key, value, AVRO_BAD_KINDS[kind])


AVRO_BAD_KINDS = {
    "bad_magic": "BAD_MAGIC_BYTE",
    "short_header": "CORRUPT_AVRO",
    "truncated": "CORRUPT_AVRO",
    "unknown_schema_id": "UNKNOWN_SCHEMA_ID",
    "out_of_range": "OUT_OF_RANGE",
}


def generate(
    count: int,
    source: str,
    settings: Settings,
    bad_fraction: float = 0.0,
    seed: int = 7,
    encoder: Encoder | None = None,
    shift: Mapping[str, float] | None = None,
) -> Iterator[Event]:
    """The events to publish: valid ones from the data set or the model's distribution, bad ones mixed in.

    With an ``encoder`` (``avro_encoder``) events are Avro, and the bad ones are Avro's kinds.
    Source ``drifted``: synthetic patients with numeric fields shifted by ``shift``
    (default: Blood_Pressure +25), kept within the contract's range.
    """
    rng = random.Random(seed)
    kinds = MIXED_KINDS if encoder is None else tuple(sorted(AVRO_BAD_KINDS))
    patients: Callable[[int], tuple[str, dict[str, Any]]]
    if source == "dataset":
        rows = dataset_patients(settings.path(settings.data_file))

        def patients(i: int) -> tuple[str, dict[str, Any]]:
            row = rows[i % len(rows)]
            suffix = "" if i < len(rows) else f"-r{i // len(rows)}"
            return row["patient_id"] + suffix, row

    else:
        from stream.model.artifact import load_metadata

        if source == "drifted":
            shift = shift or DEFAULT_SHIFT
        synth = SyntheticPatients(load_metadata(settings.path(settings.model_dir))["training_distribution"], seed,
                                  shift=shift)

        def patients(i: int) -> tuple[str, dict[str, Any]]:
            return f"{source}-{seed}-{i:08d}", synth.draw()

    for i in range(count):
        if bad_fraction > 0 and rng.random() < bad_fraction:
            kind = kinds[i % len(kinds)]
            yield bad_event(kind, i) if encoder is None else avro_bad_event(kind, i, encoder)
            continue
        pid, patient = patients(i)
        body = event_json(patient, pid, event_id=f"{pid}-{uuid.uuid4().hex[:12]}")
        yield Event(pid.encode(), _json(body) if encoder is None else encoder(body))


class Progress:
    """A periodic progress line on stderr: count, rate and ETA."""

    def __init__(self, total: int, label: str, every_s: float = 2.0, enabled: bool = True) -> None:
        self.total, self.label, self.every_s, self.enabled = total, label, every_s, enabled
        self.start = self.last = time.monotonic()

    def update(self, done: int, force: bool = False) -> None:
        """Print a line if it is time to."""
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < self.every_s):
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        print(
            f"{self.label}: {done}/{self.total} ({100 * done / max(self.total, 1):.0f}%) "
            f"{rate:,.0f}/s eta {eta:.0f}s",
            file=sys.stderr,
            flush=True,
        )


def publish(
    events: Iterator[Event],
    count: int,
    settings: Settings,
    topic: str | None = None,
    rate: float = 0.0,
    progress: bool = True,
) -> int:
    """Publish events (at ``rate`` per second, or as fast as possible); return how many were delivered.

    Raises:
        BrokerError: a message could not be delivered.
    """
    producer = Producer(
        settings.kafka_client_config(
            **{
                "linger.ms": 20,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "enable.idempotence": True,
                "message.max.bytes": 4 * 1024 * 1024,
            }
        )
    )
    failures: list[str] = []
    delivered = 0

    def on_delivery(err: KafkaError | None, _msg: Any) -> None:
        nonlocal delivered
        if err is not None:
            failures.append(err.str())
        else:
            delivered += 1

    target = topic or settings.input_topic
    bar = Progress(count, f"produce to {target}", enabled=progress)
    start = time.monotonic()
    for i, ev in enumerate(events):
        if rate > 0:
            due = start + i / rate
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        while True:
            try:
                producer.produce(target, key=ev.key, value=ev.value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        bar.update(i + 1)
    remaining = producer.flush(60)
    bar.update(count, force=True)
    if failures or remaining:
        msg = f"{len(failures) + remaining} of {count} events were not delivered to {target}: {failures[:3]}"
        raise BrokerError(msg)
    return delivered
