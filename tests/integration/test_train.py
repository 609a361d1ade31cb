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
    env = {**os.environ, "HEARTRISK_MODEL_DIR": str(models), "HEARTRISK_SPARK_MASTER": "local[2]"}
    started = time.monotonic()
    r = subprocess.run(
        [HEARTRISK, "train", "--version", "ci"], env=env, capture_output=True, text=True, timeout=900
    )
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr[-3000:]
    with capsys.disabled():
        print(f"\ntraining took {elapsed:.0f}s")
    assert "CV AUC" in r.stdout and "calibration" in r.stdout
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
    committed = json.loads((Path(__file__).parents[2] / "models/heart_lr/1.0.0/model.json").read_text())
    assert meta["training_data"]["sha256"] == committed["training_data"]["sha256"]
    assert meta["hyperparameters"]["regParam"] == committed["hyperparameters"]["regParam"], "seeded CV is reproducible"

    again = subprocess.run(
        [HEARTRISK, "train", "--version", "ci"], env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 5 and "exists already" in again.stderr
