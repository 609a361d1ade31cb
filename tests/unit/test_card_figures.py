"""The committed model's uncertainty figures follow from its committed out-of-fold probabilities."""

from __future__ import annotations

import csv
import json

import numpy as np

from stream.config import PROJECT_ROOT
from stream.model import evaluation
from stream.model.dataset import read_csv

VERSION = PROJECT_ROOT / "models" / "heart_lr" / "1.0.0"


def test_the_committed_figures_are_recomputed_from_the_committed_probabilities():
    m = json.loads((VERSION / "model.json").read_text())["metrics"]
    with open(VERSION / "oof_predictions.csv") as f:
        oof = list(csv.DictReader(f))
    y = np.array([int(r["label"]) for r in oof], dtype=bool)
    p = np.array([float(r["probability"]) for r in oof])
    assert round(evaluation.roc_auc(y, p), 4) == m["oof_auc"]
    assert [round(x, 4) for x in evaluation.bootstrap_auc_ci(y, p, m["bootstrap_reps"], seed=42)] == m["oof_auc_ci95"]
    intercept, slope = evaluation.calibration_fit(y, p)
    assert [round(intercept, 4), round(slope, 4)] == [m["calibration_intercept"], m["calibration_slope"]]
    rows = {r["patient_id"]: r for r in read_csv(PROJECT_ROOT / "data" / "heart_disease.csv")}
    ids = [r["patient_id"] for r in oof]
    groups = evaluation.subgroup_figures(y, p, [rows[i]["Sex"] for i in ids], [rows[i]["Age"] for i in ids])
    assert groups == m["subgroups"]


def test_calibration_fit_finds_intercept_0_and_slope_1_on_calibrated_probabilities():
    rng = np.random.default_rng(1)
    p = rng.uniform(0.02, 0.98, 200_000)
    y = rng.uniform(size=p.size) < p
    intercept, slope = evaluation.calibration_fit(y, p)
    assert abs(intercept) < 0.02 and abs(slope - 1) < 0.02
    _, timid = evaluation.calibration_fit(y, 0.5 + (p - 0.5) * 0.5)  # squeezed toward 0.5
    assert timid > 1.5
