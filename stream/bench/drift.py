"""``heartrisk bench --drift``: what the drift counts cost, the scorer's whole plan with them on and off.

Both variants are the scorer's own plan (decode -> validate -> score -> the
per-batch observation -> encode) over the same events held in memory, into
Spark's noop sink, so nothing but CPU dilutes the difference. The full run also
measures the scorer end to end on the local broker (drain a preloaded topic,
drift off and on alternately): the throughput a user gets. Runs alternate off, on, off, on... after one warm-up run
each, so the JIT and the machine's drift hit both alike; the figure is the ratio
of the medians. One more run with an ``Observation`` checks that the counts
reconcile: every held event is binned once per feature.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, Observation

from stream.bench.measure import machine_info, say
from stream.bench.plan import JIT_LIMIT, events_in_memory
from stream.config import Settings
from stream.monitor.drift import batch_counts, reference
from stream.monitor.observe import drift_columns, observed_columns, observer
from stream.pipeline.build import build_output


def _once(plan: Callable[[], DataFrame]) -> float:
    t0 = time.perf_counter()
    plan().write.format("noop").mode("overwrite").save()
    return time.perf_counter() - t0


def end_to_end(settings: Settings, n: int, reps: int) -> dict[str, Any]:
    """The scorer on the local broker, drift off and on alternately: drain n preloaded events, events/s."""
    import shutil
    import tempfile

    from stream.bench.run import QUICK, THROUGHPUT_MAX_OFFSETS, Bench

    work = Path(tempfile.mkdtemp(prefix="heartrisk-bench-drift-"))
    bench = Bench(settings, QUICK, work)
    rates: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for i in range(reps):
            for mode in ("off", "on"):
                r = bench.drain_throughput(f"drift-{mode}", n, 3, THROUGHPUT_MAX_OFFSETS,
                                           extra_env={"HEARTRISK_DRIFT": mode})
                if not r["completed"]:
                    msg = f"drift {mode}: {r['distinct_event_ids']} of {n} events scored"
                    raise RuntimeError(msg)
                rates[mode].append(float(r["events_per_second"]))
                say(f"drift end to end, run {i + 1}/{reps}, {mode}: {rates[mode][-1]:,.0f} events/s")
    finally:
        bench.sampler.finish()
        if bench.started_broker:
            bench.broker.down()
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"events": n, "reps": reps, "events_per_second": rates,
            "median_events_per_second": {k: round(v, 1) for k, v in med.items()},
            "cost": round(1.0 - med["on"] / med["off"], 4)}


def run_drift_bench(settings: Settings, n: int, reps: int, results_dir: Path, kafka_events: int = 0,
                    kafka_reps: int = 0) -> Path:
    """Measure the plan with and without drift counts; write ``<date>-drift.json`` and ``.md``."""
    from stream.model.artifact import load_model
    from stream.session import get_spark

    spark = get_spark(dataclasses.replace(settings, spark_driver_memory="3g"), "heartrisk-bench-drift")
    spark.conf.set("spark.sql.codegen.hugeMethodLimit", JIT_LIMIT)
    raw = events_in_memory(spark, settings, n)
    held = raw.count()
    model = load_model(settings.path(settings.model_dir))
    ref = reference(model.meta)
    plans = {
        "off": lambda: build_output(raw, model, settings, tap=observer(None)),
        "on": lambda: build_output(raw, model, settings, tap=observer(ref)),
    }
    times: dict[str, list[float]] = {"off": [], "on": []}
    for name, plan in plans.items():
        say(f"drift {name}: warm-up")
        _once(plan)
    for i in range(reps):
        for name, plan in plans.items():
            times[name].append(_once(plan))
        say(f"drift: run {i + 1}/{reps}: off {times['off'][-1]:.2f}s, on {times['on'][-1]:.2f}s")
    obs = Observation("drift-bench")
    tap = lambda df: df.observe(obs, *observed_columns(), *drift_columns(spark, ref))  # noqa: E731
    build_output(raw, model, settings, tap=tap).write.format("noop").mode("overwrite").save()
    counts = batch_counts(obs.get, ref)
    spark.stop()
    kafka = end_to_end(settings, kafka_events, kafka_reps) if kafka_events and kafka_reps else None
    binned = {name: sum(bins) + counts["missing"][name] for name, bins in counts["features"].items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    result: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
        "spark_master": settings.spark_master, "events": held, "reps": reps,
        "runs_seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "median_seconds": {k: round(v, 3) for k, v in med.items()},
        "rows_per_second": {k: round(held / v) for k, v in med.items()},
        "cost": round(med["on"] / med["off"] - 1.0, 4),
        "predictions": counts["n"], "binned_per_feature": binned,
        "reconciles": all(v == counts["n"] for v in binned.values()),
        "end_to_end": kafka,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = results_dir / f"{datetime.now(timezone.utc):%Y-%m-%d}-drift"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# Drift counts: cost on the scorer's whole plan, {held:,} events in memory, median of {reps} "
        f"alternating runs ({settings.spark_master})", "",
        "| drift counts | median s | events/s |", "|---|---|---|",
        *(f"| {k} | {med[k]:.3f} | {held / med[k]:,.0f} |" for k in ("off", "on")), "",
        f"Cost: {result['cost']:+.1%} of the plan's time (target: at most +5 %). "
        f"{counts['n']:,} predictions, each binned once per feature: {'yes' if result['reconciles'] else 'NO'}.",
    ]
    if kafka:
        med = kafka["median_events_per_second"]
        lines += ["", f"End to end on the local broker (the scorer draining {kafka['events']:,} preloaded events, "
                  f"median of {kafka['reps']} alternating runs): off {med['off']:,.0f} events/s, on {med['on']:,.0f} "
                  f"events/s; throughput cost {kafka['cost']:+.1%} (target: at most 5 %)."]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return stem.with_suffix(".json")
