"""The MLflow registry wrapper on MLflow's own SQLite store (no Spark): register, aliases, rollback, tampering."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stream.config import PROJECT_ROOT
from stream.errors import ModelError
from stream.model.registry import ModelRegistry
from stream.model.uri import ModelUri

COMMITTED = PROJECT_ROOT / "models" / "heart_lr" / "1.0.0"


def copy_as(version: str, into: Path) -> Path:
    """The committed model under another version name (its manifest still holds: the pipeline is unchanged)."""
    target = into / version
    shutil.copytree(COMMITTED, target)
    meta = json.loads((target / "model.json").read_text())
    meta["version"] = version
    (target / "model.json").write_text(json.dumps(meta, indent=2))
    return target


@pytest.fixture
def registry(tmp_path):
    return ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts")


def test_model_uris_parse_or_say_what_is_expected(tmp_path):
    assert ModelUri.parse("", tmp_path) == ModelUri(path=tmp_path)
    assert ModelUri.parse("models/x", tmp_path).path == Path("models/x")
    assert ModelUri.parse("models:/heart-risk@champion", tmp_path) == ModelUri(name="heart-risk", alias="champion")
    assert ModelUri.parse("models:/heart-risk/3", tmp_path) == ModelUri(name="heart-risk", number=3)
    for bad in ("models:/heart-risk", "models:/heart-risk/x", "models:/@champion"):
        with pytest.raises(ModelError, match="expected models:/NAME@ALIAS"):
            ModelUri.parse(bad, tmp_path)


def test_register_is_idempotent_by_model_version_and_records_metrics(registry, tmp_path):
    number, new = registry.register(COMMITTED)
    assert (number, new) == (1, True)
    assert registry.register(COMMITTED) == (1, False), "the same model.json version is not registered twice"
    (v,) = registry.versions()
    assert v.number == 1 and v.model_version == "1.0.0"
    assert v.metrics["cv_auc"] == json.loads((COMMITTED / "model.json").read_text())["metrics"]["cv_auc"]
    run = registry.client.get_run(v.run_id)
    assert run.data.params["regParam"] == "0.03" and run.data.metrics["oof_auc"] == v.metrics["oof_auc"]
    logged = {a.path for a in registry.client.list_artifacts(v.run_id)}
    assert {"MODEL_CARD.md", "heartrisk"} <= logged
    assert "heartrisk/1.0.0/model.json" in {a.path for a in registry.client.list_artifacts(v.run_id, "heartrisk/1.0.0")}


def test_promote_rollback_and_unset_walk_the_alias_history(registry, tmp_path):
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        registry.register(copy_as(version, tmp_path / "src") if version != "1.0.0" else COMMITTED)
    with pytest.raises(ModelError, match="not set: nothing to roll back"):
        registry.rollback()
    assert registry.promote(1) is None
    assert registry.promote(2) == 1
    assert registry.promote(3) == 2
    assert registry.rollback() == (3, 2)
    assert registry.rollback() == (2, 1)
    with pytest.raises(ModelError, match="no holder before version 1"):
        registry.rollback()
    assert registry.holder("champion") == 1
    with pytest.raises(ModelError, match="has no version 9"):
        registry.promote(9)
    assert registry.promote(2, "challenger") is None
    assert [v.aliases for v in registry.versions()] == [("champion",), ("challenger",), ()]
    assert registry.unset("challenger") == 2 and registry.holder("challenger") is None
    actions = [(e["action"], e["number"]) for e in registry.history("champion")]
    assert actions == [("promote", 1), ("promote", 2), ("promote", 3), ("rollback", 2), ("rollback", 1)]


def test_fetch_verifies_and_refuses_a_tampered_artifact(registry, tmp_path):
    registry.register(COMMITTED)
    registry.register(copy_as("2.0.0", tmp_path / "src"))
    model_dir, meta = registry.fetch(1, tmp_path / "dl")
    assert model_dir.name == "1.0.0" and meta["version"] == "1.0.0"
    registry.discard(model_dir)
    assert list((tmp_path / "dl").iterdir()) == [], "a loaded version's download is deleted"
    (stored,) = (tmp_path / "artifacts").rglob("heartrisk/2.0.0/pipeline/stages/5_*/data/part-*.parquet")
    stored.write_bytes(stored.read_bytes() + b"tampered")
    with pytest.raises(ModelError, match="does not match the manifest"):
        registry.fetch(2, tmp_path / "dl")
    (meta_file,) = (tmp_path / "artifacts").rglob("heartrisk/1.0.0/model.json")
    meta_file.write_text(meta_file.read_text().replace('"high": 0.51', '"high": 0.99'))
    with pytest.raises(ModelError, match="changed after registration"):
        registry.fetch(1, tmp_path / "dl")
    assert list((tmp_path / "dl").iterdir()) == [], "a refused download is deleted too"


def test_a_registry_that_does_not_answer_is_one_clear_error_never_taken_for_an_unset_alias(monkeypatch, tmp_path):
    import os
    import subprocess
    import sys

    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    down = ModelRegistry("http://127.0.0.1:1", None)
    with pytest.raises(MlflowException):
        down.holder("champion")  # not None: a scorer must not drop its challenger over an outage
    env = {**os.environ, "HEARTRISK_MLFLOW_TRACKING_URI": "http://127.0.0.1:1", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    for args in (["list"], ["promote", "1"], ["rollback"]):
        r = subprocess.run([str(Path(sys.executable).with_name("heartrisk")), "model", *args], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 5 and "Traceback" not in r.stderr, r.stderr[-1500:]
        assert "the MLflow registry at http://127.0.0.1:1 failed" in r.stderr
