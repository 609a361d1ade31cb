"""``heartrisk bench --plan``: the scoring plan in memory, step by step, engine by engine (no Kafka).

Every variant runs over the same events, cached in memory, into Spark's noop
sink: one warm-up run, then the median of ``reps`` timed runs. Variants:

- ``trivial``: ``from_json -> to_json`` on the same bytes, the platform's limit here;
- ``decode``, ``+validate``, ``+score``, ``+encode``: the compiled engine's plan, cumulatively;
- ``pipeline engine``: the whole plan with ``PipelineModel.transform``;
- each of the full plans with Spark's default ``hugeMethodLimit`` (65535) and with 8000.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from stream.config import Settings
from stream.pipeline.build import build_output
from stream.pipeline.decode import decode_events, event_ddl
from stream.pipeline.score import score_events
from stream.pipeline.validate import validate_events

DEFAULT_LIMIT = "65535"
JIT_LIMIT = "8000"


def trivial_plan(raw: DataFrame) -> DataFrame:
    """``from_json -> to_json`` on the same bytes: the platform's limit for a plan over these events."""
    return raw.select(F.to_json(F.from_json(F.col("value").cast("string"), event_ddl())).alias("v"))


def events_in_memory(spark: Any, settings: Settings, n: int) -> DataFrame:
    """The full bench's synthetic events, held in memory."""
    from stream.bench.events import EventFactory

    factory = EventFactory(settings, seed=3)
    ts = datetime.now(timezone.utc)
    rows = [(*factory.event(i), "bench", i % 3, i, ts) for i in range(n)]
    df = spark.createDataFrame(
        rows, "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
    )
    cached: DataFrame = df.repartition(2).cache()
    return cached


def _time(plan: Callable[[], DataFrame], reps: int) -> list[float]:
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        plan().write.format("noop").mode("overwrite").save()
        times.append(time.perf_counter() - t0)
    return times[1:]


def run_plan_bench(settings: Settings, n: int, reps: int, results_dir: Path) -> Path:
    """Measure every variant; write ``<date>-plan.json`` and ``.md``; return the JSON path."""
    from stream.model.artifact import load_model
    from stream.session import get_spark

    spark = get_spark(dataclasses.replace(settings, spark_driver_memory="3g"), "heartrisk-bench-plan")
    raw = events_in_memory(spark, settings, n)
    held = raw.count()
    compiled = load_model(settings.path(settings.model_dir), engine="compiled")
    pipeline = dataclasses.replace(compiled, plan=None)

    def full(model: Any) -> Callable[[], DataFrame]:
        return lambda: build_output(raw, model, settings)

    variants: list[tuple[str, str, Callable[[], DataFrame]]] = [
        ("trivial from_json -> to_json", DEFAULT_LIMIT, lambda: trivial_plan(raw)),
        ("decode", JIT_LIMIT, lambda: decode_events(raw)),
        ("decode + validate", JIT_LIMIT, lambda: validate_events(decode_events(raw))),
        ("decode + validate + score (compiled)", JIT_LIMIT,
         lambda: score_events(validate_events(decode_events(raw)), compiled)),
        ("whole plan, compiled engine", JIT_LIMIT, full(compiled)),
        ("whole plan, compiled engine", DEFAULT_LIMIT, full(compiled)),
        ("whole plan, pipeline engine", JIT_LIMIT, full(pipeline)),
        ("whole plan, pipeline engine", DEFAULT_LIMIT, full(pipeline)),
    ]
    rows: list[dict[str, Any]] = []
    for name, limit, plan in variants:
        spark.conf.set("spark.sql.codegen.hugeMethodLimit", limit)
        times = _time(plan, reps)
        median = statistics.median(times)
        rows.append({"variant": name, "huge_method_limit": int(limit), "runs_seconds": [round(t, 3) for t in times],
                     "median_seconds": round(median, 3), "rows_per_second": round(held / median)})
        print(f"  {name} (hugeMethodLimit {limit}): {held / median:,.0f} rows/s", flush=True)
    spark.stop()
    trivial = float(held / statistics.median(rows[0]["runs_seconds"]))
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, Python {platform.python_version()}",
        "spark_master": settings.spark_master, "events": held, "reps": reps, "variants": rows,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = results_dir / f"{datetime.now(timezone.utc):%Y-%m-%d}-plan"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# In-memory plan, {held:,} events, median of {reps} ({result['machine']}, {settings.spark_master})", "",
        "| variant | hugeMethodLimit | rows/s (median) | share of trivial |", "|---|---|---|---|",
    ]
    lines += [
        f"| {r['variant']} | {r['huge_method_limit']} | {r['rows_per_second']:,} | "
        f"{r['rows_per_second'] / trivial:.0%} |" for r in rows
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return stem.with_suffix(".json")
