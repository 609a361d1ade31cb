"""``heartrisk bench --feedback-state``: the feedback join's state after N predictions, with the 7-day bound.

Every prediction waits in the join's state for its outcome until the watermark
passes ``scored_at + bound``, so the state holds every prediction of the last
bound: at 1M predictions a week that is 1M rows. The bench writes N prediction
records (the scorer's JSON shape) to a fresh topic on the local broker, runs the
feedback query (``stream.app.feedback``) over them with no outcomes, and reads
the state operators' own figures (rows, memory) and the checkpoint's size on
disk, once with Spark's default state store and once with RocksDB.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from stream.app.feedback import ROCKSDB, STATE_STORE
from stream.bench.measure import machine_info, say
from stream.config import Settings
from stream.local.broker import LocalBroker
from stream.local.topics import ensure_topics

WEEK_S = 7 * 86400.0


def _prediction(i: int, now_ms: int) -> bytes:
    scored = datetime.fromtimestamp((now_ms - i) / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return json.dumps({
        "event_id": f"bench-{i:09d}-{uuid.uuid4().hex[:12]}", "patient_id": f"patient-{i % 50_000:06d}",
        "event_time": scored, "scored_at": scored, "model_version": "1.0.0", "probability": (i % 1000) / 1000,
        "prediction": int(i % 1000 >= 500), "risk_level": "High",
        "contributions": [{"field": "thalassemia", "value": "No", "contribution": -0.5}] * 3, "imputed_fields": [],
    }).encode()


def _publish(settings: Settings, topic: str, n: int) -> None:
    producer = Producer(settings.kafka_client_config(**{"linger.ms": 50, "batch.size": 1_000_000,
                                                         "compression.type": "lz4",
                                                         "enable.idempotence": True}))
    now_ms = int(time.time() * 1000)
    for i in range(n):
        while True:
            try:
                producer.produce(topic, value=_prediction(i, now_ms))
                break
            except BufferError:
                producer.poll(0.1)
        if i % 100_000 == 0:
            producer.poll(0)
            say(f"feedback state: {i:,}/{n:,} predictions written")
    producer.flush(120)


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _measure(settings: Settings, n: int, provider: str | None, work: Path) -> dict[str, Any]:
    from stream.app.feedback import start_feedback
    from stream.session import get_spark

    conf = dict(settings.spark_conf)
    if provider:
        conf[STATE_STORE] = provider
    s = dataclasses.replace(settings, spark_conf=conf, spark_driver_memory="4g",
                            checkpoint_dir=str(work / (provider or "default").rsplit(".", 1)[-1]))
    spark = get_spark(s, "heartrisk-bench-feedback-state")
    try:
        query, recorder = start_feedback(spark, s)
        t0 = time.monotonic()
        deadline = t0 + 1800
        while time.monotonic() < deadline and int(recorder.state.get("state_rows") or 0) < n:
            time.sleep(2)
            say(f"feedback state ({provider or 'default'}): {int(recorder.state.get('state_rows') or 0):,} rows")
        seconds = time.monotonic() - t0
        last = query.lastProgress
        progress: dict[str, Any] = json.loads(last.json) if hasattr(last, "json") else dict(last or {})
        ops = progress.get("stateOperators", [])
        query.stop()
        location = Path(s.feedback().checkpoint_location)
        return {
            "provider": provider or "default (HDFSBackedStateStoreProvider)",
            "state_rows": sum(int(op.get("numRowsTotal", 0)) for op in ops),
            "memory_used_bytes": sum(int(op.get("memoryUsedBytes", 0)) for op in ops),
            "operators": [{"operator": op.get("operatorName"), "rows": op.get("numRowsTotal"),
                           "memory_bytes": op.get("memoryUsedBytes"), "custom": op.get("customMetrics", {})}
                          for op in ops],
            "checkpoint_bytes_on_disk": _du(location),
            "seconds_to_ingest": round(seconds, 1),
        }
    finally:
        spark.stop()


def run_feedback_state_bench(settings: Settings, n: int, results_dir: Path, work: Path) -> Path:
    """Measure the join's state with both stores; write ``<date>-feedback-state.json`` and ``.md``."""
    broker = LocalBroker.from_settings(settings)
    started = broker.up()
    try:
        return _run(dataclasses.replace(settings, bootstrap_servers=broker.bootstrap), n, results_dir, work)
    finally:
        if started:  # leave a broker the user started running
            broker.down()


def _run(settings: Settings, n: int, results_dir: Path, work: Path) -> Path:
    s = dataclasses.replace(settings, feedback_bound=WEEK_S)
    tag = f"bench-feedback-{uuid.uuid4().hex[:6]}"
    runs: list[dict[str, Any]] = []
    for provider in (None, ROCKSDB):
        run_settings = dataclasses.replace(
            s, query_name=f"{tag}-{'rocksdb' if provider else 'default'}", output_topic=f"{tag}-predictions",
            outcomes_topic=f"{tag}-outcomes", quality_topic=f"{tag}-quality",
        )
        if not runs:
            ensure_topics(s.bootstrap_servers, [run_settings.output_topic, run_settings.outcomes_topic,
                                                run_settings.quality_topic], 3)
            _publish(run_settings, run_settings.output_topic, n)
        runs.append(_measure(run_settings, n, provider, work))
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_info(),
              "predictions": n, "bound_seconds": WEEK_S, "runs": runs}
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = results_dir / f"{datetime.now(timezone.utc):%Y-%m-%d}-feedback-state"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# The feedback join's state after {n:,} predictions, bound 7 days, no outcomes yet", "",
             "| state store | rows in state | memory (MiB) | checkpoint on disk (MiB) | ingest s |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['provider']} | {r['state_rows']:,} | {r['memory_used_bytes'] / 2**20:,.0f} | "
              f"{r['checkpoint_bytes_on_disk'] / 2**20:,.0f} | {r['seconds_to_ingest']} |" for r in runs]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return stem.with_suffix(".json")
