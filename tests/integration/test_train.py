"""`heartrisk train` reproduces a model from the committed data in one command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.model.artifact import load_metadata

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))


def test_train_from_committed_data(tmp_path, capsys):
    models = tmp_path / "heart_lr"
    env = {**os.environ, "HEARTRISK_MODEL_DIR": str(models), "HEARTRISK_SPARK_MASTER": "local[2]",
           "HEARTRISK_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    started = time.monotonic()
    r = subprocess.run(
        [HEARTRISK, "train", "--version", "ci"], env=env, capture_output=True, text=True, timeout=900
    )
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr[-3000:]
    with capsys.disabled():
        print(f"\ntraining took {elapsed:.0f}s")
    assert "CV AUC" in r.stdout and "calibration" in r.stdout
    assert "registered as heart-risk version 1" in r.stdout, "train logs the run and registers it in MLflow"
    assert (models / "CURRENT").read_text().strip() == "ci"
    meta = load_metadata(models)  # validates against schemas/model.schema.json and the manifest
    m = meta["metrics"]
    with capsys.disabled():
        print(f"CV AUC {m['cv_auc']} oof AUC {m['oof_auc']} accuracy {m['oof_accuracy']} Brier {m['oof_brier']}")
    assert m["cv_auc"] >= 0.88
    assert m["oof_accuracy"] >= 0.78
    assert m["oof_brier"] <= 0.16
    assert sum(row["n"] for row in m["calibration"]) == 303
    assert meta["training_data"]["rows"] == 303
    from stream.model.registry import ModelRegistry

    registry = ModelRegistry(env["HEARTRISK_MLFLOW_TRACKING_URI"], None)
    (v,) = registry.versions()
    assert (v.number, v.model_version, v.metrics["cv_auc"]) == (1, "ci", m["cv_auc"])
    assert "spark-model/MLmodel" in {a.path for a in registry.client.list_artifacts(v.run_id, "spark-model")}
    committed = json.loads((Path(__file__).parents[2] / "models/heart_lr/1.0.0/model.json").read_text())
    assert meta["training_data"]["sha256"] == committed["training_data"]["sha256"]
    assert meta["hyperparameters"]["regParam"] == committed["hyperparameters"]["regParam"], "seeded CV is reproducible"

    _card_figures_match_an_independent_computation(models / "ci", m)

    again = subprocess.run(
        [HEARTRISK, "train", "--version", "ci"], env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 5 and "exists already" in again.stderr


def _pairwise_auc(y, p):
    """AUC by comparing every diseased patient with every healthy one (ties count half)."""
    pos = [b for a, b in zip(y, p, strict=True) if a]
    neg = [b for a, b in zip(y, p, strict=True) if not a]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def _card_figures_match_an_independent_computation(version_dir, m):
    import csv

    import numpy as np
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.linalg import Vectors

    from stream.model.dataset import read_csv
    from stream.session import get_spark

    with open(version_dir / "oof_predictions.csv") as f:
        oof = list(csv.DictReader(f))
    assert len(oof) == 303
    ids = [r["patient_id"] for r in oof]
    y = np.array([int(r["label"]) for r in oof], dtype=bool)
    p = np.array([float(r["probability"]) for r in oof])
    assert round(_pairwise_auc(y, p), 4) == m["oof_auc"]

    # the bootstrap interval, resampled the documented way, AUC computed pairwise
    rng = np.random.default_rng(42)
    aucs = []
    while len(aucs) < m["bootstrap_reps"]:
        idx = rng.integers(0, len(y), len(y))
        if y[idx].all() or not y[idx].any():
            continue
        aucs.append(_pairwise_auc(y[idx], p[idx]))
    assert [round(float(x), 4) for x in np.percentile(aucs, [2.5, 97.5])] == m["oof_auc_ci95"]
    assert m["oof_auc_ci95"][0] < m["oof_auc"] < m["oof_auc_ci95"][1]

    # calibration: Spark's own unregularized logistic regression of the outcome on logit(p)
    from stream.config import load_settings

    spark = get_spark(load_settings({"spark_master": "local[2]"}), "heartrisk-test-card")
    logit = np.log(p / (1 - p))
    df = spark.createDataFrame([(float(a), Vectors.dense([float(b)])) for a, b in zip(y, logit, strict=True)],
                               ["label", "features"])
    fit = LogisticRegression(regParam=0.0, standardization=False, maxIter=200, tol=1e-12).fit(df)
    assert abs(fit.intercept - m["calibration_intercept"]) <= 1e-3
    assert abs(fit.coefficients[0] - m["calibration_slope"]) <= 1e-3

    # subgroups from the data set's own columns
    rows = {r["patient_id"]: r for r in read_csv(Path(__file__).parents[2] / "data" / "heart_disease.csv")}
    groups = {
        ("sex", "Male"): lambda r: r["Sex"] == "Male",
        ("sex", "Female"): lambda r: r["Sex"] == "Female",
        ("age_band", "<50"): lambda r: r["Age"] < 50,
        ("age_band", "50-60"): lambda r: 50 <= r["Age"] <= 60,
        ("age_band", ">60"): lambda r: r["Age"] > 60,
    }
    for (kind, name), member in groups.items():
        mask = np.array([member(rows[i]) for i in ids])
        yy, pp = y[mask], p[mask]
        card = m["subgroups"][kind][name]
        assert card["n"] == int(mask.sum()) and card["positives"] == int(yy.sum())
        assert card["auc"] == round(_pairwise_auc(yy, pp), 4), (kind, name)
        assert card["sensitivity"] == round(float((pp[yy] > 0.5).mean()), 4)
        assert card["specificity"] == round(float((pp[~yy] <= 0.5).mean()), 4)
    assert sum(m["subgroups"]["sex"][s]["n"] for s in ("Male", "Female")) == 303
    assert sum(m["subgroups"]["age_band"][b]["n"] for b in ("<50", "50-60", ">60")) == 303
    sex_aucs = [m["subgroups"]["sex"][s]["auc"] for s in ("Male", "Female")]
    assert m["subgroups"]["gaps"]["sex"]["auc"] == round(max(sex_aucs) - min(sex_aucs), 4)
