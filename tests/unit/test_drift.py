"""Drift: bins, the in-query counts against numpy, PSI, the window, synthetic and drifted patients."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stream.app.produce import event_json
from stream.config import PROJECT_ROOT
from stream.contract.schema import clinical_fields
from stream.errors import ConfigError
from stream.model.artifact import load_metadata
from stream.model.dataset import read_csv
from stream.model.distribution import SyntheticPatients
from stream.monitor.drift import (
    EPSILON,
    LEVELS,
    add_to_window,
    batch_counts,
    empty_counts,
    psi,
    reference,
    summarize,
    window_counts,
)

META = load_metadata(PROJECT_ROOT / "models" / "heart_lr")
REF = reference(META)
FIELDS = {f.name: f for f in clinical_fields()}


def test_the_layout_gives_each_field_its_bins_plus_unknown_and_missing():
    from stream.monitor.drift import LEVEL_SLOT, layout

    out = layout(REF)
    assert out["levels"] == list(LEVELS) and LEVEL_SLOT == "risk_level"
    slots = {s["name"]: s for s in out["slots"]}
    assert list(slots) == list(REF["features"])
    assert slots["Age"]["edges"] == REF["features"]["Age"]["edges"] and slots["Age"]["size"] == 11 + 1 + 2
    assert slots["Sex"]["categories"] == ["Male", "Female"] and slots["Sex"]["size"] == 4


def test_a_missing_drift_class_is_a_setup_error_that_says_what_to_do():
    from types import SimpleNamespace

    from stream.errors import SetupError
    from stream.monitor.observe import register_drift_function

    class NoClass:
        def __getattr__(self, name):
            raise TypeError("'JavaPackage' object is not callable")

    with pytest.raises(SetupError, match=r"not callable\): run `make setup`, or score with --drift off"):
        register_drift_function(SimpleNamespace(_jvm=NoClass(), _jsparkSession=None))


def numpy_bins(values: list[float | None], spec: dict) -> list[int]:
    """Independent binning: numpy.histogram (as training made the reference), plus below and above."""
    if spec["kind"] == "categorical":
        return [sum(v == c for v in values) for c in spec["categories"]]
    present = np.array([v for v in values if v is not None], dtype=float)
    edges = np.array(spec["edges"])
    inside, _ = np.histogram(present[(present >= edges[0]) & (present <= edges[-1])], bins=edges)
    return [int((present < edges[0]).sum()), *map(int, inside), int((present > edges[-1]).sum())]


def test_reference_is_the_models_training_distribution():
    dist = META["training_distribution"]
    assert set(REF["features"]) == set(FIELDS)
    assert REF["features"]["Age"]["expected"] == [0, *dist["Age"]["counts"], 0]
    assert REF["features"]["Sex"]["categories"] == list(FIELDS["Sex"].values)
    assert sum(REF["features"]["Sex"]["expected"]) == 303
    assert REF["levels"] == [META["metrics"]["levels"][lv]["n"] for lv in LEVELS]
    assert REF["nullable"] == ["fluoroscopy", "thalassemia"]


def test_psi_by_hand_and_its_floor():
    assert psi([10, 20, 70], [10, 20, 70]) == 0.0
    expected = (0.5 - 0.2) * math.log(0.5 / 0.2) + (0.5 - 0.8) * math.log(0.5 / 0.8)
    assert psi([20, 80], [50, 50]) == pytest.approx(expected, abs=1e-15)
    # an empty expected bin counts as EPSILON, so a new value gives a large but finite index
    assert psi([100, 0], [90, 10]) == pytest.approx(
        (0.9 - 1.0) * math.log(0.9 / 1.0) + (0.1 - EPSILON) * math.log(0.1 / EPSILON), abs=1e-12
    )
    assert psi([1, 2], [0, 0]) == 0.0, "no events: nothing to compare"


def test_the_window_keeps_its_length_and_sums_buckets():
    one = {**empty_counts(), "n": 1, "levels": [0, 0, 1], "features": {"Age": [0, 1]}, "missing": {}}
    buckets: list = []
    for t in range(0, 7200, 30):  # a batch every 30 s for 2 h; window 1 h in 60 s buckets
        buckets = add_to_window(buckets, one, 1_000_000.0 + t, 60.0, 3600.0)
    assert len(buckets) <= 62
    now = 1_000_000.0 + 7170
    total = window_counts(buckets, now, 3600.0, 60.0)
    assert 120 <= total["n"] <= 122, total["n"]  # 1 h of batches, plus at most one partly older bucket
    assert total["features"]["Age"] == [0, total["n"]] and total["levels"] == [0, 0, total["n"]]
    assert window_counts(buckets, now + 7200, 3600.0, 60.0)["n"] == 0, "old buckets age out"


def test_synthetic_patients_reproduce_the_training_bins():
    synth = SyntheticPatients(META["training_distribution"], seed=3)
    patients = [synth.draw() for _ in range(20_000)]
    for name, spec in REF["features"].items():
        bins = numpy_bins([p[name] for p in patients], spec)
        assert psi(spec["expected"], bins) < 0.01, (name, bins)


def test_drifted_patients_move_blood_pressure_only_and_stay_in_range():
    synth = SyntheticPatients(META["training_distribution"], seed=4, shift={"Blood_Pressure": 25})
    patients = [synth.draw() for _ in range(20_000)]
    bp = [p["Blood_Pressure"] for p in patients]
    assert max(bp) <= FIELDS["Blood_Pressure"].maximum and min(bp) >= 94 + 25
    values = {name: psi(spec["expected"], numpy_bins([p[name] for p in patients], spec))
              for name, spec in REF["features"].items()}
    assert values.pop("Blood_Pressure") > 0.25
    assert max(values.values()) < 0.01, values
    with pytest.raises(ConfigError, match="only the numeric"):
        SyntheticPatients(META["training_distribution"], shift={"Sex": 1})


def test_in_query_counts_equal_numpy_on_real_and_hostile_events(spark, model):
    from pyspark.sql import functions as F

    from stream.monitor.observe import drift_columns, observed_columns
    from stream.pipeline.build import build_scores
    from tests.helpers import kafka_rows

    rows = read_csv(PROJECT_ROOT / "data" / "heart_disease.csv")
    synth = SyntheticPatients(META["training_distribution"], seed=9, shift={"Cholesterol": 300, "Heart_Rate": -60})
    patients = [{f: r[f] for f in FIELDS} for r in rows] + [synth.draw() for _ in range(500)]
    # edge values exactly on bin edges, and out-of-bin values (below the first edge, above the last)
    edge_cases = []
    for name, spec in REF["features"].items():
        if spec["kind"] == "numeric":
            for e in (*spec["edges"], spec["edges"][0] - 1, spec["edges"][-1] + 1):
                lo, hi = FIELDS[name].minimum, FIELDS[name].maximum
                if (lo is None or e >= lo) and (hi is None or e <= hi):
                    edge_cases.append({**patients[0], name: int(e) if FIELDS[name].kind == "integer" else e})
    patients += edge_cases + [{**patients[1], "fluoroscopy": None, "thalassemia": None}]
    messages = [(f"p{i}".encode(), json.dumps(event_json(p, f"p{i}")).encode()) for i, p in enumerate(patients)]
    messages += [(b"bad", b"{not json"), (b"bad2", json.dumps({**event_json(patients[0], "x"), "Age": 500}).encode())]
    scored = build_scores(kafka_rows(spark, messages), model)
    row = scored.agg(*observed_columns(), *drift_columns(spark, REF)).first().asDict()
    counts = batch_counts(row, REF)

    valid = scored.where(F.col("error_code").isNull()).select("event.*", "risk_level", "probability_disease").collect()
    assert counts["n"] == len(valid) == len(patients), "both bad events are left out"
    for name, spec in REF["features"].items():
        values = [r[name] for r in valid]
        assert counts["features"][name] == numpy_bins(values, spec), name
        assert counts["missing"][name] == sum(v is None for v in values)
    assert counts["levels"] == [sum(r["risk_level"] == lv for r in valid) for lv in LEVELS]
    assert counts["probability_sum"] == pytest.approx(sum(r["probability_disease"] for r in valid), rel=1e-12)
    summary = summarize(counts, REF)
    assert summary["missing_ratio"]["fluoroscopy"] == pytest.approx(5 / len(patients))  # 4 in the data set + 1
    assert summary["psi"]["Cholesterol"] > 0.25 and summary["psi"]["Sex"] < 0.01

    # as the stream counts: an observation over 3 partitions, whose partial counts are merged across tasks
    from pyspark.sql import Observation

    obs = Observation("drift-test")
    scored.repartition(3).observe(obs, *observed_columns(), *drift_columns(spark, REF)).write.format("noop") \
        .mode("overwrite").save()
    merged = batch_counts(obs.get, REF)
    assert merged["probability_sum"] == pytest.approx(counts["probability_sum"], rel=1e-12)  # summed in another order
    assert {**merged, "probability_sum": 0} == {**counts, "probability_sum": 0}
