"""The scorer as a process (``heartrisk score``): start-up, signals, graceful stop, exit code.

SIGINT/SIGTERM let the micro-batch in flight finish and commit first, so a
graceful stop neither loses nor duplicates events.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, cast

from pyspark.errors import StreamingQueryException

from stream.app.ends import query_failure
from stream.app.graceful import stop_gracefully
from stream.app.replanning import ReplanningQuery
from stream.app.scorer import RunningQuery, check_broker, start_scorer
from stream.app.swap import Models, ModelSource, RestartableQuery
from stream.config import Settings
from stream.errors import StoppedWhilePaused
from stream.monitor.listener import ProgressListener
from stream.pipeline.trigger import is_real_time, trigger_interval_s

logger = logging.getLogger(__name__)

__all__ = ["await_stop_or_end", "run_scorer", "stop_gracefully", "stop_on_signals"]


def await_stop_or_end(query: RunningQuery, stop: threading.Event, timeout_s: float | None = None) -> None:
    """Return when a stop is requested, the query ends (its error is read by the caller), or after ``timeout_s``.

    ``awaitTermination`` raises when the query ends with an error, and a stop
    while paused on the registry ends it that way on purpose (so the paused
    batch is not committed); the caller decides what the end means.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while query.isActive and not stop.is_set() and (deadline is None or time.monotonic() < deadline):
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


def follow(source: ModelSource, models: Models, query: RunningQuery, listener: ProgressListener,
           trigger: str) -> None:
    """Check the registry's aliases once; on a move, swap the models in at a batch boundary (``stream.app.swap``)."""
    t0 = time.monotonic()
    new, refused = source.poll(models)
    if refused:
        listener.set_models(models.describe(), failed=refused)
    if new is None:
        return
    loaded_s = time.monotonic() - t0
    t0 = time.monotonic()
    listener.expect_restart()
    old = models.describe()
    models.champion, models.challenger, models.numbers = new.champion, new.challenger, dict(new.numbers)
    assert isinstance(query, RestartableQuery | ReplanningQuery), "a followed model needs a re-plannable query"
    query.replan(is_real_time(trigger), trigger_interval_s(trigger))
    listener.set_models(models.describe(), swapped=True)
    logger.info('event="model swapped" from=%s to=%s fetch_verify_load_s=%.2f switch_s=%.2f', json.dumps(old),
                json.dumps(models.describe()), loaded_s, time.monotonic() - t0)


def run_scorer(settings: Settings) -> int:
    """The ``heartrisk score`` command: run until stopped by a signal or a failure."""
    from stream.session import get_spark

    source = ModelSource(settings)
    check_broker(settings, (settings.shadow_topic,) if source.follows else ())
    source.check_files()  # fail fast, before Spark starts
    spark = get_spark(settings, f"heartrisk-{settings.query_name}")
    stop = threading.Event()
    try:
        models = source.load()
        listeners: list[ProgressListener] = []
        with stop_on_signals(stop):
            try:
                query = start_scorer(spark, settings, models if source.follows else models.champion, stop,
                                     warm=settings.warm_up == "on", on_listener=listeners.append)
            except StoppedWhilePaused:  # stopped while the registry was down at start-up: nothing was read
                logger.info('event="scorer stopped" query="%s"', settings.query_name)
                return 0
            if source.failures:  # a challenger refused at start-up
                listeners[-1].set_models(models.describe(), failed=source.failures)
            while True:
                await_stop_or_end(query, stop, source.interval if source.follows else None)
                if stop.is_set() or not query.isActive:
                    break
                follow(source, models, query, listeners[-1], settings.trigger)
            if stop.is_set() and query.isActive:
                stop_gracefully(query, real_time=is_real_time(settings.trigger),
                                interval_s=trigger_interval_s(settings.trigger))
            failure = query_failure(query.exception(), stop.is_set(), settings)
            if failure:
                raise failure
            if stop.is_set():
                # a batch paused on the registry ends uncommitted: it is read again on restart
                logger.info('event="scorer stopped" query="%s"', settings.query_name)
            return 0
    finally:
        spark.stop()
