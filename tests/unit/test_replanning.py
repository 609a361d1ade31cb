"""The Avro query's re-planning, on pure stand-ins for Spark's query and the writer-schema verdicts."""

from __future__ import annotations

import threading
import time

from stream.app.replanning import ReplanningQuery, unplanned_ids
from stream.contract.writer_schemas import Writer
from stream.errors import StoppedWhilePaused


class FakeQuery:
    """A started query that runs until stopped, or ends with ``error`` after ``runs_for`` seconds."""

    def __init__(self, run: int, error: Exception | None = None, runs_for: float = 0.05) -> None:
        self.id, self.runId = "query-1", f"run-{run}"
        self.error, self.ends_at, self.stopped = error, time.monotonic() + runs_for, False
        self.status = {"isTriggerActive": False}
        self.lastProgress = None

    @property
    def isActive(self) -> bool:  # noqa: N802 (PySpark's name)
        return not self.stopped and (self.error is None or time.monotonic() < self.ends_at)

    def awaitTermination(self, timeout: float) -> None:  # noqa: N802 (PySpark's name)
        time.sleep(min(timeout, 0.01))

    def exception(self) -> Exception | None:
        return None if self.isActive else self.error

    def stop(self) -> None:
        self.stopped = True


class Verdicts:
    """Every id is ok; ``pause_on`` ids wait for a stop, as the pause policy does."""

    def __init__(self, pause_on: frozenset[int] = frozenset(), stop: threading.Event | None = None) -> None:
        self.pause_on, self.stop, self.asked = pause_on, stop, []

    def resolve(self, ids):
        self.asked.append(sorted(ids))
        if self.pause_on & set(ids):
            assert self.stop is not None
            self.stop.wait(30)
            raise StoppedWhilePaused(StoppedWhilePaused.MARKER)
        return {i: Writer(i, "ok", schema_str="{}") for i in ids}

    def recheck(self, planned) -> bool:
        return False


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def unplanned(schema_id: int) -> Exception:
    return RuntimeError(f"[USER_RAISED_EXCEPTION] HEARTRISK_UNPLANNED_SCHEMA_ID:{schema_id} SQLSTATE: P0001\n...")


def test_the_error_names_the_unplanned_ids_and_nothing_else_does():
    assert unplanned_ids(unplanned(42)) == {42}
    assert unplanned_ids(RuntimeError("disk full")) == set()
    assert unplanned_ids(None) == set()


def test_a_new_id_re_plans_on_the_same_query_with_every_id_it_learned():
    plans: list[dict] = []
    errors = {1: unplanned(9)}  # the first run meets id 9

    def plan(verdicts):
        plans.append(dict(verdicts))
        return FakeQuery(len(plans), errors.get(len(plans)))

    q = ReplanningQuery(plan, Verdicts(), known_ids=[3], learn=lambda: {4} if plans else set()).start()  # type: ignore[arg-type]
    wait_until(lambda: len(plans) == 2)
    assert sorted(plans[0]) == [3], "planned with what was known at start"
    assert sorted(plans[1]) == [3, 4, 9], "the id in the error, and what the look-ahead found"
    assert q.replans == 1 and q.isActive and q.id == "query-1" and q.runId == "run-2"
    assert q.planned_ids == {3: "ok", 4: "ok", 9: "ok"}
    q.stop()
    assert not q.isActive and q.exception() is None


def test_any_other_failure_ends_it_with_that_error_and_no_re_plan():
    boom = RuntimeError("disk full")
    plans: list[int] = []

    def plan(verdicts):
        plans.append(1)
        return FakeQuery(1, boom)

    q = ReplanningQuery(plan, Verdicts(), known_ids=[]).start()  # type: ignore[arg-type]
    assert q.awaitTermination(10) is True
    assert q.exception() is boom and not q.isActive and len(plans) == 1


def test_a_stop_while_paused_on_the_registry_ends_cleanly_without_a_new_plan():
    stop = threading.Event()
    verdicts = Verdicts(pause_on=frozenset({9}), stop=stop)
    plans: list[int] = []

    def plan(v):
        plans.append(1)
        return FakeQuery(len(plans), unplanned(9))

    q = ReplanningQuery(plan, verdicts, known_ids=[], stop=stop).start()  # type: ignore[arg-type]
    wait_until(lambda: [9] in verdicts.asked)
    assert q.isActive, "paused between plans, still up"
    assert q.status["isTriggerActive"] is False
    q.stop()
    assert not q.isActive and q.exception() is None and len(plans) == 1


def test_a_requested_replan_stops_the_run_between_batches_and_plans_again_with_the_same_ids():
    """A model swap on Avro input: ``replan`` waits for the new run, planned for the ids already known."""
    plans: list[dict] = []

    def plan(verdicts):
        plans.append(dict(verdicts))
        return FakeQuery(len(plans))

    q = ReplanningQuery(plan, Verdicts(), known_ids=[3, 5]).start()  # type: ignore[arg-type]
    try:
        first = q.runId
        q.replan(interval_s=None, timeout_s=10)
        assert q.runId != first and len(plans) == 2
        assert sorted(plans[1]) == [3, 5] and q.isActive and q.replans == 1
    finally:
        q.stop()
