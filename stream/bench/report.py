"""Write a bench run's results: JSON, a Markdown table against the targets, and PNG plots."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TARGETS = {
    "throughput_events_per_second": 50_000,
    "ceiling_events_per_second": 150_000,
    "ceiling_fraction_of_trivial": 0.40,
    "micro_batch_p50_ms_at_1k": 300,
    "micro_batch_p99_ms_at_10k": 600,
    "real_time_p99_ms_at_5k": 50,
    "ratio_vs_per_request": 10_000,
    "ratio_vs_plain_python": 1.5,
    "cold_start_seconds": 15,
    "graceful_stop_seconds": 10,
    "scorer_peak_rss_mib": 2048,
}


def _latency(res: dict[str, Any], mode: str, rate: int, q: str = "p99") -> float | None:
    for row in res.get("latency", []):
        if row["mode"] == mode and row["target_rate"] == rate:
            value = row["latency_ms"].get(q)
            return None if value is None else float(value)
    return None


def target_rows(res: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, target, measured, met?) rows."""
    thr = res["throughput"]
    rows = []

    def row(what: str, target: str, value: float | None, ok: bool | None) -> None:
        shown = "not measured" if value is None else f"{value:,.3g}" if value < 10 else f"{value:,.0f}"
        rows.append((what, target, shown, "n/a" if ok is None else ("met" if ok else "MISSED")))

    row("end-to-end throughput (events/s)", "≥ 50,000", thr["events_per_second"],
        thr["events_per_second"] >= TARGETS["throughput_events_per_second"])
    ceiling = res.get("ceiling", {})
    c = ceiling.get("events_per_second")
    row("in-memory plan ceiling (events/s)", "≥ 150,000", c, None if c is None else c >= 150_000)
    trivial = ceiling.get("trivial_plan_events_per_second")
    f = None if c is None or not trivial else c / trivial
    row("ceiling ÷ trivial from_json→to_json plan", "≥ 0.40", f, None if f is None else f >= 0.40)
    mb = _latency(res, "micro-batch", 1_000, "p50")
    row("micro-batch p50 at 1,000/s (ms)", "≤ 300", mb, None if mb is None else mb <= 300)
    mb = _latency(res, "micro-batch", 10_000)
    row("micro-batch p99 at 10,000/s (ms)", "≤ 600", mb, None if mb is None else mb <= 600)
    rt = _latency(res, "real-time", 5_000)
    row("real-time p99 at 5,000/s (ms)", "≤ 50", rt, None if rt is None else rt <= 50)
    cold = thr.get("cold_start_seconds")
    row("cold start: launch to first prediction (s)", "≤ 15", cold, None if cold is None else cold <= 15)
    stop = res.get("graceful_stop", {}).get("stop_seconds")
    row("graceful stop under load (s)", "≤ 10", stop, None if stop is None else stop <= 10)
    r = res.get("baseline_ratios", {})
    v = r.get("vs_per_request")
    row("× per-request approach (throughput)", "≥ 10,000", v, None if v is None else v >= 10_000)
    v = r.get("vs_plain_python")
    row("× plain-Python baseline (throughput)", "≥ 1.5", v, None if v is None else v >= 1.5)
    rss = res.get("resources", {}).get("scorer_peak_rss_mib_all_runs")
    row("scorer peak RSS (MiB)", "≤ 2,048", rss, None if rss is None else rss <= 2048)
    return rows


def describe_machine(m: dict[str, Any]) -> str:
    """``measure.machine_info()`` in one line, for the Markdown reports."""
    return f"{m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, {m['platform']}, Python {m['python']}"


def markdown(res: dict[str, Any]) -> str:
    """The human-readable report."""
    m = res["machine"]
    lines = [
        f"# heartrisk bench ({res['mode']}), {res['started_at']}",
        "",
        f"Machine: {describe_machine(m)}. Broker, Spark and the generator share it. "
        f"Wall time {res['wall_seconds']} s.",
        "",
        "## Against the targets",
        "",
        "| figure | target | measured | |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in target_rows(res)],
        "",
        "## Throughput and ceiling",
        "",
        "| run | events | events/s | note |",
        "|---|---|---|---|",
        f"| scorer, from earliest, 3 partitions | {res['throughput']['events']:,} | "
        f"{res['throughput']['events_per_second']:,.0f} | first to last output record timestamp |",
        f"| JVM-only ceiling (in memory → noop) | {res['ceiling']['events']:,} | "
        f"{res['ceiling']['events_per_second']:,.0f} | median of {len(res['ceiling']['runs_seconds'])} |",
        f"| trivial from_json → to_json plan, same events in memory | {res['ceiling']['events']:,} | "
        f"{res['ceiling'].get('trivial_plan_events_per_second', 0):,.0f} | the platform's limit on this machine |",
        f"| baseline (a) per request | {res['baseline_per_request']['events']} | "
        f"{res['baseline_per_request']['events_per_second']:,.2f} | p50 "
        f"{res['baseline_per_request']['latency_ms_p50']:,.0f} ms per event |",
        f"| baseline (b) plain Python | {res['baseline_python']['events']:,} | "
        f"{res['baseline_python']['events_per_second']:,.0f} | same probabilities: "
        f"{res['baseline_python']['same_probabilities']} (max diff "
        f"{res['baseline_python']['max_abs_probability_difference']}) |",
        "",
        "## Latency (output record timestamp − input record timestamp)",
        "",
        "| mode | target rate | achieved rate | events measured | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res.get("latency", []):
        q = r["latency_ms"]
        lines.append(
            f"| {r['mode']} | {r['target_rate']:,} | {r['achieved_rate']:,.0f} | {q.get('count', 0):,} | "
            f"{q.get('p50', '-')} | {q.get('p95', '-')} | {q.get('p99', '-')} | {q.get('max', '-')} |"
        )
    lines += ["", "## Delivery: exactly-once beside at-least-once (same run)", "",
              *delivery_lines(res.get("delivery", []))]
    sc = res.get("scaling", {})
    lines += ["", "## Scaling", "", "| scenario | events | partitions | maxOffsetsPerTrigger | events/s | batches |",
              "|---|---|---|---|---|---|"]
    for key in ("partitions", "max_offsets_per_trigger", "backlog", "cores"):
        for r in sc.get(key, []):
            label = f"{key} ({r['spark_master']})" if key == "cores" else key
            lines.append(
                f"| {label} | {r['events']:,} | {r['partitions']} | {r['max_offsets_per_trigger']:,} | "
                f"{r['events_per_second']:,.0f} | {r.get('batches', '-')} |"
            )
    res_thr = res["throughput"].get("resources", {})
    lines += ["", "## Resources during the throughput run", "", "| process | peak RSS MiB | CPU s |", "|---|---|---|"]
    for name, r in res_thr.items():
        lines.append(f"| {name} | {r['peak_rss_mib']} | {r['cpu_seconds']} |")
    lines.append("")
    return "\n".join(lines)


def delivery_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The delivery scenario's table (``stream.bench.delivery``), and what its latency is."""
    lines = ["| delivery | drained | drain events/s (batch time) | × at-least-once | rate | events | p50 ms | p99 ms "
             "| max ms |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q = r["visible_latency_ms"]
        lines.append(f"| {r['delivery']} | {r['drain_events']:,} | {r['events_per_second']:,.0f} | "
                     f"{r['throughput_vs_at_least_once']} | {r['rate']:,} | {r['events']:,} | {q.get('p50', '-')} | "
                     f"{q.get('p99', '-')} | {q.get('max', '-')} |")
    return [*lines, "", "Latency here: the time a read_committed consumer receives the prediction − the input "
            "record's timestamp (an exactly-once prediction is visible only once its batch commits)."]


def plots(res: dict[str, Any], base: Path) -> list[Path]:
    """A latency CDF and throughput bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in res.get("latency", []):
        q = r["latency_ms"]
        if q.get("count"):
            xs = [q["p50"], q["p95"], q["p99"], q["max"]]
            ax.plot(xs, [0.5, 0.95, 0.99, 1.0], marker="o", label=f"{r['mode']} @ {r['target_rate']:,}/s")
    ax.set_xscale("log")
    ax.set_xlabel("end-to-end latency (ms, log)")
    ax.set_ylabel("fraction of events")
    ax.set_title("Latency CDF (p50, p95, p99, max)")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    p = base.with_name(base.name + "-latency-cdf.png")
    fig.tight_layout()
    fig.savefig(p, dpi=110)
    plt.close(fig)
    out.append(p)

    fig, ax = plt.subplots(figsize=(7, 4))
    names = ["scorer", "JVM ceiling", "plain Python", "per request"]
    values = [
        res["throughput"]["events_per_second"],
        res["ceiling"]["events_per_second"],
        res["baseline_python"]["events_per_second"],
        res["baseline_per_request"]["events_per_second"],
    ]
    ax.bar(names, values, color=["#2a7", "#777", "#37c", "#c53"])
    ax.set_yscale("log")
    ax.set_ylabel("events/s (log)")
    ax.set_title("Throughput on this machine")
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:,.0f}" if v >= 10 else f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    p = base.with_name(base.name + "-throughput.png")
    fig.tight_layout()
    fig.savefig(p, dpi=110)
    plt.close(fig)
    out.append(p)
    return out


def write_reports(res: dict[str, Any], results_dir: Path) -> Path:
    """Write ``<date>-<machine>[-quick].json`` with .md and .png siblings; return the JSON path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    machine = f"{res['machine']['cpus']}cpu-{platform.machine()}"
    base = results_dir / f"{date}-{machine}{'-quick' if res['mode'] == 'quick' else ''}"
    res["targets"] = [dict(zip(("figure", "target", "measured", "status"), r, strict=True)) for r in target_rows(res)]
    json_path = base.with_suffix(".json")
    json_path.write_text(json.dumps(res, indent=2, default=str) + "\n")
    base.with_suffix(".md").write_text(markdown(res))
    plots(res, base)
    return json_path
