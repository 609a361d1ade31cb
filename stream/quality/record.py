"""Record: each micro-batch of labelled outcomes becomes counts, the window, the progress file and a record.

One aggregation per batch, grouped by the exact probability (so the AUC is
exact), computes the confusion matrix and the Brier sum in the JVM; the driver
only adds up the groups. A batch id already recorded (a replay after a crash)
is skipped, so the counts do not double. The listener adds what only progress
events know: outcomes read and invalid (the observation of the outcome side)
and rows the watermark dropped as too late.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming.listener import StreamingQueryListener

from stream.monitor.progress import read_progress, write_progress
from stream.monitor.quality import (
    ALL,
    add_quality,
    add_to_window,
    empty_quality,
    figures,
    subgroup_figures,
    window_quality,
)
from stream.quality.read import OUTCOMES

logger = logging.getLogger(__name__)

TOTALS = ("read", "invalid", "matched", "unmatched", "late_rows")


def batch_counts(df: DataFrame) -> tuple[int, dict[str, Any]]:
    """(unmatched, labelled counts per group) of one batch of the join's output.

    One aggregation grouped by (probability, sex, age band); the driver adds the
    groups up into ``all``, ``sex=<value>`` and ``age_band=<value>``.
    """
    y, pred, p = F.col("outcome"), F.col("prediction"), F.col("probability")
    matched = F.col("p_event_id").isNotNull()
    rows = df.groupBy(
        F.when(matched, p).alias("p"), F.when(matched, F.col("o_sex")).alias("sex"),
        F.when(matched, F.col("o_age_band")).alias("band"),
    ).agg(
        F.count_if(~matched).alias("unmatched"),
        F.count_if(matched & (y == 1)).alias("pos"),
        F.count_if(matched & (y == 0)).alias("neg"),
        F.count_if(matched & (y == 1) & (pred == 1)).alias("tp"),
        F.count_if(matched & (y == 0) & (pred == 1)).alias("fp"),
        F.count_if(matched & (y == 0) & (pred == 0)).alias("tn"),
        F.count_if(matched & (y == 1) & (pred == 0)).alias("fn"),
        F.sum(F.when(matched, (p - y) * (p - y))).alias("brier_sum"),
    ).collect()
    groups: dict[str, Any] = {}
    unmatched = 0
    for r in rows:
        unmatched += int(r["unmatched"])
        if r["p"] is None:
            continue
        cell = {"matched": r["pos"] + r["neg"], "tp": r["tp"], "fp": r["fp"], "tn": r["tn"], "fn": r["fn"],
                "brier_sum": r["brier_sum"] or 0.0, "histogram": {repr(float(r["p"])): [r["pos"], r["neg"]]}}
        names = [ALL] + [f"{kind}={r[col]}" for kind, col in (("sex", "sex"), ("age_band", "band")) if r[col]]
        for name in names:
            add_quality(groups.setdefault(name, empty_quality()), cell)
    return unmatched, groups


class FeedbackRecorder(StreamingQueryListener):
    """The feedback query's progress file: totals, the window of labelled counts, the last figures."""

    def __init__(self, path: Path, query_name: str, window_s: float, publish: Any = None) -> None:
        super().__init__()
        self.path, self.query_name, self.publish = path, query_name, publish
        self.query_id: str | None = None
        self._lock = threading.RLock()
        previous = read_progress(path) or {}
        self.state: dict[str, Any] = {
            "query_name": query_name, "state": "starting", "pid": os.getpid(), "host": socket.gethostname(),
            "started_at": time.time(), "last_progress_at": None,
            "totals": {**dict.fromkeys(TOTALS, 0), **previous.get("totals", {})},
            "last_batch_id": previous.get("last_batch_id", -1),
            "window_s": window_s, "bucket_s": window_s / 60,
            # counts per group since version 1; a window of another length or shape starts again
            "buckets": previous.get("buckets", [])
            if previous.get("window_s") == window_s and previous.get("groups_version") == 1 else [],
            "groups_version": 1,
        }
        self._save()

    def _save(self) -> None:
        with self._lock:
            self.state["updated_at"] = time.time()
            write_progress(self.path, self.state)

    def figures(self, now: float | None = None) -> dict[str, Any]:
        """The window's figures now, with the subgroups'."""
        s = self.state
        groups = window_quality(s["buckets"], now or time.time(), s["window_s"], s["bucket_s"])
        return {**figures(groups.get(ALL) or empty_quality()), "subgroups": subgroup_figures(groups)}

    def record_batch(self, df: DataFrame, batch_id: int) -> None:
        """foreachBatch: count the batch (once per batch id), save, publish the window's figures."""
        if batch_id <= self.state["last_batch_id"]:
            logger.info('event="feedback batch already recorded" batch_id=%d', batch_id)
            return
        unmatched, groups = batch_counts(df)
        matched = groups[ALL]["matched"] if ALL in groups else 0
        with self._lock:
            s = self.state
            s["totals"]["matched"] += matched
            s["totals"]["unmatched"] += unmatched
            if matched:
                s["buckets"] = add_to_window(s["buckets"], groups, time.time(), s["bucket_s"], s["window_s"])
            s["last_batch_id"] = batch_id
            record = {"query": self.query_name, "batch_id": batch_id, "at": time.time(), "window_s": s["window_s"],
                      **self.figures(), "totals": dict(s["totals"])}
            self._save()
        if self.publish is not None and (matched or unmatched):
            self.publish(json.dumps(record).encode())
        logger.info('event="feedback batch" batch_id=%d matched=%d unmatched=%d', batch_id, matched, unmatched)

    def onQueryStarted(self, event: Any) -> None:  # noqa: N802 - Spark's API
        """The feedback query started."""
        if event.name == self.query_name:
            self.query_id = str(event.id)
            self.state.update(state="active", last_progress_at=time.time())
            self._save()

    def onQueryProgress(self, event: Any) -> None:  # noqa: N802 - Spark's API
        """A batch ended: outcomes read and invalid, rows dropped behind the watermark."""
        p = event.progress
        if str(p.id) != self.query_id:
            return
        try:
            with self._lock:
                t = self.state["totals"]
                obs = (p.observedMetrics or {}).get(OUTCOMES)
                if obs is not None and p.numInputRows:
                    row = obs.asDict()
                    t["read"] += int(row["read"] or 0)
                    t["invalid"] += int(row["invalid"] or 0)
                t["late_rows"] += sum(int(op.numRowsDroppedByWatermark or 0) for op in p.stateOperators or [])
                self.state["state_rows"] = sum(int(op.numRowsTotal or 0) for op in p.stateOperators or [])
                self.state["state_bytes"] = sum(int(op.memoryUsedBytes or 0) for op in p.stateOperators or [])
                self.state.update(state="active", last_progress_at=time.time(), batch_id=p.batchId)
                self._save()
        except Exception:  # the listener must never take the query down
            logger.exception('event="feedback progress not recorded"')

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802 - Spark's API
        """No new data; still alive."""
        if str(event.id) == self.query_id:
            self.state["last_progress_at"] = time.time()
            self._save()

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802 - Spark's API
        """The query ended."""
        if str(event.id) == self.query_id:
            self.state["state"] = "failed" if event.exception else "terminated"
            self._save()
