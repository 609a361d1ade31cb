"""Measuring: read output timestamps and latencies from Kafka, sample processes' RSS and CPU."""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, TopicPartition

from stream.config import Settings


def end_total(settings: Settings, topic: str) -> int:
    """Sum of a topic's end offsets."""
    c = Consumer(settings.kafka_client_config(**{"group.id": "bench-offsets"}))
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        c.close()


def wait_for_total(settings: Settings, topic: str, n: int, timeout_s: float) -> bool:
    """Wait until a topic holds n records."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if end_total(settings, topic) >= n:
            return True
        time.sleep(0.25)
    return False


def iso_ms(text: str) -> float:
    """An ISO-8601 time (``...Z``) as Unix milliseconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000.0


@dataclass
class OutputStats:
    """What the output topic says about a run."""

    count: int = 0
    distinct_events: int = 0
    first_ts_ms: float = 0.0
    last_ts_ms: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    probabilities: dict[str, float] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Events per second from the first prediction written to the last."""
        span = (self.last_ts_ms - self.first_ts_ms) / 1000.0
        return self.count / span if span > 0 else float("nan")


def read_output(
    settings: Settings, topic: str, expected: int, timeout_s: float = 120, keep_probabilities: bool = False,
    latency_after_ms: float | None = None, decode: Callable[[bytes], dict[str, Any]] | None = None,
) -> OutputStats:
    """Consume a whole topic: count, first/last timestamps, per-record latency (output ts - input ts).

    ``decode`` turns a record value into a dict (default: JSON).
    """
    decode = decode or json.loads
    c = Consumer(
        settings.kafka_client_config(
            **{"group.id": f"bench-{uuid.uuid4().hex}", "auto.offset.reset": "earliest", "enable.auto.commit": False}
        )
    )
    c.subscribe([topic])
    st = OutputStats(first_ts_ms=float("inf"), last_ts_ms=0.0)
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while st.count < expected and time.monotonic() < deadline:
            for m in c.consume(num_messages=10_000, timeout=0.5):
                if m.error():
                    continue
                ts = float(m.timestamp()[1])
                st.count += 1
                st.first_ts_ms = min(st.first_ts_ms, ts)
                st.last_ts_ms = max(st.last_ts_ms, ts)
                rec = decode(m.value() or b"{}")
                seen.add(rec["event_id"])
                if latency_after_ms is not None:
                    t_in = iso_ms(rec["event_time"])
                    if t_in >= latency_after_ms:
                        st.latencies_ms.append(ts - t_in)
                if keep_probabilities:
                    st.probabilities[rec["event_id"]] = rec["probability"]
    finally:
        c.close()
    st.distinct_events = len(seen)
    return st


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95, p99, max and count."""
    if not values:
        return {"count": 0}
    v = sorted(values)

    def q(p: float) -> float:
        return v[min(len(v) - 1, int(round(p * (len(v) - 1))))]

    return {"count": len(v), "p50": q(0.5), "p95": q(0.95), "p99": q(0.99), "max": v[-1], "mean": statistics.fmean(v)}


class ResourceSampler:
    """Samples peak RSS and CPU seconds of named process trees every 0.5 s."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {}
        self.peak_rss: dict[str, int] = {}
        self.cpu: dict[str, dict[int, float]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def watch(self, name: str, pid: int) -> None:
        """Track a process and its children under a name (a new pid restarts that name's figures)."""
        self.pids[name] = pid
        self.peak_rss[name] = 0
        self.cpu[name] = {}

    def snapshot(self, name: str) -> dict[str, float]:
        """Peak RSS (MiB) and CPU seconds of a name so far."""
        self._sample()
        return {
            "peak_rss_mib": round(self.peak_rss.get(name, 0) / 2**20, 1),
            "cpu_seconds": round(sum(self.cpu.get(name, {}).values()), 1),
        }

    def _sample(self) -> None:
        for name, pid in list(self.pids.items()):
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                    t = p.cpu_times()
                    self.cpu[name][p.pid] = t.user + t.system
                except psutil.NoSuchProcess:
                    pass
            self.peak_rss[name] = max(self.peak_rss[name], rss)

    def _loop(self) -> None:
        while not self.stop.wait(0.5):
            self._sample()

    def start(self) -> ResourceSampler:
        """Begin sampling."""
        self.thread.start()
        return self

    def finish(self) -> dict[str, dict[str, float]]:
        """Stop and report per name: peak RSS (MiB) and CPU seconds."""
        self._sample()
        self.stop.set()
        self.thread.join(5)
        return {
            n: {"peak_rss_mib": round(self.peak_rss[n] / 2**20, 1), "cpu_seconds": round(sum(self.cpu[n].values()), 1)}
            for n in self.pids
        }


class Scorer:
    """``heartrisk score`` as a child process with its own settings."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.launched_ms = time.time() * 1000
        self.stop_seconds: float | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "score"],
            env={**os.environ, **env},
            stdout=open(log, "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_started(self, timeout_s: float = 180) -> None:
        """Until the query runs."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                msg = f"scorer exited ({self.proc.returncode}); see {self.log}"
                raise RuntimeError(msg)
            if 'event="scorer started"' in self.log.read_text(errors="replace"):
                return
            time.sleep(0.25)
        msg = f"scorer did not start; see {self.log}"
        raise RuntimeError(msg)

    def stop(self) -> int:
        """Graceful stop; ``stop_seconds`` is how long it took from SIGTERM to exit."""
        if self.proc.poll() is None:
            t0 = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.stop_seconds = time.monotonic() - t0
        return self.proc.returncode

    def batches(self) -> list[dict[str, Any]]:
        """The batch lines the scorer logged."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if 'event="batch"' in line:
                fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
                out.append({k: v.strip('"') for k, v in fields.items()})
        return out


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "hostname_hash": uuid.uuid5(uuid.NAMESPACE_DNS, platform.node()).hex[:8],
        "cpus": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def say(msg: str) -> None:
    """Progress line."""
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
