"""``heartrisk bench --exactly-once``: only the delivery scenario, at a size you choose.

The throughput run of at-least-once is made here (the full bench reuses its own), then
``stream.bench.delivery`` repeats it exactly-once and measures both modes' latency.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from stream.bench.delivery import delivery_cost
from stream.bench.measure import machine_info, say
from stream.bench.report import delivery_lines
from stream.bench.run import FULL, QUICK, THROUGHPUT_MAX_OFFSETS, Bench
from stream.config import Settings


def run_exactly_once_bench(settings: Settings, events: int, rate: int, results_dir: Path, quick: bool = False) -> Path:
    """Drain ``events`` at-least-once then exactly-once; then ``rate`` events/s into each; return the JSON path."""
    plan = dataclasses.replace(QUICK if quick else FULL, rates_micro_batch=(rate,))
    work = Path(tempfile.mkdtemp(prefix="heartrisk-bench-eo-"))
    b = Bench(settings, plan, work)
    try:
        say(f"delivery at-least-once: drain {events} events")
        thr = b.drain_throughput("throughput", events, 3, THROUGHPUT_MAX_OFFSETS)
        thr.pop("_topics")
        rows = delivery_cost(b, thr)
    finally:
        b.sampler.finish()
        if b.started_broker:
            b.broker.down()
        shutil.rmtree(work, ignore_errors=True)
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
              "warmup_s": plan.warmup_s, "measure_s": plan.measure_s, "delivery": rows}
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = results_dir / f"{datetime.now(timezone.utc):%Y-%m-%d}-exactly-once{'-quick' if quick else ''}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Exactly-once beside at-least-once: {events:,} events drained, then {rate:,} events/s "
             f"({plan.warmup_s:.0f} s warm-up, {plan.measure_s:.0f} s measured)", "", *delivery_lines(rows)]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return stem.with_suffix(".json")
