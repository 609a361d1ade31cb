"""A graceful stop: let the micro-batch in flight commit, then stop between batches."""

from __future__ import annotations

import logging
import time
from typing import Any

logger = logging.getLogger(__name__)

STOP_WAIT_S = 8.0  # then stop anyway: a graceful stop returns within 10 s under load


def _clear_of_next_trigger(interval_s: float | None) -> bool:
    """True when the next processing-time trigger is far enough away for a stop to land before it.

    Spark fires a processing-time trigger at each multiple of its interval since
    the epoch (``ProcessingTimeExecutor.nextBatchTime``), on this machine's clock,
    so a stop issued just before one could interrupt a batch that just began.
    """
    if not interval_s or interval_s < 0.05:
        return True
    to_next = interval_s - (time.time() % interval_s)
    return to_next >= min(0.2 * interval_s, 0.5)


def stop_gracefully(
    query: Any, timeout_s: float = STOP_WAIT_S, real_time: bool = False, interval_s: float | None = None
) -> None:
    """Wait for the micro-batch in flight to commit, then stop between batches.

    With the processing-time trigger's ``interval_s`` the stop also waits until
    the next trigger is well ahead, so it cannot land on a batch that just began.

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
        if not query.status.get("isTriggerActive", False) and _clear_of_next_trigger(interval_s):
            break
        if time.monotonic() >= deadline:
            logger.warning(
                'event="stop mid-batch" waited_s=%.1f detail="no gap between batches: the batch in flight '
                'is not committed and will be written again after a restart"', timeout_s,
            )
            break
        time.sleep(0.005)
    query.stop()
