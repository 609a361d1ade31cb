"""Progress of the scorer: a ``StreamingQueryListener`` that records each micro-batch in the progress file.

The listener runs in the driver. It writes a small JSON progress file beside the
checkpoint (atomically: write, then rename), which the sidecar exporter reads.
A file survives a restart of either process; in a pod both containers mount the
same volume. Totals in the file are cumulative across scorer restarts, so they
can be exported as Prometheus counters.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyspark.sql.streaming.listener import StreamingQueryListener

from stream.contract.codes import ERROR_CODES
from stream.monitor.drift import LEVELS, add_to_window, batch_counts
from stream.monitor.progress import empty_totals, read_progress, write_progress
from stream.pipeline.columns import LATENCY_BUCKETS, OBSERVATION, UNPLANNED_SCHEMA_ID, bucket_name

logger = logging.getLogger(__name__)


class ProgressListener(StreamingQueryListener):
    """Writes the scorer's progress file on start, on every progress event and on termination."""

    def __init__(
        self, path: Path, query_name: str, model_version: str,
        on_batch_committed: Callable[[Any], None] | None = None,
        on_closed: Callable[[], None] | None = None,
        drift_reference: dict[str, Any] | None = None, drift_window_s: float = 3600.0,
    ) -> None:
        super().__init__()
        self.on_batch_committed = on_batch_committed  # given each batch's source end offsets
        self.on_closed = on_closed  # called once, when the query has ended for good
        self.path = path
        self.query_name = query_name
        self.model_version = model_version
        previous = read_progress(path) or {}
        self.query_id: str | None = None
        self.closed = False
        self.restarting = False  # a model swap stops the query on purpose, then starts it on the same checkpoint
        # the listener bus and the Avro re-planning thread (registry pauses) call in from different threads
        self._lock = threading.RLock()
        self.state: dict[str, Any] = {
            "query_name": query_name,
            "model_version": model_version,
            "state": "starting",
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": time.time(),
            "updated_at": time.time(),
            "last_progress_at": None,
            "totals": previous.get("totals") or empty_totals(),
            "registry_pause": None,
        }
        self.state["totals"].setdefault("levels", dict.fromkeys(LEVELS, 0))
        if drift_reference is not None:
            # the window goes on across restarts, unless the reference changed (another model)
            kept = previous.get("drift") or {}
            same = kept.get("reference") == drift_reference
            self.state["drift"] = {
                "reference": drift_reference, "window_s": drift_window_s, "bucket_s": drift_window_s / 60,
                "buckets": kept.get("buckets", []) if same else [],
            }
        write_progress(path, self.state)

    def _save(self) -> None:
        with self._lock:
            self.state["updated_at"] = time.time()
            write_progress(self.path, self.state)

    def set_models(self, models: dict[str, Any], swapped: bool = False, failed: int = 0) -> None:
        """Record the models serving (``{"champion": {...}, "challenger": {...} | None}``), a swap, refusals.

        The shadow figures start again when the pair of models changes.
        """
        with self._lock:
            totals = self.state["totals"]
            totals["model_swaps"] = totals.get("model_swaps", 0) + int(swapped)
            totals["model_swap_failures"] = totals.get("model_swap_failures", 0) + failed
            self.state["models"] = models
            self.state["model_version"] = models["champion"]["version"]
            challenger = models.get("challenger")
            pair = [models["champion"]["version"], challenger["version"]] if challenger else None
            shadow = self.state.get("shadow")
            if pair is None:
                self.state["shadow"] = None
            elif shadow is None or shadow.get("pair") != pair:
                self.state["shadow"] = {"pair": pair, "rows": 0, "agree": 0, "abs_diff_sum": 0.0}
            self._save()

    def expect_restart(self) -> None:
        """The next stop is a re-plan (a model swap): the query's run ends, the scorer does not."""
        self.restarting = True

    def registry_paused(self, schema_id: int, attempt: int) -> None:
        """A batch waits for the schema registry (called on every retry: it doubles as a heartbeat).

        Also before the first plan starts (the registry down at start-up): the
        scorer is then up and waiting, as it is for a pause mid-stream.
        """
        with self._lock:
            if self.state["state"] == "starting":
                self.state["state"] = "active"
            now = time.time()
            pause = self.state.get("registry_pause") or {"schema_id": schema_id, "since": now}
            pause.update(attempts=attempt, last_retry_at=now)
            self.state["registry_pause"] = pause
            self._save()

    def registry_resumed(self) -> None:
        """The registry answered again: the paused batch goes on."""
        with self._lock:
            if self.state.get("registry_pause") is not None:
                self.state["registry_pause"] = None
                self._save()

    def delivered(self, outcome: str) -> None:
        """One exactly-once batch: ``committed``, ``aborted`` or ``skipped`` (committed before a crash).

        Counted only: the batch's progress event (or, after an abort, the query's end) writes the file.
        """
        with self._lock:
            delivery = self.state["totals"].setdefault("delivery", {})
            delivery[outcome] = delivery.get(outcome, 0) + 1

    def onQueryStarted(self, event: Any) -> None:  # noqa: N802 - Spark's API
        """The query started (or restarted from its checkpoint)."""
        if event.name != self.query_name or self.closed or self.query_id not in (None, str(event.id)):
            return
        self.query_id = str(event.id)
        self.state.update(state="active", query_id=str(event.id), run_id=str(event.runId))
        self.state["last_progress_at"] = time.time()
        self._save()

    def onQueryProgress(self, event: Any) -> None:  # noqa: N802 - Spark's API
        """One micro-batch finished (or an idle progress report)."""
        p = event.progress
        if self.closed or str(p.id) != self.query_id:
            return
        try:
            with self._lock:
                self._record(p)
        except Exception:  # the listener must never take the query down
            logger.exception('event="progress not recorded" batch_id=%s', getattr(p, "batchId", "?"))

    def _record(self, p: Any) -> None:
        totals = self.state["totals"]
        obs = p.observedMetrics.get(OBSERVATION) if p.observedMetrics else None
        by_topic: dict[str, int] = {}
        for src in p.sources:
            metrics = src.metrics or {}
            behind = metrics.get("maxOffsetsBehindLatest")
            if behind is not None:
                topic = src.description.split("[", 1)[-1].split("]", 1)[0].removeprefix("Subscribe").strip("[] ")
                by_topic[topic] = int(float(behind))
        durations = {k: v / 1000.0 for k, v in (p.durationMs or {}).items()}
        self.state.update(
            state="active",
            batch_id=p.batchId,
            last_progress_at=time.time(),
            input_rows=p.numInputRows,
            input_rows_per_second=p.inputRowsPerSecond or 0.0,
            processed_rows_per_second=p.processedRowsPerSecond or 0.0,
            batch_duration_seconds=durations.get("triggerExecution", 0.0),
            phase_durations_seconds={k: v for k, v in durations.items() if k != "triggerExecution"},
            offsets_behind_latest=by_topic,
        )
        if self.on_batch_committed is not None and p.numInputRows and p.sources:
            self.on_batch_committed(p.sources[0].endOffset)
        row = obs.asDict() if obs is not None else None
        if row is not None and p.numInputRows:
            totals["batches"] += 1
            totals["input_rows"] += int(row["rows"])
            totals["predictions"] += int(row["predictions"])
            for code in ERROR_CODES:
                totals["dead_letters"][code] = totals["dead_letters"].get(code, 0) + int(row[f"dlq_{code}"])
            for le in LATENCY_BUCKETS:
                totals["latency_buckets"][str(le)] += int(row[bucket_name(le)])
            totals["latency_count"] += int(row["predictions"])
            totals["latency_sum_seconds"] += float(row["latency_ms_sum"] or 0) / 1000.0
            drift = self.state.get("drift")
            if drift is not None:
                counts = batch_counts(row, drift["reference"])
                for level, n in zip(LEVELS, counts["levels"], strict=True):
                    totals["levels"][level] += n
                drift["buckets"] = add_to_window(
                    drift["buckets"], counts, time.time(), drift["bucket_s"], drift["window_s"]
                )
            shadow = self.state.get("shadow")
            if shadow is not None and "shadow_rows" in row:
                shadow["rows"] += int(row["shadow_rows"])
                shadow["agree"] += int(row["shadow_agree"])
                shadow["abs_diff_sum"] += float(row["shadow_abs_diff_sum"] or 0.0)
            quantiles = row["latency_ms_p50_p99"]
            if quantiles:
                self.state["latency_p50_seconds"] = quantiles[0] / 1000.0
                self.state["latency_p99_seconds"] = quantiles[1] / 1000.0
            logger.info(
                'event="batch" batch_id=%d input_rows=%d predictions=%d dead_letters=%d rows_per_s=%.0f '
                "duration_ms=%d",
                p.batchId, row["rows"], row["predictions"], int(row["rows"]) - int(row["predictions"]),
                p.processedRowsPerSecond or 0.0, (p.durationMs or {}).get("triggerExecution", 0),
            )
        self._save()

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802 - Spark's API
        """No new data; still alive."""
        if self.closed or str(event.id) != self.query_id:
            return
        self.state["last_progress_at"] = time.time()
        self._save()

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802 - Spark's API
        """The query stopped or failed; this listener is then done, unless the Avro query re-plans.

        A query that met a schema id its plan does not know ends so that it can be
        re-planned on the same checkpoint: the scorer is still up (and may be paused
        on the registry), so the state stays active and the next run is recorded.
        """
        if self.closed or str(event.id) != self.query_id:
            return
        if (event.exception and UNPLANNED_SCHEMA_ID in str(event.exception)) or (
            self.restarting and not event.exception
        ):
            self.restarting = False
            self._save()
            return
        self.closed = True
        self.state["state"] = "failed" if event.exception else "terminated"
        self._save()
        if self.on_closed is not None:
            self.on_closed()
