"""The scorer as a process (``heartrisk score``): start-up, signals, graceful stop, exit code.

SIGINT/SIGTERM let the micro-batch in flight finish and commit first, so a
graceful stop neither loses nor duplicates events.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any, cast

from pyspark.errors import StreamingQueryException
from pyspark.sql.streaming.query import StreamingQuery

from stream.app.scorer import check_broker, start_scorer, warm_up
from stream.config import Settings
from stream.errors import HeartriskError, StoppedWhilePaused
from stream.model.artifact import load_metadata, load_model, resolve_model_dir
from stream.pipeline.trigger import is_real_time

logger = logging.getLogger(__name__)

STOP_WAIT_S = 8.0  # then stop anyway: a graceful stop returns within 10 s under load


def stop_gracefully(query: StreamingQuery, timeout_s: float = STOP_WAIT_S, real_time: bool = False) -> None:
    """Wait for the micro-batch in flight to commit, then stop between batches.

    Under a load that leaves no gap between batches (``processing-time=0`` with a
    backlog) there may be no such moment before ``timeout_s``: the query is then
    stopped mid-batch, and that batch, uncommitted, is written again after a
    restart (at-least-once; nothing is lost). A warning says so.

    In real-time mode a "batch" is a long-running checkpoint interval that is
    always active, so there is nothing to wait for: the query stops at once and
    records since the last checkpoint may be written again on restart.
    """
    if real_time:
        query.stop()
        return
    deadline = time.monotonic() + timeout_s
    while query.isActive:
        if not query.status.get("isTriggerActive", False):
            break
        if time.monotonic() >= deadline:
            logger.warning(
                'event="stop mid-batch" waited_s=%.1f detail="no gap between batches: the batch in flight '
                'is not committed and will be written again after a restart"', timeout_s,
            )
            break
        time.sleep(0.005)
    query.stop()


def await_stop_or_end(query: StreamingQuery, stop: threading.Event) -> None:
    """Return when a stop is requested or the query ends (its error, if any, is read by the caller).

    ``awaitTermination`` raises when the query ends with an error, and a stop
    while paused on the registry ends it that way on purpose (so the paused
    batch is not committed); the caller decides what the end means.
    """
    while query.isActive and not stop.is_set():
        try:
            query.awaitTermination(cast(Any, 0.5))
        except StreamingQueryException:
            return


def failure_message(exc: BaseException | None, stopped: bool) -> str | None:
    """What to report for how the query ended: None for a clean end.

    A query ended by a stop request while paused on the registry is a clean stop;
    any other error is a failure, even if a stop was requested at the same time.
    """
    if exc is None or (stopped and StoppedWhilePaused.MARKER in str(exc)):
        return None
    return f"the streaming query failed: {str(exc).splitlines()[0][:500]}"


def run_scorer(settings: Settings) -> int:
    """The ``heartrisk score`` command: run until stopped by a signal or a failure."""
    from stream.session import get_spark

    check_broker(settings)
    model_dir = resolve_model_dir(settings.path(settings.model_dir))  # once: CURRENT may move later
    meta = load_metadata(model_dir)  # fail fast, before Spark starts
    spark = get_spark(settings, f"heartrisk-{settings.query_name}")
    model = load_model(model_dir, meta, settings.engine)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info('event="stop requested" signal="%s"', signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if settings.input_format == "json" and settings.warm_up == "on":
            warm_up(spark, settings, model)
        query = start_scorer(spark, settings, model, stop)
        await_stop_or_end(query, stop)
        if stop.is_set() and query.isActive:
            stop_gracefully(query, real_time=is_real_time(settings.trigger))
        failure = failure_message(query.exception(), stopped=stop.is_set())
        if failure:
            raise HeartriskError(failure)
        if stop.is_set():
            # a batch paused on the registry ends uncommitted: it is read again on restart
            logger.info('event="scorer stopped" query="%s"', settings.query_name)
        return 0
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        spark.stop()
