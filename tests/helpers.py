"""Test helpers: waiting with deadlines, free ports, topic names, HTTP, a real Pushgateway."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], timeout_s: float, interval_s: float = 0.2, what: str = "condition"
) -> T:
    """Poll until `condition()` returns a truthy value; fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}; last value: {last!r}")


_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port nothing listens on right now, and never one this session handed out before.

    The kernel may give the same ephemeral port to two bind(0) calls in a row; two
    services told to listen on it (a broker's controller and a registry, say) would clash.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def free_port_run(count: int, step: int = 1) -> int:
    """A base port such that base, base+step, ..., base+(count-1)*step are all free and never handed out."""
    while True:
        base = free_port()
        ports = [base + i * step for i in range(1, count)]
        if all(p < 65536 and p not in _handed_out and _bindable(p) for p in ports):
            _handed_out.update(ports)
            return base


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def topic_name(prefix: str) -> str:
    """A unique topic name for one test."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def consume(bootstrap: str, topic: str, until: Callable[[list], bool], timeout_s: float) -> list:
    """Read a topic from the beginning until `until(records)` holds; fail after the deadline.

    Returns confluent-kafka messages (key(), value(), headers(), partition(), offset()).
    """
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=5000, timeout=0.5):
                if msg.error() is None:
                    records.append(msg)
            if until(records):
                return records
    finally:
        consumer.close()
    raise AssertionError(f"timed out after {timeout_s:.0f}s reading {topic}: {len(records)} records")


def end_offsets_total(bootstrap: str, topic: str) -> int:
    """Sum of end offsets of a topic's partitions."""
    from stream.local.topics import describe_topics

    for t in describe_topics(bootstrap):
        if t.name == topic:
            return t.messages
    raise AssertionError(f"no topic {topic}")


def http_get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    """(status, body); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


class Pushgateway:
    """A real Prometheus Pushgateway (Debian's package) on a free port."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("prometheus-pushgateway")
        assert binary, "prometheus-pushgateway comes from Debian, installed by `make setup`"
        self.proc = subprocess.Popen(
            [binary, f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=open(self.tmp / "pushgateway.log", "ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: http_get(f"http://127.0.0.1:{self.port}/-/ready")[0] == 200, 30, what="pushgateway ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def groups(self) -> str:
        return http_get(f"http://127.0.0.1:{self.port}/metrics")[1]

    def value(self, name: str, **labels: str) -> float | None:
        """The pushed sample ``name`` whose labels include ``labels``; None if absent."""
        from prometheus_client.parser import text_string_to_metric_families

        for fam in text_string_to_metric_families(self.groups()):
            for s in fam.samples:
                if s.name == name and labels.items() <= s.labels.items():
                    return float(s.value)
        return None


KAFKA_ROW_DDL = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"


def kafka_rows(spark, messages, topic: str = "t", timestamp=None):
    """A DataFrame shaped like the Kafka source: (key, value) pairs at offsets 0, 1, ... of partition 0."""
    return spark.createDataFrame(
        [(k, v, topic, 0, i, timestamp) for i, (k, v) in enumerate(messages)], KAFKA_ROW_DDL
    )


def http_call(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10.0,
    context=None,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one real HTTP request; errors are answers too. ``context``: an SSLContext."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
            return r.status, dict(r.headers.items()), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read()


class HeartriskServer:
    """``heartrisk serve`` as a real process on a free port, stopped with SIGTERM."""

    def __init__(self, tmp: Path, env: dict[str, str], dev: bool = False, context=None) -> None:
        import os
        import sys

        self.port = free_port()
        self.context = context  # an SSLContext: the server speaks HTTPS
        self.url = f"{'https' if context else 'http'}://127.0.0.1:{self.port}"
        self.log = tmp / f"serve-{self.port}.log"
        self.env = {**os.environ, **env, "HEARTRISK_SERVE_PORT": str(self.port)}
        self.cmd = [str(Path(sys.executable).parent / "heartrisk"), "serve", *(["--dev"] if dev else [])]
        self.proc: subprocess.Popen | None = None

    def start(self) -> HeartriskServer:
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        def ready() -> bool:
            try:
                return http_call("GET", self.url + "/readyz", timeout=3, context=self.context)[0] == 200
            except OSError:
                return False

        wait_for(lambda: self.proc.poll() is not None or ready(), 60, what="heartrisk serve ready")
        assert self.proc.poll() is None, self.log.read_text()[-2000:]
        return self

    def stop(self) -> int:
        """SIGTERM; the exit code (requests in flight finish first)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(30)

    def logs(self) -> str:
        return self.log.read_text()


def terminate(procs: Iterable[subprocess.Popen], timeout_s: float = 60.0) -> None:
    """SIGTERM every process still running; SIGKILL one that has not ended within the timeout."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                p.kill()


def kill_mid_stream(events: list, kills: int, settings, start: Callable[[int], subprocess.Popen],
                    outputs: Callable[[], int]) -> list[float]:
    """kill -9 a scorer (its process group) ``kills`` times while ``events`` are published at 5,000/s.

    The events go out in ``kills + 1`` chunks; chunk k+1 waits for kill k, so every kill lands with
    events still to score. ``start(k)`` starts run k; each run is killed once ``outputs()`` has grown
    by 1,000. Returns the seconds from each start to its 1,000 new outputs. The caller starts the last run.
    """
    import os
    import threading

    from stream.app.produce import publish

    total = len(events)
    chunks = [events[i * total // (kills + 1):(i + 1) * total // (kills + 1)] for i in range(kills + 1)]
    killed = [threading.Event() for _ in range(kills)]

    def produce_around_the_kills() -> None:
        for k, chunk in enumerate(chunks):
            publish(iter(chunk), len(chunk), settings, rate=5000, progress=False)
            if k < kills:
                killed[k].wait(300)

    producer = threading.Thread(target=produce_around_the_kills)
    producer.start()
    recovered = []
    try:
        for k in range(kills):
            before, began = outputs(), time.monotonic()
            scorer = start(k)
            wait_for(lambda b=before: outputs() >= b + 1000, 240, what=f"outputs from run {k + 1}")
            recovered.append(time.monotonic() - began)
            os.killpg(scorer.pid, signal.SIGKILL)
            scorer.wait(30)
            assert scorer.returncode == -signal.SIGKILL
            killed[k].set()
    finally:
        for event in killed:
            event.set()
        producer.join(300)
    return recovered
