"""``heartrisk replay``: dead letters sent back to the input topic, once each, after the cause is fixed.

A dead letter keeps the original message: its key and value (base64), and the
topic, partition and offset it came from. A replay reads the dead-letter topic
up to its current end, keeps the letters that match the filters (error code,
the time they were dead-lettered, the original offsets, event ids), and
publishes each original key and value to the input topic with three headers:
``heartrisk-replay-of`` (``topic/partition/offset`` of the original),
``heartrisk-replay-letter`` (``partition/offset`` of the letter) and
``heartrisk-replayed-at``. The input's own headers are not kept by the stream,
so they are not replayed.

Each replayed letter is remembered in a compacted topic, ``<dead-letter
topic>.replayed``, keyed by the letter's partition and offset, so a second
replay skips it (``--force`` sends it again) and every operator sees the same
record. The events are delivered first and recorded after: a replay cut short
may send some events again next time, and never loses one. A letter whose
value was truncated (over the size limit) cannot be replayed and is counted
as such.

``heartrisk replay --from-input`` (a range of input records instead of dead
letters) is ``stream.app.rescore``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream.config import Settings
from stream.contract.sealed import ENCRYPTED, original_bytes, read_keys
from stream.errors import BrokerError
from stream.local.topics import ensure_topics, watermarks

logger = logging.getLogger(__name__)

REPLAYED_SUFFIX = ".replayed"


@dataclass(frozen=True)
class Filters:
    """Which dead letters to replay (every given filter must hold)."""

    codes: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None
    partition: int | None = None  # of the original input
    offsets: tuple[int, int] | None = None  # original input offsets, inclusive
    event_ids: frozenset[str] = frozenset()

    def keep(self, letter: dict[str, Any], dead_lettered_ms: int) -> bool:
        """Whether one letter matches."""
        if self.codes and letter.get("error_code") not in self.codes:
            return False
        if self.since_ms is not None and dead_lettered_ms < self.since_ms:
            return False
        if self.until_ms is not None and dead_lettered_ms > self.until_ms:
            return False
        if self.partition is not None and letter.get("partition") != self.partition:
            return False
        if self.offsets is not None and not self.offsets[0] <= int(letter.get("offset", -1)) <= self.offsets[1]:
            return False
        return not self.event_ids or letter.get("event_id") in self.event_ids


@dataclass
class ReplayResult:
    """What a replay found and did."""

    matched: int = 0
    sent: int = 0
    already_replayed: int = 0
    not_replayable: int = 0
    by_code: dict[str, int] = field(default_factory=dict)
    listed: list[str] = field(default_factory=list)  # --dry-run: one line per letter that would go


def _read_topic(settings: Settings, topic: str, on_message: Callable[[Any], None]) -> int:
    """Every message of a topic up to its end offsets when called; returns how many."""
    ends = watermarks(settings.kafka_client_config(), topic)
    return read_ranges(settings, topic, {p: (lo, hi) for p, (lo, hi) in ends.items() if hi > lo}, on_message)


def read_ranges(
    settings: Settings, topic: str, ranges: dict[int, tuple[int, int]], on_message: Callable[[Any], None]
) -> int:
    """The messages of ``topic`` in ``ranges`` ({partition: (first, end)}, end exclusive); returns how many."""
    from confluent_kafka import Consumer, TopicPartition

    todo = {p: end for p, (first, end) in ranges.items() if end > first}
    if not todo:
        return 0
    consumer = Consumer(settings.kafka_client_config(**{
        "group.id": "heartrisk-replay", "enable.auto.commit": False, "enable.partition.eof": False,
    }))
    count = 0
    try:
        consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in todo])
        deadline = time.monotonic() + 60
        while todo:
            msg = consumer.poll(1.0)
            if msg is None:
                if time.monotonic() > deadline:
                    stalled = f"reading {topic} stalled before offsets {todo}"
                    raise BrokerError(stalled)
                continue
            if msg.error():
                continue
            deadline = time.monotonic() + 60
            part, offset = int(msg.partition() or 0), int(msg.offset() or 0)
            if offset < todo.get(part, -1):
                on_message(msg)
                count += 1
            if offset + 1 >= todo.get(part, 0):
                todo.pop(part, None)
    finally:
        consumer.close()
    return count


def replayed_letters(settings: Settings) -> set[str]:
    """Keys (``partition/offset`` of the letter) already replayed, from the compacted record topic."""
    topic = settings.dlq_topic + REPLAYED_SUFFIX
    done: set[str] = set()

    def remember(msg: Any) -> None:
        key = (msg.key() or b"").decode()
        if msg.value() is None:
            done.discard(key)
        else:
            done.add(key)

    if topic in _topics(settings):
        _read_topic(settings, topic, remember)
    return done


def _topics(settings: Settings) -> set[str]:
    from confluent_kafka.admin import AdminClient

    return set(AdminClient(settings.kafka_client_config()).list_topics(timeout=10).topics)


def _ensure_record_topic(settings: Settings) -> str:
    topic = settings.dlq_topic + REPLAYED_SUFFIX
    ensure_topics(settings.bootstrap_servers, [topic], 1, dict(settings.kafka_options),
                  topic_config={"cleanup.policy": "compact"})
    return topic


class Sender:
    """An idempotent producer that remembers failed deliveries."""

    def __init__(self, settings: Settings) -> None:
        from confluent_kafka import Producer

        self.failures: list[str] = []
        self.producer = Producer(settings.kafka_client_config(**{"enable.idempotence": True, "linger.ms": 20}))

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failures.append(err.str())

    def send(self, topic: str, key: bytes | None, value: bytes | None, headers: list[Any] | None = None) -> None:
        """Queue one record."""
        self.producer.produce(topic, key=key, value=value, headers=headers or [], on_delivery=self._delivered)
        self.producer.poll(0)

    def flush(self, what: str) -> None:
        """Wait for every delivery.

        Raises:
            BrokerError: one failed or did not finish within a minute.
        """
        if self.producer.flush(60) or self.failures:
            msg = f"replay: {what} failed ({len(self.failures) or 'some'} not delivered: {self.failures[:1]})"
            raise BrokerError(msg)


def replay(
    settings: Settings, filters: Filters, dry_run: bool = False, force: bool = False,
    to_topic: str | None = None, progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Replay the matching dead letters (or, with ``dry_run``, list them).

    Sealed letters (``payload: encrypted``) are opened with ``Settings.dead_letter_key_file``, all of
    them before anything is sent.

    Raises:
        ConfigError: a sealed letter with no keys file, or one that does not open with it.
    """
    target = to_topic or settings.input_topic
    done = set() if force else replayed_letters(settings)
    keys = read_keys(settings.path(settings.dead_letter_key_file)) if settings.dead_letter_key_file else None
    result = ReplayResult()
    chosen: list[tuple[str, dict[str, Any], int]] = []

    def consider(msg: Any) -> None:
        try:
            letter = json.loads(msg.value() or b"")
        except json.JSONDecodeError:
            return
        ts = msg.timestamp()[1]
        if not isinstance(letter, dict) or not filters.keep(letter, ts):
            return
        result.matched += 1
        key = f"{msg.partition()}/{msg.offset()}"
        if key in done:
            result.already_replayed += 1
            return
        truncated = letter.get("value_truncated") or letter.get("key_truncated")
        sealed = letter.get("payload") == ENCRYPTED
        if truncated or (not sealed and letter.get("value_base64") is None and letter.get("value_size")):
            result.not_replayable += 1
            return
        chosen.append((key, letter, ts))

    _read_topic(settings, settings.dlq_topic, consider)
    for _, letter, _ in chosen:
        code = str(letter.get("error_code"))
        result.by_code[code] = result.by_code.get(code, 0) + 1
    if dry_run:
        result.listed = [
            f"{letter.get('error_code')} event={letter.get('event_id')} "
            f"from={letter.get('topic')}/{letter.get('partition')}/{letter.get('offset')} letter={key}"
            for key, letter, _ in chosen
        ]
        return result
    if not chosen:
        return result
    originals = [original_bytes(letter, keys) for _, letter, _ in chosen]  # every one opens, or nothing is sent
    record_topic = _ensure_record_topic(settings)
    sender = Sender(settings)
    now = str(int(time.time() * 1000)).encode()
    for i, ((key, letter, _), (k, v)) in enumerate(zip(chosen, originals, strict=True), start=1):
        origin = f"{letter.get('topic')}/{letter.get('partition')}/{letter.get('offset')}".encode()
        headers = [("heartrisk-replay-of", origin), ("heartrisk-replay-letter", key.encode()),
                   ("heartrisk-replayed-at", now)]
        sender.send(target, k, v, headers)
        if progress is not None:
            progress(i, len(chosen))
    sender.flush(f"sending to {target} (nothing was recorded as replayed)")
    for key, letter, _ in chosen:  # only now: an event is never recorded as replayed before it is delivered
        record = {"replayed_at": int(now), "to_topic": target, "event_id": letter.get("event_id")}
        sender.send(record_topic, key.encode(), json.dumps(record).encode())
    sender.flush(f"the events went to {target}, but recording them in {record_topic}")
    result.sent = len(chosen)
    logger.info('event="replayed" to="%s" sent=%d by_code=%s', target, result.sent, result.by_code)
    return result
