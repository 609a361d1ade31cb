"""Baselines measured in the same run: the original guide's per-request Spark call, and plain Python.

(a) per request: ``spark.createDataFrame([record])`` -> ``model.transform`` -> ``collect``, once per event.
(b) plain Python: a confluent-kafka consume/produce loop that parses JSON, validates,
    and scores with the model's own coefficients from model.json in numpy.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import uuid
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer

from stream.config import Settings
from stream.contract.schema import clinical_fields
from stream.model.artifact import LoadedModel


def per_request(spark: Any, model: LoadedModel, records: list[dict[str, Any]]) -> dict[str, float]:
    """The original design's predictor, one Spark job per event."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    fields = clinical_fields()
    schema = ", ".join(f"`{f.name}` {f.spark_type}" for f in fields)
    times = []
    t0 = time.perf_counter()
    for rec in records:
        t = time.perf_counter()
        row = tuple(
            float(rec[f.name]) if f.kind == "number" and rec.get(f.name) is not None else rec.get(f.name)
            for f in fields
        )
        df = spark.createDataFrame([row], schema)
        out = model.pipeline.transform(df).select(vector_to_array(F.col("probability"))[1].alias("p")).collect()
        assert 0.0 <= out[0]["p"] <= 1.0
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    return {
        "events": len(records),
        "events_per_second": len(records) / total,
        "latency_ms_p50": statistics.median(times) * 1000,
        "latency_ms_p99": sorted(times)[int(0.99 * (len(times) - 1))] * 1000,
    }


class NumpyScorer:
    """The model as arithmetic: impute, one-hot, standardize, dot, sigmoid."""

    def __init__(self, meta: dict[str, Any]) -> None:
        m = meta["model"]
        self.intercept = float(m["intercept"])
        self.features = m["features"]
        self.imputation = m["imputation"]
        std = np.array([f["std"] for f in self.features])
        self.scale = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 0.0)
        self.mean = np.array([f["mean"] for f in self.features])
        self.coef = np.array([f["coefficient"] for f in self.features])
        self.known: dict[str, set[str]] = {}
        for f in self.features:
            if f["category"] is not None and f["category"] != "__unknown":
                self.known.setdefault(f["field"], set()).add(f["category"])
        self.specs = {f.name: f for f in clinical_fields()}

    def vector(self, rec: dict[str, Any]) -> list[float]:
        """The assembled (unscaled) feature vector."""
        x = []
        for f in self.features:
            v = rec.get(f["field"])
            cat = f["category"]
            if cat is None:
                x.append(float(self.imputation[f["field"]] if v is None else v))
            elif cat == "__unknown":
                x.append(1.0 if v not in self.known.get(f["field"], ()) else 0.0)
            else:
                x.append(1.0 if v == cat else 0.0)
        return x

    def probabilities(self, rows: list[list[float]]) -> np.ndarray:
        """Vectorized scoring of a batch."""
        z = self.intercept + ((np.array(rows) - self.mean) * self.scale) @ self.coef
        out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
        return out

    def valid(self, rec: Any) -> bool:
        """The same contract checks, in Python."""
        if not isinstance(rec, dict):
            return False
        for name, f in self.specs.items():
            v = rec.get(name)
            if v is None:
                if f.nullable:
                    continue
                return False
            if f.kind == "category":
                if v not in f.values:
                    return False
            else:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    return False
                if f.kind == "integer" and not isinstance(v, int):
                    return False
                lo = -math.inf if f.minimum is None else f.minimum
                hi = math.inf if f.maximum is None else f.maximum
                if not math.isfinite(v) or v < lo or v > hi:
                    return False
        return True


def plain_python(settings: Settings, model: LoadedModel, in_topic: str, out_topic: str, n: int) -> dict[str, Any]:
    """Consume n events, score them in numpy, produce predictions; return counts and wall time."""
    scorer = NumpyScorer(model.meta)
    c = Consumer(
        settings.kafka_client_config(
            **{"group.id": f"bench-py-{uuid.uuid4().hex}", "auto.offset.reset": "earliest", "enable.auto.commit": False,
               "fetch.max.bytes": 52428800}
        )
    )
    # acks=all and idempotent, as the Spark sink writes
    p = Producer(settings.kafka_client_config(**{"linger.ms": 10, "batch.size": 1_000_000, "compression.type": "lz4",
                                                 "enable.idempotence": True}))
    c.subscribe([in_topic])
    done = 0
    rejected = 0
    t0 = time.monotonic()
    deadline = t0 + 900
    while done < n and time.monotonic() < deadline:
        msgs = [m for m in c.consume(num_messages=5000, timeout=0.5) if not m.error()]
        if not msgs:
            continue
        good, rows = [], []
        for m in msgs:
            try:
                rec = json.loads(m.value() or b"")
            except ValueError:
                rec = None
            if scorer.valid(rec):
                good.append((m, rec))
                rows.append(scorer.vector(rec))
            else:
                rejected += 1
        if rows:
            probs = scorer.probabilities(rows)
            for (m, rec), prob in zip(good, probs, strict=True):
                out = {
                    "event_id": rec["event_id"],
                    "patient_id": rec["patient_id"],
                    "probability": round(float(prob), 6),
                    "prediction": int(prob > 0.5),
                    "model_version": model.version,
                }
                while True:
                    try:
                        p.produce(out_topic, key=m.key(), value=json.dumps(out))
                        break
                    except BufferError:
                        p.poll(0.01)
            p.poll(0)
        done += len(msgs)
    p.flush(60)
    c.close()
    return {"events": done, "rejected": rejected, "wall_seconds": time.monotonic() - t0}
