"""The committed model: metadata, loading errors, reload stability, coefficients, the guide's example."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array

from stream.config import PROJECT_ROOT
from stream.errors import ModelError
from stream.model.artifact import load_metadata, resolve_model_dir, risk_level, validate_metadata
from stream.model.train import read_training_data

MODELS = PROJECT_ROOT / "models" / "heart_lr"
DATA = PROJECT_ROOT / "data" / "heart_disease.csv"
EXAMPLE = {
    "Age": 54, "Blood_Pressure": 130.0, "Cholesterol": 242.0, "Heart_Rate": 150.0, "Sex": "Male",
    "angina": "Asymptomatic", "Glycemia": "Less than 120 mg/dl", "ECG": "Normal",
    "angina_after_sport": "No", "ecg_slope": "Rising", "fluoroscopy": 2, "thalassemia": "No",
}


@pytest.fixture
def model_copy(tmp_path):
    src = resolve_model_dir(MODELS)
    dst = tmp_path / "heart_lr" / src.name
    shutil.copytree(src, dst)
    return dst


def test_committed_model_metadata_validates_and_meets_the_floor():
    meta = load_metadata(MODELS)
    validate_metadata(meta)
    assert meta["metrics"]["cv_auc"] >= 0.88
    assert meta["training_data"]["rows"] == 303
    t = meta["risk_thresholds"]
    assert 0 < t["medium"] < t["high"] < 1
    assert set(meta["training_distribution"]) == {f["name"] for f in meta["feature_schema"]}


def test_missing_path_is_refused(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_metadata(tmp_path / "nope")


def test_tampered_file_is_refused(model_copy):
    victim = next(p for p in (model_copy / "pipeline").rglob("part-*") if p.is_file())
    victim.write_bytes(victim.read_bytes() + b"\n")
    with pytest.raises(ModelError, match="does not match the manifest"):
        load_metadata(model_copy)


def test_corrupt_model_json_is_refused(model_copy):
    (model_copy / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_metadata(model_copy)


def test_schema_violation_is_refused(model_copy):
    meta = json.loads((model_copy / "model.json").read_text())
    del meta["risk_thresholds"]
    (model_copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="risk_thresholds"):
        load_metadata(model_copy)


def test_version_folder_mismatch_is_refused(model_copy):
    moved = model_copy.with_name("9.9.9")
    model_copy.rename(moved)
    with pytest.raises(ModelError, match="lives in folder '9.9.9'"):
        load_metadata(moved)


def test_contract_mismatch_is_refused(model_copy):
    meta = json.loads((model_copy / "model.json").read_text())
    meta["feature_schema"][0]["name"] = "age_years"
    (model_copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="retrain the model"):
        load_metadata(model_copy)


def test_pointer_to_missing_version_is_refused(tmp_path):
    (tmp_path / "CURRENT").write_text("0.0.0\n")
    with pytest.raises(ModelError, match="names version '0.0.0'"):
        load_metadata(tmp_path)


def _probabilities(pipeline, df) -> dict[str, float]:
    out = pipeline.transform(df).select("patient_id", vector_to_array("probability")[1].alias("p"))
    return {r.patient_id: r.p for r in out.collect()}


def test_saved_and_reloaded_model_gives_identical_probabilities(spark, model, tmp_path):
    df = read_training_data(spark, DATA)
    before = _probabilities(model.pipeline, df)
    model.pipeline.write().save(str(tmp_path / "again"))
    after = _probabilities(PipelineModel.load(str(tmp_path / "again")), df)
    assert len(before) == 303
    assert after == before


def test_model_json_coefficients_reproduce_the_pipeline(spark, model):
    """The numbers written for contributions (and the numpy baseline) are the model's own."""
    df = read_training_data(spark, DATA)
    scaled = model.pipeline.transform(df).select(
        "patient_id", vector_to_array("features").alias("x"), vector_to_array("probability")[1].alias("p")
    )
    feats = model.meta["model"]["features"]
    coef = np.array([f["coefficient"] for f in feats])
    for r in scaled.collect():
        z = model.meta["model"]["intercept"] + float(np.dot(coef, np.array(r.x)))
        assert 1 / (1 + math.exp(-z)) == pytest.approx(r.p, abs=1e-12)


def test_guide_example_scores_strictly_between_0_and_1(spark, model):
    df = spark.createDataFrame([{**EXAMPLE, "patient_id": "guide"}])
    (p,) = _probabilities(model.pipeline, df).values()
    assert 0.0 < p < 1.0
    medium, high = model.thresholds
    level = risk_level(p, medium, high)
    assert level in ("Low", "Medium", "High")
    card = (PROJECT_ROOT / "models" / "MODEL_CARD.md").read_text()
    assert f"{p:.3f}" in card and level in card, "the model card documents the example's score and level"


def _two_versions(tmp_path):
    """models/<a, b> with CURRENT -> a; b is a copy of the committed model under another version name."""
    src = resolve_model_dir(MODELS)
    root = tmp_path / "heart_lr"
    a, b = root / "a", root / "b"
    shutil.copytree(src, a)
    shutil.copytree(src, b)
    for folder in (a, b):
        meta = json.loads((folder / "model.json").read_text())
        meta["version"] = folder.name
        (folder / "model.json").write_text(json.dumps(meta))
    (root / "CURRENT").write_text("a\n")
    return root


def test_current_moving_between_metadata_and_pipeline_cannot_mix_versions(spark, tmp_path):
    from stream.model.artifact import load_model

    root = _two_versions(tmp_path)
    version_dir = resolve_model_dir(root)  # resolved once, as the scorer does at start-up
    meta = load_metadata(version_dir)
    (root / "CURRENT").write_text("b\n")  # a promotion lands between the two steps
    model = load_model(version_dir, meta)
    assert (model.version, model.path.name) == ("a", "a")
    assert resolve_model_dir(root).name == "b", "the pointer did move"
    with pytest.raises(ModelError, match="metadata of version 'a' cannot go with the pipeline in"):
        load_model(root, meta)  # resolving again would pair a's metadata with b's pipeline: refused
