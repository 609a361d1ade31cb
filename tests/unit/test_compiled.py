"""The compiled engine against PipelineModel.transform: the fitted pipeline stays the truth.

Parity: probabilities within 1e-12, and identical predictions, levels, codes,
contributions and imputed fields, on the 303 patients, 100,000 synthetic events
(every boundary value of every range and every category, nulls where allowed)
and the bad-row mix. The comparison runs inside Spark; only its counts come back.
"""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import datetime, timezone

import pytest
from pyspark.sql import functions as F

from stream.app.produce import MIXED_KINDS, bad_event
from stream.config import PROJECT_ROOT
from stream.contract.schema import clinical_fields
from stream.errors import ModelError
from stream.model.compiled import compile_pipeline
from stream.model.dataset import read_csv
from stream.model.distribution import SyntheticPatients
from stream.pipeline.build import build_scores
from tests.helpers import kafka_rows

TOLERANCE = 1e-12
SYNTHETIC = 100_000
TS = datetime(2026, 1, 2, tzinfo=timezone.utc)
COMPARED = ["error_code", "risk_prediction", "risk_level", "contributions", "imputed_fields"]


def _boundaries() -> dict[str, list[object]]:
    """Every edge of every range (and just inside), every category, null where the field allows it."""
    out: dict[str, list[object]] = {}
    for f in clinical_fields():
        if f.kind == "category":
            values: list[object] = list(f.values)
        else:
            lo, hi = f.minimum, f.maximum
            assert lo is not None and hi is not None
            step = 1 if f.kind == "integer" else 0.5
            values = [lo, hi, lo + step, hi - step, (lo + hi) / 2]
            values = [int(v) for v in values] if f.kind == "integer" else [float(v) for v in values]
        out[f.name] = [*values, None] if f.nullable else values
    return out


def _events(meta) -> list[tuple[bytes | None, bytes | None]]:
    patients = SyntheticPatients(meta["training_distribution"], seed=11)
    edges = _boundaries()
    rng = random.Random(5)
    out: list[tuple[bytes | None, bytes | None]] = []
    for f, values in edges.items():  # each boundary value at least once
        for v in values:
            out.append((b"p", json.dumps({**patients.draw(), f: v}).encode()))
    while len(out) < SYNTHETIC:  # then patients with a few fields pushed to their edges
        body = patients.draw()
        for f in rng.sample(sorted(edges), k=rng.randint(0, 4)):
            body[f] = rng.choice(edges[f])
        out.append((f"p-{len(out)}".encode(), json.dumps(body).encode()))
    for i, kind in enumerate(MIXED_KINDS * 20):
        e = bad_event(kind, i)
        out.append((e.key, e.value))
    return out


def _compare(spark, model, messages):
    """(rows, rows differing in any compared column, max |p_compiled - p_pipeline|, valid rows)."""
    raw = kafka_rows(spark, messages, timestamp=TS).cache()
    pipeline = dataclasses.replace(model, plan=None)
    a = build_scores(raw, model).select("offset", "probability_disease", *COMPARED)
    b = build_scores(raw, pipeline).select("offset", "probability_disease", *COMPARED)
    b = b.select("offset", *[F.col(c).alias(f"b_{c}") for c in ["probability_disease", *COMPARED]])
    joined = a.join(b, "offset")
    differs = F.lit(False)
    for c in COMPARED:
        differs = differs | ~F.col(c).eqNullSafe(F.col(f"b_{c}"))
    row = joined.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count_if(differs).alias("differing"),
        F.max(F.abs(F.col("probability_disease") - F.col("b_probability_disease"))).alias("max_diff"),
        F.count_if(F.col("error_code").isNull()).alias("valid"),
        F.count_if(F.col("probability_disease").isNull() != F.col("b_probability_disease").isNull()).alias("nulls"),
    ).first()
    raw.unpersist()
    return row


def test_the_committed_pipeline_compiles_to_one_slot_per_feature(model):
    plan = compile_pipeline(model.pipeline)
    features = model.meta["model"]["features"]
    assert [s.name for s in plan.slots] == [f["feature"] for f in features]
    for slot, feat in zip(plan.slots, features, strict=True):
        assert slot.coefficient == pytest.approx(feat["coefficient"], abs=1e-15)
    assert plan.intercept == pytest.approx(model.meta["model"]["intercept"], abs=1e-15)


def test_parity_on_the_303_patients(spark, model):
    rows = read_csv(PROJECT_ROOT / "data" / "heart_disease.csv")
    fields = {f.name for f in clinical_fields()}
    messages = [(b"p", json.dumps({k: v for k, v in r.items() if k in fields}).encode()) for r in rows]
    got = _compare(spark, model, messages)
    assert (got.rows, got.valid, got.differing, got.nulls) == (303, 303, 0, 0)
    assert got.max_diff <= TOLERANCE
    print(f"\n303 patients: max |p_compiled - p_pipeline| = {got.max_diff:.3g}")


def test_parity_on_100k_synthetic_events_with_every_boundary_and_the_bad_rows(spark, model):
    messages = _events(model.meta)
    got = _compare(spark, model, messages)
    assert got.rows == len(messages)
    assert got.valid >= SYNTHETIC * 0.99, "the synthetic events are valid: the comparison is about scores"
    assert (got.differing, got.nulls) == (0, 0)
    assert got.max_diff <= TOLERANCE
    print(f"\n{got.rows} events ({got.valid} valid): max |p_compiled - p_pipeline| = {got.max_diff:.3g}")


def test_an_unsupported_stage_is_refused_by_name(spark, model):
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import Binarizer

    odd = PipelineModel([*model.pipeline.stages[:1], Binarizer(inputCol="Age", outputCol="x"),
                         *model.pipeline.stages[1:]])
    with pytest.raises(ModelError, match="cannot run pipeline stage Binarizer .* use --engine pipeline"):
        compile_pipeline(odd)
