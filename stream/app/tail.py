"""The operator's view of the predictions or the dead letters: one line per record (JSON or Avro)."""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, TextIO

from confluent_kafka import Consumer, KafkaError, TopicPartition

from stream.config import Settings
from stream.contract.codes import CONTROL_CHARS

COLOURS = {"High": "\033[31m", "Medium": "\033[33m", "Low": "\033[32m", "DLQ": "\033[35m"}
RESET = "\033[0m"
_CONTROL = re.compile(CONTROL_CHARS)
PAYLOAD_FIELDS = ("key_base64", "value_base64")  # a dead letter's copy of the original bytes: patient data
HIDDEN = "(hidden: --show-payload)"


def escape_controls(text: str) -> str:
    """Control characters (C0, DEL, C1) as JSON-style u-escapes: a record never drives the operator's terminal.

    In a JSON text they can only stand inside strings (or make it invalid anyway), where the
    escape reads back as the same character.
    """
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _s(value: Any) -> str:
    return escape_controls(str(value))


def hide_payload(rec: dict[str, Any]) -> dict[str, Any]:
    """A dead letter without its copy of the original key and value."""
    return {k: (HIDDEN if k in PAYLOAD_FIELDS and v is not None else v) for k, v in rec.items()}


def format_prediction(rec: dict[str, Any], colour: bool) -> str:
    """One line for a prediction."""
    level = rec.get("risk_level", "?")
    why = ", ".join(
        f"{_s(c['field'])}={_s(c['value'])} ({c['contribution']:+.2f})" for c in rec.get("contributions") or []
    )
    imputed = f" imputed={_s(','.join(rec['imputed_fields']))}" if rec.get("imputed_fields") else ""
    line = (
        f"{_s(rec.get('scored_at', ''))} {_s(level):<6} p={rec.get('probability', float('nan')):.3f} "
        f"patient={_s(rec.get('patient_id'))} event={_s(rec.get('event_id'))} model={_s(rec.get('model_version'))} "
        f"why: {why}{imputed}"
    )
    return f"{COLOURS.get(level, '')}{line}{RESET}" if colour else line


def format_dead_letter(rec: dict[str, Any], colour: bool) -> str:
    """One line for a dead letter (ids and the reason, never the payload)."""
    line = _s(
        f"{rec.get('failed_at', '')} {rec.get('error_code')} [{rec.get('stage')}] "
        f"{rec.get('topic')}/{rec.get('partition')}@{rec.get('offset')} event={rec.get('event_id')} "
        f"{rec.get('error_detail') or ''}"
    )
    return f"{COLOURS['DLQ']}{line}{RESET}" if colour else line


def record_decoder(settings: Settings) -> Callable[[bytes, str], dict[str, Any]]:
    """Decode a record: JSON, or Confluent-framed Avro via confluent-kafka's ``AvroDeserializer``.

    The registry is only contacted when an Avro record arrives; an undecodable
    record becomes ``{}`` (shown, not fatal).
    """
    deserializer: Any = None

    def decode(value: bytes, topic: str) -> dict[str, Any]:
        nonlocal deserializer
        if value[:1] == b"\x00":
            from confluent_kafka.schema_registry.avro import AvroDeserializer
            from confluent_kafka.serialization import MessageField, SerializationContext

            from stream.contract.registry import SchemaRegistry

            if deserializer is None:
                deserializer = AvroDeserializer(SchemaRegistry.from_settings(settings).client)
            try:
                rec = deserializer(value, SerializationContext(topic, MessageField.VALUE))
            except Exception as exc:  # registry down, unknown id, corrupt payload
                print(f"tail: cannot decode an Avro record: {str(exc)[:200]}", file=sys.stderr)
                return {}
            return dict(rec) if isinstance(rec, dict) else {}
        try:
            rec = json.loads(value)
        except ValueError:
            return {}
        return rec if isinstance(rec, dict) else {}

    return decode


def tail(
    settings: Settings,
    dead_letters: bool = False,
    risk_levels: set[str] | None = None,
    patient: str | None = None,
    raw_json: bool = False,
    from_beginning: bool = False,
    max_messages: int = 0,
    timeout_s: float = 0.0,
    out: TextIO = sys.stdout,
    colour: bool | None = None,
    start_offsets: dict[int, int] | None = None,
    until: Callable[[], bool] | None = None,
    show_payload: bool = False,
    read_committed: bool = True,
) -> int:
    """Print records until interrupted, ``max_messages`` are shown, ``timeout_s`` passes idle, or ``until()``.

    ``until`` is asked at least every half second (``heartrisk run``: has the scorer died?).
    Control characters are always escaped. With ``raw_json``, a dead letter's copy of the
    original key and value (patient data) is shown only with ``show_payload``. Only committed records
    are read (``read_committed``: of ``--delivery exactly-once``, never an aborted or open transaction's).

    Returns:
        The number of records shown.
    """
    topic = settings.dlq_topic if dead_letters else settings.output_topic
    colour = out.isatty() if colour is None else colour
    fmt: Callable[[dict[str, Any], bool], str] = format_dead_letter if dead_letters else format_prediction
    decode = record_decoder(settings)
    consumer = Consumer(
        settings.kafka_client_config(
            **{
                "group.id": f"heartrisk-tail-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest" if from_beginning else "latest",
                "enable.auto.commit": False,
                "isolation.level": "read_committed" if read_committed else "read_uncommitted",
            }
        )
    )
    if start_offsets is not None:
        consumer.assign([TopicPartition(topic, p, o) for p, o in start_offsets.items()])
    else:
        consumer.subscribe([topic])
    shown = 0
    last_seen = time.monotonic()
    try:
        while until is None or not until():
            msg = consumer.poll(0.5)
            if msg is None:
                if timeout_s and time.monotonic() - last_seen > timeout_s:
                    break
                continue
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    print(f"tail: {err.str()}", file=sys.stderr)
                continue
            last_seen = time.monotonic()
            value = msg.value() or b""
            rec = decode(value, msg.topic() or topic)
            if patient and rec.get("patient_id") != patient:
                continue
            if risk_levels and not dead_letters and rec.get("risk_level") not in risk_levels:
                continue
            out.write(_raw(value, rec, dead_letters, show_payload) if raw_json else fmt(rec, colour))
            out.write("\n")
            out.flush()
            shown += 1
            if max_messages and shown >= max_messages:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return shown


def _raw(value: bytes, rec: dict[str, Any], dead_letter: bool, show_payload: bool) -> str:
    """The record as JSON: unchanged (control characters escaped), or a dead letter without its payload."""
    if dead_letter and not show_payload and rec:
        return json.dumps(hide_payload(rec))
    text = value.decode("utf-8", "replace") if value[:1] != b"\x00" else json.dumps(rec)
    return escape_controls(text)
