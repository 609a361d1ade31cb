"""How a streaming query's end becomes the command's exit: a clean stop, a broker that stopped answering, a failure."""

from __future__ import annotations

import re

from stream.config import Settings
from stream.errors import BrokerError, HeartriskError, StoppedWhilePaused

__all__ = ["BROKER_TIMEOUTS", "MISSING_TOPIC", "failure_message", "jvm_death", "query_failure"]

# the producer's words for a topic the broker does not know (it waits max.block.ms for it, then gives up)
MISSING_TOPIC = re.compile(r"Topic (\S+) not present in metadata")
# how a Kafka client that gave up waiting for a broker shows in a query's error (Java's client, Spark's fetch)
BROKER_TIMEOUTS = ("org.apache.kafka.common.errors.TimeoutException", "Cannot fetch record for offset")


def failure_message(exc: BaseException | None, stopped: bool) -> str | None:
    """What to report for how the query ended: None for a clean end.

    A query ended by a stop request while paused on the registry is a clean stop;
    any other error is a failure, even if a stop was requested at the same time.
    """
    if exc is None or (stopped and StoppedWhilePaused.MARKER in str(exc)):
        return None
    return f"the streaming query failed: {str(exc).splitlines()[0][:500]}"


def query_failure(exc: BaseException | None, stopped: bool, settings: Settings) -> HeartriskError | None:
    """The error to exit with for how the query ended (None for a clean end).

    A broker that did not answer within ``--broker-wait`` is a ``BrokerError`` (exit 4)
    whose one line says a restart is safe: the open batch was never committed,
    so it is read again from the checkpoint.
    """
    message = failure_message(exc, stopped)
    if message is None:
        return None
    text = str(exc)
    missing = MISSING_TOPIC.search(text)
    if missing:
        return BrokerError(
            f"the topic {missing.group(1)} does not exist on the broker (deleted?), so the query stopped. Make it "
            "again (heartrisk kafka topics, or your own tooling), then restart: the unfinished batch is written "
            "again, nothing is lost")
    if "ProducerFencedException" in text:  # --delivery exactly-once: a newer driver opened this checkpoint's sink
        return BrokerError(
            f"another scorer took over the checkpoint {settings.checkpoint_location} (its Kafka transactions fenced "
            "this one), so this query stopped. Run one scorer per checkpoint: nothing is lost or written twice")
    if any(t in text for t in BROKER_TIMEOUTS):
        return BrokerError(
            f"the Kafka broker ({settings.bootstrap_servers}) did not answer for {settings.broker_wait:g}s "
            "(--broker-wait / HEARTRISK_BROKER_WAIT), so the query stopped. Restart it once the broker is back: "
            "the unfinished batch is read again from the checkpoint, nothing is lost")
    return HeartriskError(message)


def jvm_death(exc: BaseException) -> str | None:
    """One line for a Spark JVM that died under the Python driver (killed, or out of memory), else None.

    Py4J then fails the next call into the JVM with a network error (the gateway's socket closed);
    the traceback says nothing a user can act on.
    """
    from py4j.protocol import Py4JNetworkError

    seen: BaseException | None = exc
    for _ in range(10):  # the error, and what it was raised from or during
        if seen is None:
            return None
        if isinstance(seen, Py4JNetworkError) or "Answer from Java side is empty" in str(seen):
            return ("the Spark JVM under this command died (killed, or out of memory: see the lines above, and the "
                    "system log for the OOM killer). Run the command again: a scorer resumes from its checkpoint, "
                    "nothing is lost")
        seen = seen.__cause__ or seen.__context__
    return None
