"""``heartrisk bench --formats``: events/s of JSON against Avro, on the same patients, in one run.

Four pipelines drain the same number of preloaded events from earliest:

* ``json->json``: the JSON scorer (one streaming plan into the Kafka sink); the baseline;
* ``json(auto)->json``: JSON with ``--input-format auto``, which tells framed Avro
  from JSON per message and plans an Avro decoder beside the JSON one;
* ``avro->json`` and ``avro->avro``: Confluent-framed Avro in, JSON or Avro out
  (a streaming plan with one ``from_avro`` per known schema id, as JSON's).

Each runs ``reps`` times, in rotating order; the report gives the median and the
ratio to the JSON baseline's median.

Throughput here is events over the summed duration of the micro-batches that
held them (Spark's ``triggerExecution``: from the batch's start to its commit,
every phase included), the same measure for every path. The main bench's
first-to-last output timestamp is reported too, as ``output_span_events_per_second``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import fastavro

from stream.bench.events import EventFactory, preload
from stream.bench.measure import Scorer, machine_info, read_output, say, wait_for_total
from stream.config import Settings
from stream.contract.avro import event_schema_versions, frame, load_avsc, prediction_schema
from stream.contract.registry import SchemaRegistry, subject_for
from stream.local.broker import LocalBroker
from stream.local.registry_server import LocalRegistry
from stream.local.topics import ensure_topics

PIPELINES = {
    "json->json": ("json", "json", "json"),
    "json(auto)->json": ("json", "auto", "json"),
    "avro->json": ("avro", "avro", "json"),
    "avro->avro": ("avro", "avro", "avro"),
}
QUICK_PIPELINES = ("json->json", "avro->avro")


def _zigzag_len(n: int) -> bytes:
    """Avro's encoding of a string length (zig-zag varint)."""
    z, out = n << 1, bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


class AvroEvents:
    """The bench's patients as framed Avro (v1), each with a unique event_id, fast.

    The tail of each record (every field after event_id) is encoded once per pooled
    patient with fastavro; an event is header + event_id + that tail.
    """

    def __init__(self, factory: EventFactory, schema_id: int) -> None:
        schema = fastavro.parse_schema(load_avsc(event_schema_versions()[1]))
        self.factory, self.header, self.tails = factory, frame(schema_id, b""), []
        for pid, body in factory.pool:
            rec = {"event_id": None, "patient_id": pid, "event_time": None, "source": None,
                   **json.loads("{" + body)}
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, schema, rec)
            self.tails.append((pid, buf.getvalue()[1:]))  # drop the null branch of event_id

    def event(self, i: int) -> tuple[bytes, bytes]:
        """Key and framed value of event number i."""
        pid, tail = self.tails[i % len(self.tails)]
        eid = f"{self.factory.run}-{i:08d}".encode()
        return pid.encode(), self.header + b"\x02" + _zigzag_len(len(eid)) + eid + tail


def _avro_prediction_decoder() -> Any:
    schema = fastavro.parse_schema(json.loads(prediction_schema()))

    def decode(value: bytes) -> dict[str, Any]:
        return dict(fastavro.schemaless_reader(io.BytesIO(value[5:]), schema, schema))  # type: ignore[arg-type]

    return decode


def run_formats_bench(settings: Settings, events: int, reps: int, pipelines: tuple[str, ...],
                      results_dir: Path) -> Path:
    """Drain ``events`` through each pipeline ``reps`` times; write JSON + Markdown; return the JSON path."""
    started = time.monotonic()
    broker = LocalBroker.from_settings(settings)
    registry = LocalRegistry.from_settings(settings)
    started_broker = broker.up()
    started_registry = False
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in pipelines}
    try:  # the broker is stopped again even when the registry cannot start
        started_registry = registry.up()
        s = dataclasses.replace(settings, bootstrap_servers=broker.bootstrap, schema_registry_url=registry.url)
        work = Path(tempfile.mkdtemp(prefix="heartrisk-bench-formats-"))
        factory = EventFactory(s)
        for rep in range(reps):
            order = pipelines[rep % len(pipelines):] + pipelines[:rep % len(pipelines)]
            for name in order:
                payload, input_format, output_format = PIPELINES[name]
                tag = f"bench-fmt-{uuid.uuid4().hex[:6]}"
                t = (f"{tag}-in", f"{tag}-out", f"{tag}-dlq")
                ensure_topics(s.bootstrap_servers, t, 3)
                if payload == "avro":
                    schema_id = SchemaRegistry(s.schema_registry_url).register(
                        subject_for(t[0]), json.dumps(load_avsc(event_schema_versions()[1]))
                    )
                    preload(s, t[0], events, AvroEvents(factory, schema_id))
                else:
                    preload(s, t[0], events, factory)
                say(f"formats: {name}, rep {rep + 1}/{reps}, {events} events")
                env = {
                    **s.to_env(),
                    "HEARTRISK_INPUT_TOPIC": t[0], "HEARTRISK_OUTPUT_TOPIC": t[1], "HEARTRISK_DLQ_TOPIC": t[2],
                    "HEARTRISK_CHECKPOINT_DIR": str(work / "checkpoints"), "HEARTRISK_QUERY_NAME": tag,
                    "HEARTRISK_TRIGGER": "processing-time=0", "HEARTRISK_STARTING_OFFSETS": "earliest",
                    "HEARTRISK_SPARK_MASTER": "local[*]", "HEARTRISK_SPARK_DRIVER_MEMORY": "1536m",
                    "HEARTRISK_INPUT_FORMAT": input_format, "HEARTRISK_OUTPUT_FORMAT": output_format,
                }
                sc = Scorer(env, work / f"{tag}.log")
                try:
                    sc.wait_started()
                    ok = wait_for_total(s, t[1], events, timeout_s=max(120, events / 1000))
                finally:
                    sc.stop()
                decode = _avro_prediction_decoder() if output_format == "avro" else None
                out = read_output(s, t[1], events, decode=decode)
                batches = [b for b in sc.batches() if int(b.get("input_rows", 0)) > 0]
                rows = sum(int(b["input_rows"]) for b in batches)
                seconds = sum(int(b["input_rows"]) / max(float(b["rows_per_s"]), 1e-9) for b in batches)
                rate = rows / seconds if seconds else 0.0
                runs[name].append({
                    "events": events, "predictions": out.count, "distinct_event_ids": out.distinct_events,
                    "completed": ok and out.distinct_events == events and rows == events,
                    "batches": len(batches), "batch_seconds": round(seconds, 2),
                    "events_per_second": round(rate, 1),
                    "output_span_events_per_second": round(out.throughput, 1),
                })
                say(f"formats: {name}: {rate:,.0f} events/s over {len(batches)} batch(es) of {seconds:.1f}s")
    finally:
        if started_broker:
            broker.down()
        if started_registry:
            registry.down()
    res = {
        "started_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(),
        "events": events, "reps": reps, "baseline": pipelines[0],
        "runs": runs, "wall_seconds": round(time.monotonic() - started, 1),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    path = results_dir / f"{date}-formats-{events}.json"
    write_report(res, path)
    return path


def write_report(res: dict[str, Any], path: Path) -> None:
    """Add the medians and ratios to ``res``; write it as JSON and Markdown."""
    runs, first = res["runs"], res["baseline"]
    base = statistics.median(r["events_per_second"] for r in runs[first])
    summary = {}
    for name, rs in runs.items():
        med = statistics.median(r["events_per_second"] for r in rs)
        span = statistics.median(r["output_span_events_per_second"] for r in rs)
        summary[name] = {"median_events_per_second": med, "ratio_to_" + first: round(med / base, 3),
                         "median_output_span_events_per_second": span}
    res["summary"] = summary
    path.write_text(json.dumps(res, indent=2) + "\n")
    lines = [f"# JSON vs Avro, {res['events']:,} events x {res['reps']} reps ({res['started_at']})", "",
             f"Machine: {res['machine']}", "",
             "Events/s = events / summed batch time (triggerExecution). The output-span column is the",
             "first-to-last output timestamp.", "",
             f"| pipeline | median events/s | ratio to {first} | runs (events/s) | median output-span events/s |",
             "|---|---|---|---|---|"]
    for name, row in summary.items():
        per = ", ".join(f"{r['events_per_second']:,.0f}" for r in runs[name])
        lines.append(f"| {name} | {row['median_events_per_second']:,.0f} | {row['ratio_to_' + first]:.2f} | "
                     f"{per} | {row['median_output_span_events_per_second']:,.0f} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
