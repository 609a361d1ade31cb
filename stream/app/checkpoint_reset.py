"""``heartrisk checkpoint show | reset``: the committed position of a stopped query, and moving it with guard rails.

A reset appends one batch to Spark's own logs: ``offsets/N+1`` with the new
offsets (the metadata of batch N, its timestamp renewed) and ``commits/N+1``.
The restarted query then finds batch N+1 committed and reads from the new
offsets on: nothing of Spark's is deleted or rewritten. Before that, the
position it replaces is saved in ``heartrisk-backups/reset-<N+1>.json``
beside the logs. A reset is refused while the query runs, and asks for
confirmation unless ``--yes``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from stream.app.checkpoint_log import COMMITS, OFFSETS, LogFiles, batch_ids, committed
from stream.config import Settings
from stream.errors import CheckpointError, ConfigError
from stream.local.topics import watermarks

BACKUPS = "heartrisk-backups"


@dataclass(frozen=True)
class Reset:
    """What a reset did."""

    batch_id: int
    before: dict[int, int]
    after: dict[int, int]
    backup: str


def parse_time(text: str) -> int:
    """Epoch milliseconds from ISO 8601 (``2026-11-27T10:00:00Z``) or a number of epoch milliseconds.

    Raises:
        ConfigError: neither.
    """
    if text.isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        msg = f"--to-time {text!r}: give ISO 8601 (2026-11-27T10:00:00Z) or epoch milliseconds"
        raise ConfigError(msg) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def parse_offsets(text: str, topic: str, partitions: set[int]) -> dict[int, int]:
    """``{"0": 12, ...}`` or ``{"<topic>": {"0": 12, ...}}``, for every partition of the topic.

    Raises:
        ConfigError: not that JSON, or partitions missing or unknown.
    """
    try:
        data = json.loads(text)
        if topic in data:
            data = data[topic]
        offsets = {int(p): int(o) for p, o in data.items()}
    except (ValueError, TypeError, AttributeError) as exc:
        msg = f'--to-offsets: give JSON like {{"0": 120, "1": 98}} (partition: next offset to read), not {text!r}'
        raise ConfigError(msg) from exc
    if set(offsets) != partitions:
        msg = f"--to-offsets names partitions {sorted(offsets)}, but {topic} has {sorted(partitions)}: give each once"
        raise ConfigError(msg)
    return offsets


def offsets_at_time(settings: Settings, ms: int) -> dict[int, int]:
    """Per partition, the first offset whose timestamp is at or after ``ms`` (the end if none)."""
    from confluent_kafka import Consumer, TopicPartition

    topic = settings.input_topic
    marks = watermarks(settings.kafka_client_config(), topic)
    conf = {**settings.kafka_client_config(), "group.id": "heartrisk-offsets", "enable.auto.commit": False}
    consumer = Consumer(conf)
    try:
        found = consumer.offsets_for_times([TopicPartition(topic, p, ms) for p in marks], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: (tp.offset if tp.offset >= 0 else marks[tp.partition][1]) for tp in found}


def target_offsets(settings: Settings, to_offsets: str | None, to_time: str | None, to_latest: bool) -> dict[int, int]:
    """The offsets a reset moves to, from exactly one of the three ways to say it.

    Raises:
        ConfigError: none or several given, or one malformed.
    """
    given = [x for x in (to_offsets, to_time, to_latest or None) if x is not None]
    if len(given) != 1:
        msg = "give exactly one of --to-offsets JSON, --to-time T or --to-latest"
        raise ConfigError(msg)
    marks = watermarks(settings.kafka_client_config(), settings.input_topic)
    if to_latest:
        return {p: hi for p, (_lo, hi) in marks.items()}
    if to_time is not None:
        return offsets_at_time(settings, parse_time(to_time))
    assert to_offsets is not None
    offsets = parse_offsets(to_offsets, settings.input_topic, set(marks))
    for p, o in offsets.items():
        lo, hi = marks[p]
        if not lo <= o <= hi:
            msg = f"--to-offsets: partition {p} offset {o} is outside the topic's range {lo}-{hi}"
            raise ConfigError(msg)
    return offsets


def reset(
    files: LogFiles, topic: str, offsets: dict[int, int], running: bool, confirm: Callable[[str], bool],
) -> Reset | None:
    """Append a committed batch that moves the query to ``offsets``; None if not confirmed.

    Raises:
        CheckpointError: the query runs, or the checkpoint has no batch to build on.
    """
    if running:
        msg = "the query is running: stop the scorer first (SIGTERM lets the batch in flight commit), then reset"
        raise CheckpointError(msg)
    ids = batch_ids(files, OFFSETS)
    if not ids:
        msg = (
            f"checkpoint {files.location} has no batch yet: a new query starts from --starting-offsets "
            "(earliest, latest or JSON); no reset is needed"
        )
        raise CheckpointError(msg)
    last = max(ids)
    text = files.read(f"{OFFSETS}/{last}") or ""
    lines = text.splitlines()
    meta: dict[str, Any] = json.loads(lines[1]) if len(lines) > 1 and lines[1].startswith("{") else {}
    before = committed(files, topic)
    prev = before.offsets if before is not None else {}
    changes = ", ".join(f"p{p} {prev.get(p, '?')} -> {o}" for p, o in sorted(offsets.items()))
    if not confirm(f"move {topic} in {files.location}: {changes}?"):
        return None
    new_id = last + 1
    backup = f"{BACKUPS}/reset-{new_id}.json"
    files.write(backup, json.dumps({
        "replaced_at": time.time(), "topic": topic,
        "committed_batch_id": before.batch_id if before is not None else None,
        "committed_offsets": {str(p): o for p, o in sorted(prev.items())},
        "last_logged_batch_id": last, "last_logged_entry": text,
        "new_batch_id": new_id, "new_offsets": {str(p): o for p, o in sorted(offsets.items())},
    }, indent=2))
    meta["batchTimestampMs"] = int(time.time() * 1000)
    entry = {topic: {str(p): o for p, o in sorted(offsets.items())}}
    files.write(f"{OFFSETS}/{new_id}", "v1\n" + json.dumps(meta) + "\n" + json.dumps(entry))
    files.write(f"{COMMITS}/{new_id}", "v1\n" + json.dumps({"nextBatchWatermarkMs": 0}))
    return Reset(new_id, prev, dict(offsets), backup)
