"""The scorer as a process (``heartrisk score``): start-up, signals, graceful stop, exit code.

SIGINT/SIGTERM let the micro-batch in flight finish and commit first, so a
graceful stop neither loses nor duplicates events.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, cast

from pyspark.errors import StreamingQueryException

from stream.app.graceful import stop_gracefully
from stream.app.scorer import RunningQuery, check_broker, start_scorer
from stream.config import Settings
from stream.errors import HeartriskError, StoppedWhilePaused
from stream.model.artifact import load_metadata, load_model, resolve_model_dir
from stream.pipeline.trigger import is_real_time

logger = logging.getLogger(__name__)

__all__ = ["await_stop_or_end", "failure_message", "run_scorer", "stop_gracefully", "stop_on_signals"]


def await_stop_or_end(query: RunningQuery, stop: threading.Event) -> None:
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


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """While inside: SIGINT/SIGTERM set ``stop`` (logged) instead of killing the process."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info('event="stop requested" signal="%s"', signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


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
    try:
        with stop_on_signals(stop):
            try:
                query = start_scorer(spark, settings, model, stop, warm=settings.warm_up == "on")
            except StoppedWhilePaused:  # stopped while the registry was down at start-up: nothing was read
                logger.info('event="scorer stopped" query="%s"', settings.query_name)
                return 0
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
        spark.stop()
