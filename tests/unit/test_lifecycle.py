"""The scorer's process lifecycle: how the wait ends, what an end means, and a stop under a paused registry."""

from __future__ import annotations

import threading

from pyspark.errors import StreamingQueryException

from stream.app.lifecycle import await_stop_or_end, failure_message, stop_gracefully
from stream.errors import StoppedWhilePaused


class EndedQuery:
    """A query whose wait raises the way PySpark does when the query ended with an error."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.waits = 0

    @property
    def isActive(self) -> bool:  # noqa: N802 (PySpark's name)
        return self.waits == 0

    def awaitTermination(self, timeout: float) -> None:  # noqa: N802 (PySpark's name)
        self.waits += 1
        raise self.error


def test_a_query_ended_by_an_error_during_the_wait_is_left_to_the_caller():
    query = EndedQuery(StreamingQueryException(message=f"boom: {StoppedWhilePaused.MARKER}"))
    await_stop_or_end(query, threading.Event())  # type: ignore[arg-type]
    assert query.waits == 1, "returns at once instead of raising out of the scorer"


def test_a_stop_while_paused_is_a_clean_end_and_every_other_error_a_failure():
    paused = RuntimeError(f"Traceback ...\nStoppedWhilePaused: {StoppedWhilePaused.MARKER}: schema id 3")
    other = RuntimeError("Py4JJavaError: disk full\nmore")
    assert failure_message(None, stopped=False) is None
    assert failure_message(paused, stopped=True) is None
    assert failure_message(paused, stopped=False) == "the streaming query failed: Traceback ..."
    assert failure_message(other, stopped=True) == "the streaming query failed: Py4JJavaError: disk full"




class BusyQuery:
    """A query whose trigger is active for ``busy_polls`` status reads, then idle."""

    def __init__(self, busy_polls: int) -> None:
        self.busy_polls = busy_polls
        self.polls = 0
        self.stopped_at: int | None = None

    @property
    def isActive(self) -> bool:  # noqa: N802 (PySpark's name)
        return self.stopped_at is None

    @property
    def status(self) -> dict[str, bool]:
        self.polls += 1
        return {"isTriggerActive": self.polls <= self.busy_polls}

    def stop(self) -> None:
        self.stopped_at = self.polls


def test_a_graceful_stop_waits_for_the_batch_in_flight_then_stops():
    query = BusyQuery(busy_polls=3)
    stop_gracefully(query, timeout_s=10)  # type: ignore[arg-type]
    assert query.stopped_at == 4, "stopped on the first idle status, not before"


def test_a_graceful_stop_gives_up_waiting_at_its_deadline():
    query = BusyQuery(busy_polls=10**9)
    stop_gracefully(query, timeout_s=0.1)  # type: ignore[arg-type]
    assert query.stopped_at is not None and query.stopped_at < 10**9


def test_real_time_mode_stops_at_once():
    query = BusyQuery(busy_polls=10**9)
    stop_gracefully(query, timeout_s=10, real_time=True)  # type: ignore[arg-type]
    assert query.stopped_at == 0


def test_run_explains_a_dead_scorer_by_its_signal_or_its_last_error(tmp_path):
    from stream.app.run import last_error

    log = tmp_path / "scorer.log"
    log.write_text("INFO started\n2026 ERROR Query terminated with error\nheartrisk: error: disk full\nINFO bye\n")
    assert last_error(log, 1) == "heartrisk: error: disk full", "our own one-line error first"
    assert last_error(log, -9) == "killed by signal SIGKILL", "a signal is the cause, whatever the JVM logged"
    log.write_text("INFO started\n2026 ERROR Query terminated with error\nINFO bye\n")
    assert last_error(log, 1) == "2026 ERROR Query terminated with error"
    log.write_text("")
    assert last_error(log, 1) == "no output"
