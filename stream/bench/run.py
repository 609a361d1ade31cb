"""``heartrisk bench``: every scenario on the local broker, in one invocation.

See bench/README.md for the method. Timings come from Kafka record timestamps
(output minus input, or first to last output), never from the scorer's own
clock, and every figure is reported next to the baselines measured in the
same run.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from stream.bench.baselines import per_request, plain_python
from stream.bench.delivery import delivery_cost
from stream.bench.events import EventFactory, paced, preload
from stream.bench.measure import ResourceSampler, Scorer, machine_info, percentiles, read_output, say, wait_for_total
from stream.config import Settings
from stream.local.kafka_cluster import LocalKafka
from stream.local.topics import ensure_topics


@dataclasses.dataclass(frozen=True)
class Plan:
    """How big each scenario is."""

    throughput_events: int
    ceiling_reps: int
    rates_micro_batch: tuple[int, ...]
    rates_real_time: tuple[int, ...]
    warmup_s: float
    measure_s: float
    naive_events: int
    python_events: int
    partitions: tuple[int, ...]
    scale_events: int
    max_offsets: tuple[int, ...]
    small_backlog: int


FULL = Plan(1_000_000, 3, (1_000, 10_000, 50_000), (1_000, 5_000, 10_000, 50_000), 15.0, 10.0, 200, 200_000,
            (1, 2, 3), 100_000, (10_000, 50_000, 200_000), 100_000)
# --quick: one scorer per scenario kind, tiny sizes; it checks the harness, its figures mean little.
QUICK = Plan(10_000, 1, (1_000,), (1_000,), 2.0, 4.0, 5, 10_000, (1,), 5_000, (), 5_000)

# The tuned defaults the throughput scenario runs with (see bench/README.md).
THROUGHPUT_MAX_OFFSETS = 200_000


class Bench:
    """Holds the broker, the working directory and the results."""

    def __init__(self, settings: Settings, plan: Plan, workdir: Path, kafka: LocalKafka | None = None) -> None:
        self.broker = kafka or LocalKafka.from_settings(settings)
        self.started_broker = bool(self.broker.up())
        self.s = dataclasses.replace(settings, bootstrap_servers=self.broker.bootstrap)
        self.plan = plan
        self.work = workdir
        self.factory = EventFactory(self.s)
        self.sampler = ResourceSampler()
        self.sampler.watch("generator", psutil.Process().pid)
        pid = self.broker.pids()[1]
        if pid:
            self.sampler.watch("broker", pid)
        self.sampler.start()
        self.scorer_peak: dict[str, float] = {"peak_rss_mib": 0.0, "cpu_seconds": 0.0}
        self.results: dict[str, Any] = {}
        self.next_event = 0

    def topics(self, name: str, partitions: int = 3) -> tuple[str, str, str]:
        """Fresh input, output and dead-letter topics."""
        tag = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        names = (f"{tag}-in", f"{tag}-out", f"{tag}-dlq")
        ensure_topics(self.s.bootstrap_servers, names, partitions)
        return names

    def scorer(self, topics: tuple[str, str, str], name: str, trigger: str, max_offsets: int,
               master: str = "local[*]", extra_env: dict[str, str] | None = None) -> Scorer:
        """Start a scorer on the topics and wait until its query runs."""
        env = {
            **self.s.to_env(),
            "HEARTRISK_INPUT_TOPIC": topics[0],
            "HEARTRISK_OUTPUT_TOPIC": topics[1],
            "HEARTRISK_DLQ_TOPIC": topics[2],
            "HEARTRISK_CHECKPOINT_DIR": str(self.work / "checkpoints"),
            "HEARTRISK_QUERY_NAME": f"bench-{name}-{uuid.uuid4().hex[:6]}",
            "HEARTRISK_TRIGGER": trigger,
            "HEARTRISK_MAX_OFFSETS_PER_TRIGGER": str(max_offsets),
            "HEARTRISK_STARTING_OFFSETS": "earliest",
            "HEARTRISK_SPARK_MASTER": master,
            "HEARTRISK_SPARK_DRIVER_MEMORY": "1536m",
            "HEARTRISK_LOG_LEVEL": "INFO",
            **(extra_env or {}),
        }
        sc = Scorer(env, self.work / f"scorer-{name}.log")
        self.sampler.watch("scorer", sc.proc.pid)
        sc.wait_started()
        return sc

    def stop_scorer(self, sc: Scorer) -> dict[str, float]:
        """Stop it; return its peak RSS and CPU seconds, and keep the peak over all runs."""
        sc.stop()
        snap = self.sampler.snapshot("scorer")
        self.scorer_peak["peak_rss_mib"] = max(self.scorer_peak["peak_rss_mib"], snap["peak_rss_mib"])
        return snap

    def preload(self, topic: str, n: int) -> float:
        """Untimed preload."""
        secs = preload(self.s, topic, n, self.factory, self.next_event)
        self.next_event += n
        return secs

    # ---- scenarios -------------------------------------------------------
    def drain_throughput(self, name: str, n: int, partitions: int, max_offsets: int,
                         master: str = "local[*]", extra_env: dict[str, str] | None = None) -> dict[str, Any]:
        """Preload n events, start a scorer from earliest, measure first-to-last output throughput."""
        t = self.topics(name, partitions)
        secs = self.preload(t[0], n)
        sc = self.scorer(t, name, "processing-time=0", max_offsets, master, extra_env)
        ok = wait_for_total(self.s, t[1], n, timeout_s=max(120, n / 2000))
        scorer_res = self.stop_scorer(sc)
        batches = sc.batches()  # after the stop: the listener logs a batch only once its progress arrives
        resources = {"scorer": scorer_res, **{k: self.sampler.snapshot(k) for k in ("broker", "generator")}}
        out = read_output(self.s, t[1], n)
        durations = [float(b.get("rows_per_s", 0)) for b in batches]
        return {
            "events": n,
            "spark_master": master,
            "cold_start_seconds": round((out.first_ts_ms - sc.launched_ms) / 1000, 2),
            "partitions": partitions,
            "max_offsets_per_trigger": max_offsets,
            "preload_seconds": round(secs, 1),
            "predictions": out.count,
            "distinct_event_ids": out.distinct_events,
            "completed": ok and out.distinct_events == n,
            "events_per_second": round(out.throughput, 1),
            "batches": len(batches),
            "batch_seconds": round(sum(float(b.get("duration_ms", 0)) for b in batches) / 1000, 3),
            "median_batch_rows_per_second": round(statistics.median(durations), 1) if durations else None,
            "graceful_stop_seconds": round(sc.stop_seconds or 0.0, 2),
            "resources": resources,
            "_topics": t,
        }

    def ceiling(self, topic: str, n: int) -> dict[str, Any]:
        """The same plan on the same events held in memory, into the noop sink."""
        from pyspark import StorageLevel

        from stream.bench.plan import trivial_plan
        from stream.model.artifact import load_model
        from stream.pipeline.build import build_output
        from stream.pipeline.columns import RAW_COLUMNS
        from stream.session import get_spark

        spark = get_spark(dataclasses.replace(self.s, spark_master="local[*]", spark_driver_memory="3g"), "bench")
        model = load_model(self.s.path(self.s.model_dir), engine=self.s.engine)
        raw = (
            spark.read.format("kafka").options(**self.s.spark_kafka_options()).option("subscribe", topic)
            .option("startingOffsets", "earliest").option("endingOffsets", "latest").load()
            .select(*RAW_COLUMNS).repartition(4).persist(StorageLevel.MEMORY_ONLY)
        )
        held = raw.count()
        trivial_times = []
        for _ in range(self.plan.ceiling_reps + 1):
            t0 = time.perf_counter()
            trivial_plan(raw).write.format("noop").mode("overwrite").save()
            trivial_times.append(time.perf_counter() - t0)
        times = []
        for _ in range(self.plan.ceiling_reps + 1):  # the first run warms the JIT and is not counted
            t0 = time.perf_counter()
            build_output(raw, model, self.s).write.format("noop").mode("overwrite").save()
            times.append(time.perf_counter() - t0)
        timed = times[1:]
        raw.unpersist()
        self.results["_spark"] = (spark, model)
        return {
            "events": held,
            "runs_seconds": [round(x, 2) for x in timed],
            "median_seconds": round(statistics.median(timed), 2),
            "events_per_second": round(held / statistics.median(timed), 1),
            "trivial_plan_events_per_second": round(held / statistics.median(trivial_times[1:]), 1),
        }

    def graceful_stop_under_load(self, n: int) -> dict[str, Any]:
        """SIGTERM while a backlog drains (no gap between batches): seconds until the process exits."""
        t = self.topics("stop", 3)
        self.preload(t[0], n)
        sc = self.scorer(t, "stop", "processing-time=0", THROUGHPUT_MAX_OFFSETS)
        wait_for_total(self.s, t[1], n // 10, timeout_s=300)
        self.stop_scorer(sc)
        out = read_output(self.s, t[1], n)
        return {"backlog": n, "predictions_before_stop": out.count, "exit_code": sc.proc.returncode,
                "stop_seconds": round(sc.stop_seconds or 0.0, 2)}

    def latency(self, mode: str, rates: tuple[int, ...]) -> list[dict[str, Any]]:
        """Fixed-rate input; latency = output Kafka timestamp - input Kafka timestamp, warm-up excluded."""
        trigger = "processing-time=0" if mode == "micro-batch" else "real-time"
        master = "local[*]" if mode == "micro-batch" else "local[4]"
        t = self.topics(f"lat-{mode}", 3)
        sc = self.scorer(t, f"lat-{mode}", trigger, 50_000, master)
        rows = []
        total = 0
        try:
            for rate in rates:
                say(f"latency {mode} at {rate}/s: {self.plan.warmup_s:.0f}s warm-up + {self.plan.measure_s:.0f}s")
                start_ms = time.time() * 1000
                sent = 0
                t0 = time.monotonic()
                for progress in paced(self.s, t[0], rate, self.plan.warmup_s + self.plan.measure_s, self.factory,
                                      self.next_event):
                    sent = progress
                elapsed = time.monotonic() - t0
                self.next_event += sent
                total += sent
                drained = wait_for_total(self.s, t[1], total, timeout_s=180)
                out = read_output(self.s, t[1], total, latency_after_ms=start_ms + self.plan.warmup_s * 1000)
                # read_output kept only records whose input came after this rate's warm-up
                window = out.latencies_ms
                rows.append({
                    "mode": mode,
                    "target_rate": rate,
                    "achieved_rate": round(sent / elapsed, 1),
                    "events": sent,
                    "drained": drained,
                    "latency_ms": {k: round(v, 1) for k, v in percentiles(window).items()},
                })
        finally:
            snap = self.stop_scorer(sc)
        for row in rows:  # one scorer served every rate of this mode
            row["scorer_peak_rss_mib"] = snap["peak_rss_mib"]
        return rows

    def naive(self, n: int) -> dict[str, Any]:
        """The original guide's per-request approach."""
        spark, model = self.results["_spark"]
        recs = [json.loads(self.factory.event(i)[1]) for i in range(n)]
        per_request(spark, model, recs[:3])  # warm-up
        return per_request(spark, model, recs)

    def python_baseline(self, topic_in: str, n: int, spark_probs: dict[str, float]) -> dict[str, Any]:
        """Plain Python on the same events; its probabilities are checked against Spark's."""
        _, model = self.results["_spark"]
        out_topic = self.topics("py", 3)[1]
        r = plain_python(self.s, model, topic_in, out_topic, n)
        out = read_output(self.s, out_topic, n, keep_probabilities=True)
        common = set(spark_probs) & set(out.probabilities)
        diffs = [abs(spark_probs[k] - out.probabilities[k]) for k in common]
        return {
            "events": r["events"],
            "predictions": out.count,
            "events_per_second": round(out.throughput, 1),
            "compared_with_spark": len(common),
            "max_abs_probability_difference": max(diffs) if diffs else None,
            "same_probabilities": bool(diffs) and max(diffs) <= 1e-6,
        }


def run_bench(settings: Settings, quick: bool, results_dir: Path) -> Path:
    """Run every scenario and write the results; return the JSON path."""
    from stream.bench.report import write_reports

    plan = QUICK if quick else FULL
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="heartrisk-bench-"))
    b = Bench(settings, plan, work)
    res: dict[str, Any] = {
        "started_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": "quick" if quick else "full",
        "machine": machine_info(),
        "plan": dataclasses.asdict(plan),
    }
    try:
        say(f"throughput: preload {plan.throughput_events} events, then drain from earliest")
        thr = b.drain_throughput("throughput", plan.throughput_events, 3, THROUGHPUT_MAX_OFFSETS)
        topics = thr.pop("_topics")
        res["throughput"] = thr
        say(f"throughput: {thr['events_per_second']:,.0f} events/s")

        say("ceiling: the same plan on the same events in memory, noop sink")
        res["ceiling"] = b.ceiling(topics[0], plan.throughput_events)
        res["throughput"]["fraction_of_ceiling"] = round(
            thr["events_per_second"] / res["ceiling"]["events_per_second"], 3
        )

        say(f"baseline (a): per-request Spark, {plan.naive_events} events")
        res["baseline_per_request"] = b.naive(plan.naive_events)
        say(f"baseline (b): plain Python, {plan.python_events} events of the same input topic")
        spark_probs = read_output(b.s, topics[1], plan.throughput_events, keep_probabilities=True).probabilities
        res["baseline_python"] = b.python_baseline(topics[0], plan.python_events, spark_probs)
        spark, _ = b.results.pop("_spark")
        spark.stop()

        res["latency"] = b.latency("micro-batch", plan.rates_micro_batch) + b.latency(
            "real-time", plan.rates_real_time
        )

        res["delivery"] = delivery_cost(b, thr)  # exactly-once beside at-least-once (the throughput run)
        say("graceful stop under load")
        res["graceful_stop"] = b.graceful_stop_under_load(plan.scale_events * 3)

        res["scaling"] = {"partitions": [], "max_offsets_per_trigger": [], "backlog": [], "cores": []}
        masters = () if quick else ("local[1]", "local[2]")
        runs = [("cores", f"cores{m[6]}", 3, THROUGHPUT_MAX_OFFSETS, m) for m in masters]
        runs += [("partitions", f"parts{p}", p, THROUGHPUT_MAX_OFFSETS, "local[*]") for p in plan.partitions]
        runs += [("max_offsets_per_trigger", f"mopt{m}", 3, m, "local[*]") for m in plan.max_offsets]
        for key, name, partitions, max_offsets, master in runs:
            say(f"scaling: {name}, {plan.scale_events} events")
            r = b.drain_throughput(name, plan.scale_events, partitions, max_offsets, master)
            r.pop("_topics")
            res["scaling"][key].append(r)
        say(f"scaling: backlog of {plan.small_backlog} against {plan.throughput_events}")
        reuse = [r for r in res["scaling"]["partitions"] if r["partitions"] == 3 and r["events"] == plan.small_backlog]
        if reuse or (quick and res["scaling"]["partitions"]):
            small = dict((reuse or res["scaling"]["partitions"])[0])
        else:
            small = b.drain_throughput("backlog", plan.small_backlog, 3, THROUGHPUT_MAX_OFFSETS)
            small.pop("_topics")
        res["scaling"]["backlog"] = [small, {k: v for k, v in thr.items() if k != "fraction_of_ceiling"}]
        for r in res["scaling"]["backlog"]:
            r["microseconds_per_event"] = round(1e6 / r["events_per_second"], 2) if r["events_per_second"] else None
    finally:
        b.sampler.finish()
        res["resources"] = {"scorer_peak_rss_mib_all_runs": b.scorer_peak["peak_rss_mib"]}
        if b.started_broker:
            b.broker.down()
        res["wall_seconds"] = round(time.monotonic() - started, 1)
        shutil.rmtree(work, ignore_errors=True)
    res["baseline_ratios"] = {
        "vs_per_request": round(res["throughput"]["events_per_second"]
                                / res["baseline_per_request"]["events_per_second"], 1),
        "vs_plain_python": round(res["throughput"]["events_per_second"]
                                 / res["baseline_python"]["events_per_second"], 2),
    }
    return write_reports(res, results_dir)
