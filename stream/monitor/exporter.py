"""The sidecar exporter: scorer progress -> Prometheus Pushgateway, ``/metrics`` and ``/healthz``.

It runs as its own process beside the scorer and reads the progress file that
the scorer's listener writes. On every interval it pushes one snapshot under
a stable grouping key (``job``, ``instance`` = query name). While the Pushgateway
is unreachable it retries with capped exponential backoff; it keeps only the
latest snapshot, so its memory stays bounded. When the scorer is down (query
not active, or no progress for ``stale_after_s``; a retry while paused on the schema
registry counts as a sign of life) it pushes ``heartrisk_up 0``
and nothing else, rather than the last numbers forever. On SIGTERM/SIGINT it
deletes its group from the Pushgateway.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import delete_from_gateway, push_to_gateway

from stream.monitor.drift import LEVELS
from stream.monitor.model_metrics import PREFIX, drift_metrics, quality_metrics
from stream.monitor.progress import read_progress
from stream.monitor.push import push_handler, warn_if_clear_text
from stream.pipeline.columns import LATENCY_BUCKETS
from stream.spec import redact_url

logger = logging.getLogger(__name__)


JOB = "heartrisk"
MAX_BACKOFF_S = 60.0


@dataclass(frozen=True)
class ExporterConfig:
    """What the exporter needs."""

    progress_path: Path
    pushgateway: str
    instance: str
    interval_s: float = 5.0
    stale_after_s: float = 60.0
    port: int = 9108
    job: str = JOB
    feedback_path: Path | None = None  # the feedback query's progress file, when it runs
    user_info: str = field(default="", repr=False)  # Pushgateway basic auth, user:password
    ca_file: str = ""  # CA trusted for an https:// Pushgateway


def scorer_is_up(progress: dict[str, Any] | None, stale_after_s: float, now: float | None = None) -> bool:
    """Active query, and its last progress (or start, or retry while paused on the registry) is recent."""
    if not progress or progress.get("state") != "active":
        return False
    pause = progress.get("registry_pause") or {}
    last = max(float(progress.get("last_progress_at") or 0.0), float(pause.get("last_retry_at") or 0.0))
    return (now or time.time()) - last <= stale_after_s


def build_metrics(progress: dict[str, Any] | None, up: bool, feedback: dict[str, Any] | None = None) -> list[Metric]:
    """The metric families of one snapshot."""
    up_g = GaugeMetricFamily(PREFIX + "up", "1 when the scoring query is active and reporting progress")
    up_g.add_metric([], 1.0 if up else 0.0)
    out: list[Metric] = [up_g]
    last = GaugeMetricFamily(PREFIX + "last_progress_timestamp_seconds", "Unix time of the last query progress")
    last.add_metric([], float((progress or {}).get("last_progress_at") or 0.0))
    out.append(last)
    if not up or not progress:
        return out
    t = progress.get("totals", {})

    def counter(name: str, doc: str, value: float) -> None:
        c = CounterMetricFamily(PREFIX + name, doc)
        c.add_metric([], value)
        out.append(c)

    def gauge(name: str, doc: str, value: float) -> None:
        g = GaugeMetricFamily(PREFIX + name, doc)
        g.add_metric([], value)
        out.append(g)

    counter("input_rows", "Events read from the input topic", t.get("input_rows", 0))
    counter("predictions", "Predictions written", t.get("predictions", 0))
    counter("batches", "Micro-batches with data", t.get("batches", 0))
    dl = CounterMetricFamily(PREFIX + "dead_letters", "Dead letters written, by error code", labels=["error_code"])
    for code, n in sorted(t.get("dead_letters", {}).items()):
        dl.add_metric([code], n)
    out.append(dl)
    gauge("input_rows_per_second", "Rate events arrived, last batch", progress.get("input_rows_per_second", 0.0))
    gauge(
        "processed_rows_per_second", "Rate events were processed, last batch",
        progress.get("processed_rows_per_second", 0.0),
    )
    gauge("batch_duration_seconds", "Duration of the last micro-batch", progress.get("batch_duration_seconds", 0.0))
    gauge("batch_id", "Id of the last micro-batch", float(progress.get("batch_id", -1)))
    phases = GaugeMetricFamily(PREFIX + "batch_phase_duration_seconds", "Phase durations, last batch", labels=["phase"])
    for phase, sec in sorted((progress.get("phase_durations_seconds") or {}).items()):
        phases.add_metric([phase], sec)
    out.append(phases)
    behind = progress.get("offsets_behind_latest") or {}
    lag = GaugeMetricFamily(PREFIX + "offsets_behind_latest", "Kafka offsets behind latest, by topic", labels=["topic"])
    for topic, n in sorted(behind.items()):
        lag.add_metric([topic], n)
    out.append(lag)
    gauge("offsets_behind_latest_max", "Kafka offsets behind latest, max over topics", max(behind.values(), default=0))
    q = GaugeMetricFamily(
        PREFIX + "end_to_end_latency_seconds",
        "Kafka timestamp to scored_at, last batch quantiles",
        labels=["quantile"],
    )
    if "latency_p50_seconds" in progress:
        q.add_metric(["0.5"], progress["latency_p50_seconds"])
        q.add_metric(["0.99"], progress["latency_p99_seconds"])
    out.append(q)
    buckets = t.get("latency_buckets", {})
    count = t.get("latency_count", 0)
    hist = HistogramMetricFamily(
        PREFIX + "prediction_latency_seconds", "Kafka timestamp to scored_at per prediction"
    )
    hist.add_metric(
        [],
        [(str(le), buckets.get(str(le), 0)) for le in LATENCY_BUCKETS] + [("+Inf", count)],
        t.get("latency_sum_seconds", 0.0),
    )
    out.append(hist)
    pause = progress.get("registry_pause")
    gauge("registry_paused", "1 while a batch waits for the schema registry (Avro input, pause policy)",
          1.0 if pause else 0.0)
    gauge("registry_paused_seconds", "How long the current registry pause has lasted (0 when not paused)",
          max(0.0, time.time() - float(pause["since"])) if pause else 0.0)
    out += model_metrics(progress)
    delivery = t.get("delivery") or {}
    tx = CounterMetricFamily(PREFIX + "transactions", "Exactly-once batches' Kafka transactions, by outcome",
                             labels=["outcome"])
    for outcome in ("committed", "aborted"):
        tx.add_metric([outcome], delivery.get(outcome, 0))
    out.append(tx)
    counter("batches_skipped_committed", "Replayed batches skipped: their transaction was committed before a crash",
            delivery.get("skipped", 0))
    levels = CounterMetricFamily(PREFIX + "predictions_by_level", "Predictions written, by risk level",
                                 labels=["risk_level"])
    for level in LEVELS:
        levels.add_metric([level], (t.get("levels") or {}).get(level, 0))
    out.append(levels)
    return out + drift_metrics(progress.get("drift"), time.time()) + quality_metrics(feedback, time.time())


def model_metrics(progress: dict[str, Any]) -> list[Metric]:
    """The models serving (by alias), the swaps, and the challenger's agreement with the champion (shadow)."""
    t = progress.get("totals", {})
    info = GaugeMetricFamily(PREFIX + "model_info", "The model versions in use, by alias (champion scores, "
                             "challenger shadow-scores)", labels=["model_version", "alias"])
    models = progress.get("models") or {"champion": {"version": progress.get("model_version", "unknown")}}
    for alias, m in sorted(models.items()):
        if m:
            info.add_metric([str(m["version"]), alias], 1.0)
    swaps = CounterMetricFamily(PREFIX + "model_swaps", "Model swaps done at a batch boundary")
    swaps.add_metric([], t.get("model_swaps", 0))
    failures = CounterMetricFamily(PREFIX + "model_swap_failures", "Model versions refused (fetch, verify or load "
                                   "failed); the old model kept serving")
    failures.add_metric([], t.get("model_swap_failures", 0))
    out: list[Metric] = [info, swaps, failures]
    shadow = progress.get("shadow")
    if shadow and shadow.get("rows"):
        labels = ["champion_version", "challenger_version"]
        pair = [str(v) for v in shadow["pair"]]
        for name, doc, value in (
            ("shadow_agreement_ratio", "Share of events both models put at the same risk level",
             shadow["agree"] / shadow["rows"]),
            ("shadow_probability_abs_diff_mean", "Mean |challenger - champion| probability",
             shadow["abs_diff_sum"] / shadow["rows"]),
            ("shadow_events", "Events shadow-scored by this pair of models", float(shadow["rows"])),
        ):
            g = GaugeMetricFamily(PREFIX + name, doc, labels=labels)
            g.add_metric(pair, value)
            out.append(g)
    return out


class SnapshotCollector:
    """A prometheus-client collector serving the latest snapshot."""

    def __init__(self) -> None:
        self.metrics: list[Metric] = build_metrics(None, False)
        self.lock = threading.Lock()

    def set(self, metrics: list[Metric]) -> None:
        """Replace the snapshot."""
        with self.lock:
            self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        """Called by the registry."""
        with self.lock:
            yield from self.metrics


class Exporter:
    """The push loop, the HTTP endpoints and the shutdown."""

    def __init__(self, cfg: ExporterConfig) -> None:
        self.cfg = cfg
        self.collector = SnapshotCollector()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.stop = threading.Event()
        self.up = False
        self.pushes = 0
        self.push_failures = 0
        self.server: ThreadingHTTPServer | None = None
        self.handler = push_handler(cfg.user_info, cfg.ca_file)
        warn_if_clear_text(cfg.pushgateway, cfg.user_info)

    @property
    def grouping_key(self) -> dict[str, str]:
        """Stable across restarts of either process."""
        return {"instance": self.cfg.instance}

    def refresh(self) -> None:
        """Read the progress file and rebuild the snapshot."""
        progress = read_progress(self.cfg.progress_path)
        self.up = scorer_is_up(progress, self.cfg.stale_after_s)
        feedback = read_progress(self.cfg.feedback_path) if self.cfg.feedback_path else None
        self.collector.set(build_metrics(progress, self.up, feedback))

    def push(self) -> None:
        """Replace our group on the Pushgateway (raises on failure)."""
        push_to_gateway(
            self.cfg.pushgateway, job=self.cfg.job, registry=self.registry, grouping_key=self.grouping_key, timeout=5,
            handler=self.handler,
        )
        self.pushes += 1

    def serve(self) -> None:
        """Start /metrics and /healthz on a background thread."""
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's API
                if self.path.startswith("/metrics"):
                    body, code, ctype = generate_latest(exporter.registry), 200, "text/plain; version=0.0.4"
                elif self.path.startswith("/healthz"):
                    exporter.refresh()
                    ok = exporter.up
                    body = b"ok\n" if ok else b"scorer down or stale\n"
                    code, ctype = (200 if ok else 503), "text/plain"
                else:
                    body, code, ctype = b"not found\n", 404, "text/plain"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self.server = ThreadingHTTPServer(("0.0.0.0", self.cfg.port), Handler)  # noqa: S104 - a probe endpoint
        threading.Thread(target=self.server.serve_forever, daemon=True, name="exporter-http").start()

    def run(self) -> int:
        """Push until stopped; then delete our group."""
        self.serve()
        logger.info(
            'event="exporter started" pushgateway="%s" instance="%s" progress="%s" port=%d',
            redact_url(self.cfg.pushgateway), self.cfg.instance, self.cfg.progress_path, self.cfg.port,
        )
        backoff = self.cfg.interval_s
        while not self.stop.is_set():
            self.refresh()
            try:
                self.push()
                if self.push_failures:
                    logger.info('event="push recovered" after_failures=%d', self.push_failures)
                self.push_failures = 0
                backoff = self.cfg.interval_s
                wait = self.cfg.interval_s
            except OSError as exc:  # URLError and connection errors are OSErrors
                self.push_failures += 1
                backoff = min(MAX_BACKOFF_S, max(self.cfg.interval_s, backoff * 2))
                wait = backoff
                logger.warning(
                    'event="push failed" pushgateway="%s" failures=%d retry_in_s=%.0f error="%s"',
                    redact_url(self.cfg.pushgateway), self.push_failures, wait, redact_url(str(exc)),
                )
            self.stop.wait(wait)
        self.shutdown()
        return 0

    def shutdown(self) -> None:
        """Delete our group (best effort) and stop serving."""
        try:
            delete_from_gateway(self.cfg.pushgateway, job=self.cfg.job, grouping_key=self.grouping_key, timeout=5,
                                handler=self.handler)
            logger.info('event="group deleted" instance="%s"', self.cfg.instance)
        except OSError as exc:
            logger.warning('event="group not deleted" error="%s"', exc)
        if self.server is not None:
            self.server.shutdown()


def run_exporter(cfg: ExporterConfig) -> int:
    """The ``heartrisk exporter`` command."""
    exporter = Exporter(cfg)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        exporter.stop.set()

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, on_signal)
    return exporter.run()
