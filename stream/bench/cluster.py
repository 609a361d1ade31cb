"""``heartrisk bench --cluster``: the scorer on a Spark standalone cluster of 1 and 2 workers, against
a Kafka of 1 and 3 brokers, in one run.

Everything runs on this machine, on free loopback ports and in a temp dir, so a user's own
local broker or cluster is left alone. Each combination drains the same number of
preloaded events from earliest (events/s from the output records' Kafka timestamps, first
to last, as the main bench does); the micro-batch p99 comes from the batch durations the
scorer logs, the first (cold) batch left out; the CPU seconds of the driver, the executors
(under their workers) and the brokers give the cost of one event. Medians over ``reps`` runs,
alternating the brokers.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import socket
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from stream.bench.measure import machine_info, percentiles, say
from stream.config import Settings
from stream.local.cluster import LocalCluster
from stream.local.kafka_cluster import LocalKafka

WORKER_CORES = 1
WORKER_MEMORY = "1g"
PARTITIONS = 4


def _free_base(count: int) -> int:
    """A port such that it and the next count - 1 are free on loopback."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + count >= 65536:
            continue
        try:
            socks = []
            for p in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()


def _kafka(work: Path, brokers: int, settings: Settings) -> LocalKafka:
    base = _free_base(2 * brokers)
    return LocalKafka(work / f"kafka-{brokers}", tuple(base + 2 * i for i in range(brokers)),
                      tuple(base + 1 + 2 * i for i in range(brokers)), settings.path(settings.jvm_dir), "768m",
                      PARTITIONS)


def run_cluster_bench(settings: Settings, n: int, reps: int, max_offsets: int, results_dir: Path) -> Path:
    """Measure every (workers, brokers) combination; write ``<date>-cluster.json`` and ``.md``."""
    from stream.bench.run import QUICK, Bench

    started = time.monotonic()
    # SIGTERM stops the bench like Ctrl-C: the finally below then stops every daemon it started
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    work = Path(tempfile.mkdtemp(prefix="heartrisk-bench-cluster-"))
    spark = LocalCluster(work / "spark", _free_base(1), _free_base(1))
    kafkas = {b: _kafka(work, b, settings) for b in (1, 3)}
    rows: list[dict[str, Any]] = []
    try:
        for b, kafka in kafkas.items():
            say(f"cluster bench: starting a {b}-broker Kafka")
            kafka.up()
        for b in kafkas:
            (work / f"b{b}").mkdir()
        benches = {b: Bench(dataclasses.replace(settings, bootstrap_servers=k.bootstrap), QUICK, work / f"b{b}", k)
                   for b, k in kafkas.items()}
        for workers in (1, 2):
            say(f"cluster bench: {workers} Spark worker(s) of {WORKER_CORES} core, {WORKER_MEMORY}")
            spark.up(workers, WORKER_CORES, WORKER_MEMORY)
            runs: dict[int, list[dict[str, Any]]] = {1: [], 3: []}
            for rep in range(reps):
                for brokers, bench in benches.items():
                    name = f"cluster-{workers}w{brokers}b{rep + 1}"
                    runs[brokers].append(_one(bench, spark, kafkas[brokers], n, max_offsets, name))
                    r = runs[brokers][-1]
                    say(f"cluster bench: {workers} worker(s), {brokers} broker(s), run {rep + 1}/{reps}: "
                        f"{r['events_per_second']:,.0f} events/s, batch p99 {r['batch_p99_ms']:,.0f} ms")
            rows += [_summary(workers, brokers, rs) for brokers, rs in runs.items()]
        for bench in benches.values():
            bench.sampler.finish()
    finally:
        spark.down()
        for kafka in kafkas.values():
            kafka.down()
        shutil.rmtree(work, ignore_errors=True)
    res = {"finished_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine_info(),
           "events": n, "reps": reps, "max_offsets_per_trigger": max_offsets, "partitions": PARTITIONS,
           "worker_cores": WORKER_CORES, "worker_memory": WORKER_MEMORY, "rows": rows,
           "wall_seconds": round(time.monotonic() - started, 1)}
    return _write(res, results_dir)


def _one(bench: Any, spark: LocalCluster, kafka: LocalKafka, n: int, max_offsets: int, name: str) -> dict[str, Any]:
    """One drain of n preloaded events by a scorer on the cluster; CPU by role."""
    for worker, pid in spark.running_workers().items():
        bench.sampler.watch(worker, pid)  # an executor is a child of its worker
    for node_id, broker_pid in kafka.pids().items():
        if broker_pid:
            bench.sampler.watch(f"broker-{node_id}", broker_pid)
    r = bench.drain_throughput(name, n, PARTITIONS, max_offsets, spark.url)
    r.pop("_topics")
    if not r["completed"]:
        msg = f"cluster bench, {name}: {r['distinct_event_ids']} of {n} events scored"
        raise RuntimeError(msg)
    log = bench.work / f"scorer-{name}.log"
    durations = [float(line.split("duration_ms=")[1].split()[0]) for line in log.read_text().splitlines()
                 if 'event="batch"' in line and "duration_ms=" in line]
    durations = durations[1:]  # the first batch starts the executors' JIT cold: it is the cold start, not a batch
    cpu = {"driver": r["resources"]["scorer"]["cpu_seconds"],
           "executors": sum(bench.sampler.snapshot(w)["cpu_seconds"] for w in spark.running_workers()),
           "brokers": sum(bench.sampler.snapshot(f"broker-{i}")["cpu_seconds"] for i in kafka.pids())}
    return {"events_per_second": r["events_per_second"], "batches": len(durations),
            "batch_p99_ms": percentiles(durations)["p99"] if durations else 0.0,
            "cold_start_seconds": r["cold_start_seconds"], "cpu_seconds": cpu, "events": n}


def _summary(workers: int, brokers: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    rate = statistics.median(r["events_per_second"] for r in runs)
    cpu = {k: statistics.median(r["cpu_seconds"][k] for r in runs) for k in ("driver", "executors", "brokers")}
    n = runs[0]["events"]
    return {
        "workers": workers, "brokers": brokers, "executor_cores": workers * WORKER_CORES,
        "events_per_second": [r["events_per_second"] for r in runs],
        "median_events_per_second": round(rate, 1),
        "median_events_per_second_per_executor_core": round(rate / (workers * WORKER_CORES), 1),
        "batch_p99_ms": [round(r["batch_p99_ms"], 1) for r in runs],
        "median_batch_p99_ms": round(statistics.median(r["batch_p99_ms"] for r in runs), 1),
        "median_batches": statistics.median(r["batches"] for r in runs),
        "cpu_microseconds_per_event": {k: round(v * 1e6 / n, 1) for k, v in cpu.items()},
    }


def _write(res: dict[str, Any], results_dir: Path) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{res['finished_at'][:10]}-cluster"
    path = results_dir / f"{stem}.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    base = next((r for r in res["rows"] if r["workers"] == 1 and r["brokers"] == 1), None)
    lines = [
        f"# Scale: Spark workers and Kafka brokers (finished {res['finished_at']})", "",
        f"`heartrisk bench --cluster`: {res['events']:,} preloaded events drained from earliest, "
        f"{res['reps']} run(s) each, medians; {res['partitions']} input partitions, "
        f"maxOffsetsPerTrigger {res['max_offsets_per_trigger']:,}; workers of {res['worker_cores']} core and "
        f"{res['worker_memory']} each. Machine: {res['machine']['cpus']} cores, {res['machine']['memory_gib']} GiB.",
        "",
        "| workers | brokers | events/s | per executor core | vs 1 worker, 1 broker | micro-batch p99 | "
        "CPU µs/event: driver | executors | brokers |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        ratio = r["median_events_per_second"] / base["median_events_per_second"] if base else float("nan")
        c = r["cpu_microseconds_per_event"]
        lines.append(f"| {r['workers']} | {r['brokers']} | {r['median_events_per_second']:,.0f} | "
                     f"{r['median_events_per_second_per_executor_core']:,.0f} | {ratio:.2f} | "
                     f"{r['median_batch_p99_ms']:,.0f} ms | {c['driver']} | {c['executors']} | {c['brokers']} |")
    lines += [
        "",
        "- events/s: first to last output record (Kafka timestamps), so the scorer's start-up is not in it.",
        "- micro-batch p99: over the batches after the first (the first starts the executors and the JIT cold).",
        "- CPU µs/event: each role's CPU seconds over the whole run divided by the events, so start-up is in it "
        "(the driver's and executors' JVMs, Spark's set-up); the brokers' figure covers writing the preloaded "
        "events, replicating them, serving the reads and writing the predictions.",
        "- Every process (driver, executors, brokers, the event generator) shares this machine's cores, so a "
        "second worker adds executor threads, not CPU, and three brokers take CPU from the scorer: this run "
        "shows the cost of each role, not the speed-up a real cluster would give.",
        "",
    ]
    path.with_suffix(".md").write_text("\n".join(lines))
    return path
