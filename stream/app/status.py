"""``heartrisk status``: one scorer at a glance, from its progress file, its checkpoint and the broker.

Everything here is read from outside the scorer, so it works with the scorer
stopped: the progress file (what the listener last wrote: state, pid, the last
batch, the totals since the first start, a registry pause), the checkpoint's
own logs (the committed offsets: the truth the query resumes from) and the
broker's end offsets. Lag = end offset - committed offset, per partition.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import IO, Any

from stream.app.checkpoint_log import committed, open_log
from stream.config import Settings
from stream.errors import BrokerError
from stream.local.processes import alive
from stream.local.topics import end_offsets
from stream.monitor.progress import read_progress

STALE_S = 60.0  # a progress file older than this, from another host, counts as not running


def is_running(progress: dict[str, Any] | None, now: float | None = None) -> bool:
    """The scorer's state is active, and its process is alive (same host) or its file fresh (another host)."""
    if not progress or progress.get("state") != "active":
        return False
    if progress.get("host") in (None, socket.gethostname()) and progress.get("pid"):
        return alive(int(progress["pid"]))
    return (now or time.time()) - float(progress.get("updated_at") or 0) <= STALE_S


def gather(settings: Settings, spark: Any = None, now: float | None = None) -> dict[str, Any]:
    """The status as a dict (what ``--json`` prints)."""
    now = now or time.time()
    progress = read_progress(settings.progress_path)
    running = is_running(progress, now)
    p = progress or {}
    out: dict[str, Any] = {
        "query_name": settings.query_name,
        "checkpoint": settings.checkpoint_location,
        "running": running,
        "state": p.get("state", "never started"),
        "pid": p.get("pid") if running else None,
        "uptime_seconds": round(now - float(p["started_at"]), 1) if running and p.get("started_at") else None,
        "model_version": p.get("model_version"),
        "models": p.get("models"),  # with a registry alias: champion and challenger, and the swaps
        "model_swaps": {k: p.get("totals", {}).get(k, 0) for k in ("model_swaps", "model_swap_failures")},
        "topics": {"input": settings.input_topic, "output": settings.output_topic, "dead_letters": settings.dlq_topic},
        "last_batch": None,
        "events_per_second": round(float(p.get("processed_rows_per_second") or 0.0), 1) if running else 0.0,
        "totals": {k: p.get("totals", {}).get(k, 0) for k in ("batches", "input_rows", "predictions")},
        "dead_letters_by_code": {c: n for c, n in sorted(p.get("totals", {}).get("dead_letters", {}).items()) if n},
        "registry_pause": p.get("registry_pause"),
        "delivery": p.get("totals", {}).get("delivery") or None,  # exactly-once: its transactions' outcomes
    }
    if p.get("batch_id") is not None:
        at = float(p.get("last_progress_at") or 0)
        out["last_batch"] = {
            "id": p["batch_id"], "rows": p.get("input_rows"), "duration_seconds": p.get("batch_duration_seconds"),
            "age_seconds": round(now - at, 1) if at else None,
        }
    position = committed(open_log(settings.checkpoint_location, spark), settings.input_topic)
    out["committed"] = None if position is None else {
        "batch_id": position.batch_id, "offsets": {str(k): v for k, v in sorted(position.offsets.items())},
    }
    try:
        ends = end_offsets(settings.kafka_client_config(), settings.input_topic)
    except BrokerError as exc:
        out["end_offsets"], out["lag"], out["broker_error"] = None, None, str(exc)
        return out
    out["end_offsets"] = {str(k): v for k, v in sorted(ends.items())}
    if position is not None:
        per = {str(k): max(0, v - position.offsets.get(k, 0)) for k, v in sorted(ends.items())}
        out["lag"] = {"total": sum(per.values()), "partitions": per}
    else:
        out["lag"] = None
    return out


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}h {s % 3600 // 60}m" if s >= 3600 else f"{s // 60}m {s % 60}s" if s >= 60 else f"{s}s"


def render(st: dict[str, Any]) -> str:
    """The status as a few lines for people."""
    head = f"query {st['query_name']}: "
    if st["running"]:
        head += f"running (pid {st['pid']}, up {_ago(st['uptime_seconds'])})"
    else:
        head += f"not running (last state: {st['state']})"
    head += f", model {st['model_version'] or '?'}"
    challenger = (st.get("models") or {}).get("challenger")
    if challenger:
        head += f" (challenger {challenger['version']} shadow-scoring)"
    swaps = st.get("model_swaps") or {}
    if swaps.get("model_swaps") or swaps.get("model_swap_failures"):
        head += f", {swaps['model_swaps']} model swaps, {swaps['model_swap_failures']} refused"
    t = st["topics"]
    lines = [head, f"  topics: {t['input']} -> {t['output']}, dead letters to {t['dead_letters']}"]
    b = st["last_batch"]
    if b:
        dur = b["duration_seconds"]
        lines.append(
            f"  last batch: #{b['id']}, {b['rows']:,} rows in {dur if dur is not None else '?'} s, "
            f"{_ago(b['age_seconds'])} ago; {st['events_per_second']:,.0f} events/s"
        )
    else:
        lines.append("  last batch: none yet")
    tot = st["totals"]
    lines.append(f"  since the first start: {tot['input_rows']:,} events, {tot['predictions']:,} predictions")
    if st["lag"] is not None:
        parts = ", ".join(f"p{k} {v:,}" for k, v in st["lag"]["partitions"].items())
        batch = st["committed"]["batch_id"]
        lines.append(f"  lag: {st['lag']['total']:,} ({parts}); committed batch {batch if batch is not None else '-'}")
    elif st.get("broker_error"):
        lines.append(f"  lag: unknown ({st['broker_error']})")
    else:
        lines.append("  lag: no checkpoint yet")
    tx = st.get("delivery")
    if tx:
        lines.append(f"  exactly-once transactions: {tx.get('committed', 0):,} committed, {tx.get('aborted', 0):,} "
                     f"aborted; {tx.get('skipped', 0):,} replayed batch(es) skipped (committed before a crash)")
    dl = st["dead_letters_by_code"]
    lines.append("  dead letters: " + (", ".join(f"{c} {n:,}" for c, n in dl.items()) if dl else "none"))
    pause = st["registry_pause"]
    if pause:
        lines.append(f"  PAUSED on the schema registry: schema id {pause.get('schema_id')}, "
                     f"{pause.get('attempts')} attempts, since {_ago(time.time() - float(pause.get('since', 0)))}")
    return "\n".join(lines)


def show_status(
    settings: Settings, as_json: bool = False, watch: float = 0.0, out: IO[str] | None = None,
    spark: Any = None, rounds: int = 0,
) -> int:
    """Print the status once, or every ``watch`` seconds until Ctrl-C (or ``rounds`` times).

    ``spark`` reads a checkpoint that is not on the local disk (HDFS, S3 ...).
    """
    out = out or sys.stdout
    done = 0
    try:
        while True:
            st = gather(settings, spark)
            if as_json:
                out.write(json.dumps(st, sort_keys=True) + "\n")
            else:
                if watch and out.isatty():
                    out.write("\033[H\033[2J")
                out.write(render(st) + "\n")
            out.flush()
            done += 1
            if not watch or (rounds and done >= rounds):
                return 0
            time.sleep(watch)
    except KeyboardInterrupt:
        return 0
