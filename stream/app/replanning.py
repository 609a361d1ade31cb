"""Avro input as one streaming plan, re-planned at a batch boundary when a new writer schema id appears.

Spark's ``from_avro`` takes its writer schema when the plan is built, so the
streaming plan holds one decoder per schema id known when it was planned: the
ids registered under ``<input topic>-value`` at start, the ids of the messages
already waiting in the topic (``pending_schema_ids``: one look-ahead read of
their 5-byte headers, up to ``SCAN_PER_PARTITION`` messages per partition), and
every id met since. A message with any other id stops the query: the decode
step raises ``HEARTRISK_UNPLANNED_SCHEMA_ID:<id>`` (``stream.pipeline.decode``),
so such a message is never guessed at nor dead-lettered by mistake.
``ReplanningQuery`` then, on the driver:

1. looks ahead again (so a batch with several new ids costs one re-plan), and
   settles the new ids with the registry (``stream.contract.writer_schemas``:
   an Avro schema the reader can resolve, unknown, or incompatible). If the
   registry does not answer, it waits here under the ``pause`` policy, retrying
   with backoff, with nothing read past the batch;
2. plans the query again for the larger set and restarts it on the same
   checkpoint: the same query id, no reset, and the failed batch is read again.

What it costs: a re-plan takes a query restart (about 2-4 s here). The failed
batch is uncommitted, so it is written again (at-least-once, as after a crash):
rows of that batch that a task wrote before it met the new id are written
twice. A batch that holds only the new id's rows (the usual case: a producer
upgrades) fails on its first row and writes nothing; ids already waiting at
start cost nothing. What it buys: no per-batch ``foreachBatch`` (no cache, no
schema-id pass, no count pass, no per-batch Python plan), so Avro runs the same
streaming plan as JSON.

Verdicts that may change (an id the registry did not know, or could not be
asked about under the ``dead-letter`` policy) are asked again every
``RECHECK_S`` (an unknown id at most once a minute); when one changes, the
query is re-planned at the next batch boundary (a graceful stop, then a start).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from pyspark.errors import StreamingQueryException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.query import StreamingQuery

from stream.app.checkpoint_log import committed, open_log
from stream.app.graceful import stop_gracefully
from stream.config import Settings
from stream.contract.writer_schemas import Writer, WriterSchemas
from stream.errors import StoppedWhilePaused
from stream.local.topics import watermarks
from stream.pipeline.columns import UNPLANNED_SCHEMA_ID, VALUE
from stream.pipeline.decode import has_header, schema_id_column

logger = logging.getLogger(__name__)

_UNPLANNED = re.compile(rf"{UNPLANNED_SCHEMA_ID}:(\d+)")
RECHECK_S = 10.0
JOIN_S = 30.0
SCAN_PER_PARTITION = 100_000  # messages read per partition by one look-ahead

Plan = Callable[[Mapping[int, Writer]], StreamingQuery]
Learn = Callable[[], set[int]]


def pending_schema_ids(spark: SparkSession, settings: Settings, per_partition: int = SCAN_PER_PARTITION) -> set[int]:
    """The schema ids of the messages the query has still to read (the first ``per_partition`` of each partition).

    From the checkpoint's last committed offsets (or the starting offsets of a
    new query) to the end of the topic: one batch read that keeps only the
    5-byte headers' ids. Planning for all of them at once means one re-plan, not
    one per id, and none at all for what is already waiting at start.
    """
    topic = settings.input_topic
    marks = watermarks(settings.kafka_client_config(), topic)
    position = committed(open_log(settings.checkpoint_location, spark), topic)
    start = position.offsets if position is not None else None
    if start is None:
        if settings.starting_offsets == "latest":
            return set()
        given = {} if settings.starting_offsets == "earliest" else json.loads(settings.starting_offsets).get(topic, {})
        wanted = {p: int(given.get(str(p), -2)) for p in marks}
        start = {p: (marks[p][1] if o == -1 else marks[p][0] if o == -2 else o) for p, o in wanted.items()}
    ranges = {}
    for p, (lo, hi) in marks.items():
        first = max(start.get(p, lo), lo)
        if first < hi:
            ranges[p] = (first, min(hi, first + per_partition))
    if not ranges:
        return set()
    value = F.col(VALUE)
    rows = (
        spark.read.format("kafka").options(**settings.spark_kafka_options())
        .option("assign", json.dumps({topic: sorted(ranges)}))
        .option("startingOffsets", json.dumps({topic: {str(p): r[0] for p, r in ranges.items()}}))
        .option("endingOffsets", json.dumps({topic: {str(p): r[1] for p, r in ranges.items()}}))
        .load()
        .where(has_header(value)).select(schema_id_column(value).alias("id")).distinct().collect()
    )
    found = {int(r["id"]) for r in rows}
    logger.info(
        'event="schema ids ahead" messages=%d schema_ids=%d', sum(b - a for a, b in ranges.values()), len(found)
    )
    return found


def unplanned_ids(exc: BaseException | None) -> set[int]:
    """The schema ids a query failed on because its plan did not know them (empty for any other end)."""
    if exc is None:
        return set()
    return {int(m) for m in _UNPLANNED.findall(str(exc))}


class ReplanningQuery:
    """A streaming query for Avro input that re-plans itself for new schema ids.

    It offers the parts of ``StreamingQuery`` the scorer and its callers use:
    ``isActive``, ``id``, ``runId``, ``status``, ``lastProgress``,
    ``awaitTermination``, ``exception`` and ``stop``. Unlike PySpark's,
    ``awaitTermination`` never raises: read ``exception()`` after it.
    """

    def __init__(
        self,
        plan: Plan,
        writers: WriterSchemas,
        known_ids: Iterable[int],
        stop: threading.Event | None = None,
        recheck_s: float = RECHECK_S,
        learn: Learn | None = None,
    ) -> None:
        self._plan = plan
        self._learn = learn or set
        self._writers = writers
        self._ids = set(known_ids)
        self._stop = stop or threading.Event()
        self._stopping = False
        self._recheck_s = recheck_s
        self._lock = threading.Lock()
        self._query: StreamingQuery | None = None
        self._planned: dict[int, Writer] = {}
        self._exception: BaseException | None = None
        self._replan = threading.Event()  # asked for from outside (a model swap)
        self._interval_s: float | None = None  # the processing-time trigger's, so a stop misses the next trigger
        self._thread = threading.Thread(target=self._supervise, name="heartrisk-replanning", daemon=True)
        self.replans = 0

    # ---- life cycle -------------------------------------------------------
    def start(self) -> ReplanningQuery:
        """Settle the known ids and start the first plan (its errors raise here), then supervise it."""
        self._query = self._start(self._writers.resolve(self._ids))
        self._thread.start()
        return self

    def _start(self, verdicts: Mapping[int, Writer]) -> StreamingQuery:
        self._planned = dict(verdicts)
        query = self._plan(self._planned)
        logger.info(
            'event="avro plan started" run_id="%s" schema_ids=%s', query.runId,
            {i: w.status for i, w in sorted(self._planned.items())},
        )
        return query

    def _supervise(self) -> None:
        try:
            while True:
                query = self._query
                assert query is not None
                stale = self._wait(query)
                if self._stopping:
                    return
                if stale:
                    stop_gracefully(query, 60.0 if self._replan.is_set() else 8.0, interval_s=self._interval_s)
                    reason = "asked to (a model swap)" if self._replan.is_set() else "a verdict changed"
                    self._replan.clear()
                else:
                    exc = query.exception()
                    new = unplanned_ids(exc)
                    if not new:
                        self._exception = exc  # finished (available-now), or failed for another reason
                        return
                    self._ids |= new | self._learn()
                    reason = f"new schema id {sorted(new)}"
                logger.info('event="re-planning the avro query" reason="%s"', reason)
                try:
                    verdicts = self._writers.resolve(self._ids)  # may pause on the registry
                except StoppedWhilePaused:
                    return  # a clean stop: the failed batch stays uncommitted, read again on restart
                with self._lock:
                    if self._stopping:
                        return
                    self._query = self._start(verdicts)
                    self.replans += 1
        except Exception as exc:  # a re-plan that cannot start ends the query with that error
            logger.exception('event="re-planning failed"')
            self._exception = exc

    def _wait(self, query: StreamingQuery) -> bool:
        """Wait until the query ends or a stop; True when a changed verdict asks for a re-plan."""
        next_check = time.monotonic() + self._recheck_s
        while query.isActive and not self._stopping:
            try:
                query.awaitTermination(cast(Any, 0.5))
            except StreamingQueryException:
                return False
            if self._replan.is_set():
                return True
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + self._recheck_s
                if self._writers.recheck(self._planned):
                    return True
        return False

    def replan(self, real_time: bool = False, interval_s: float | None = None, timeout_s: float = 120.0) -> float:
        """Plan again at the next batch boundary (the plan reads the models anew); wait until the new run started.

        Returns the seconds waited.
        """
        t0 = time.monotonic()
        before = self._query
        self._interval_s = interval_s
        self._replan.set()
        while self._query is before and self._thread.is_alive() and time.monotonic() - t0 < timeout_s:
            time.sleep(0.05)
        return time.monotonic() - t0

    def stop(self) -> None:
        """Stop now (callers wanting a batch boundary use ``stop_gracefully``); ends a registry pause too."""
        with self._lock:
            self._stopping = True
            self._stop.set()
            query = self._query
        if query is not None and query.isActive:
            query.stop()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(JOIN_S)

    # ---- what StreamingQuery offers -----------------------------------------
    @property
    def isActive(self) -> bool:  # noqa: N802 - StreamingQuery's name
        """True until stopped, failed or finished (also while paused on the registry between plans)."""
        if self._thread.is_alive():
            return True
        return self._query is not None and not self._stopping and self._query.isActive

    @property
    def id(self) -> str:
        """The query id: kept across re-plans (it lives in the checkpoint)."""
        assert self._query is not None
        return str(self._query.id)

    @property
    def runId(self) -> str:  # noqa: N802 - StreamingQuery's name
        """The current run's id: a new one after each re-plan."""
        assert self._query is not None
        return str(self._query.runId)

    @property
    def status(self) -> dict[str, Any]:
        """The current run's status (no trigger active while re-planning)."""
        query = self._query
        if query is None or not query.isActive:
            return {"message": "re-planning", "isDataAvailable": False, "isTriggerActive": False}
        return dict(query.status)

    @property
    def lastProgress(self) -> dict[str, Any] | None:  # noqa: N802 - StreamingQuery's name
        """The current run's last progress."""
        return None if self._query is None else self._query.lastProgress

    @property
    def planned_ids(self) -> dict[int, str]:
        """The schema ids of the current plan, with their verdicts."""
        return {i: w.status for i, w in sorted(self._planned.items())}

    def awaitTermination(self, timeout: float | None = None) -> bool:  # noqa: N802 - StreamingQuery's name
        """Wait for the end (across re-plans); True if it ended. Never raises: see ``exception()``."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def exception(self) -> BaseException | None:
        """Why it ended, if it failed (None for a stop, a finished available-now run, or still running)."""
        return self._exception
