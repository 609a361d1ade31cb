"""Lag that Kafka's tools can see: the query's committed offsets mirrored to a Kafka consumer group.

Spark keeps a streaming query's offsets in its checkpoint, so ``kafka-consumer-groups``,
Burrow, Kafka UI and lag alerts see nothing. After each batch, the listener
hands the batch's end offsets here, and they are committed to the group
``Settings.lag_group_id`` (no member joins it: an offset commit only). The query
never reads them back: after a restart it resumes from its checkpoint, so a
failed or late commit here only makes the mirrored lag look larger for a while.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from stream.config import Settings

logger = logging.getLogger(__name__)


class LagGroup:
    """Commits end offsets (``{"topic": {"partition": offset}}``, as Spark reports them) to one group."""

    def __init__(self, settings: Settings, group_id: str) -> None:
        from confluent_kafka import Consumer

        self.group_id = group_id
        self.topic = settings.input_topic
        self.consumer = Consumer(settings.kafka_client_config(**{
            "group.id": group_id, "enable.auto.commit": False,
            "log_level": 0,  # a broker outage would log ~20 reconnect lines/s; a failed commit logs its own warning
        }))
        self.failures = 0
        self.closed = False

    def commit(self, end_offset: str | dict[str, Any] | None) -> None:
        """Commit one batch's end offsets; a failure is logged, never raised."""
        from confluent_kafka import KafkaException, TopicPartition

        if not end_offset or self.closed:
            return
        try:
            data = json.loads(end_offset) if isinstance(end_offset, str) else end_offset
            parts = [TopicPartition(self.topic, int(p), int(o)) for p, o in data.get(self.topic, {}).items()]
            if parts:
                self.consumer.commit(offsets=parts, asynchronous=False)
        except (KafkaException, ValueError, TypeError, AttributeError) as exc:
            self.failures += 1
            logger.warning('event="lag group commit failed" group="%s" failures=%d error="%s"',
                           self.group_id, self.failures, str(exc)[:200])

    def close(self) -> None:
        """Leave nothing open (the query has ended); later commits are ignored."""
        if not self.closed:
            self.closed = True
            self.consumer.close()
