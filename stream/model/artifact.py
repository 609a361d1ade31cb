"""Load a versioned risk model and its validated metadata.

A model directory is ``models/heart_lr/<version>/`` holding ``pipeline/`` (the
saved Spark ``PipelineModel``) and ``model.json`` (its description, validated
against ``schemas/model.schema.json``). ``models/heart_lr/CURRENT`` names the
version used by default. Loading refuses a directory whose files do not match
the sha256 manifest in ``model.json``, whose version differs from its folder
name, or whose feature schema differs from the event contract.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema

from stream.config import Engine
from stream.contract.schema import clinical_fields, load_json
from stream.errors import ModelError

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel

    from stream.model.compiled import LinearPlan

logger = logging.getLogger(__name__)

MODEL_FILE = "model.json"
PIPELINE_DIR = "pipeline"
POINTER_FILE = "CURRENT"
METADATA_SCHEMA = "model.schema.json"


def file_manifest(folder: Path, root: Path) -> dict[str, str]:
    """sha256 of every file below ``folder``, keyed by path relative to ``root``."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def validate_metadata(meta: dict[str, Any], where: str = "model.json") -> None:
    """Check metadata against its JSON Schema.

    Raises:
        ModelError: naming the first violation.
    """
    try:
        jsonschema.validate(meta, load_json(METADATA_SCHEMA))
    except jsonschema.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        msg = f"{where} does not match {METADATA_SCHEMA} at {path}: {exc.message}"
        raise ModelError(msg) from exc


def resolve_model_dir(path: Path) -> Path:
    """A version directory, following the ``CURRENT`` pointer when given its parent.

    Raises:
        ModelError: the path is missing or holds no model.
    """
    if not path.exists():
        msg = f"model path {path} does not exist: run `heartrisk train` or set HEARTRISK_MODEL_DIR"
        raise ModelError(msg)
    pointer = path / POINTER_FILE
    if pointer.is_file():
        version = pointer.read_text().strip()
        target = path / version
        if not (target / MODEL_FILE).is_file():
            msg = f"{pointer} names version {version!r}, but {target / MODEL_FILE} does not exist"
            raise ModelError(msg)
        return target
    if (path / MODEL_FILE).is_file():
        return path
    msg = f"{path} holds neither a {POINTER_FILE} pointer nor a {MODEL_FILE}: not a model directory"
    raise ModelError(msg)


def load_metadata(path: Path) -> dict[str, Any]:
    """Read, validate and verify a model directory's ``model.json``.

    Raises:
        ModelError: corrupt, tampered with, or mismatched with the event contract.
    """
    model_dir = resolve_model_dir(path)
    meta_path = model_dir / MODEL_FILE
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        msg = f"{meta_path} is not valid JSON ({exc}): the model directory is corrupt"
        raise ModelError(msg) from exc
    validate_metadata(meta, str(meta_path))
    if meta["version"] != model_dir.name:
        msg = f"{meta_path} says version {meta['version']!r} but lives in folder {model_dir.name!r}"
        raise ModelError(msg)
    actual = file_manifest(model_dir / PIPELINE_DIR, model_dir)
    expected = meta["files"]
    if actual != expected:
        changed = sorted(k for k in expected if actual.get(k) != expected[k])
        extra = sorted(set(actual) - set(expected))
        msg = (
            f"{model_dir} does not match the manifest in {MODEL_FILE} "
            f"(changed or missing: {changed[:3]}, unexpected: {extra[:3]}): "
            "the model was modified after training; retrain it or restore it from git"
        )
        raise ModelError(msg)
    contract = [(f.name, f.spark_type) for f in clinical_fields()]
    trained = [(f["name"], f["type"]) for f in meta["feature_schema"]]
    if contract != trained:
        msg = (
            f"{model_dir} was trained on fields {trained} but the event contract in schemas/ "
            f"has {contract}: retrain the model"
        )
        raise ModelError(msg)
    return meta


@dataclass(frozen=True)
class LoadedModel:
    """A fitted pipeline with its verified metadata."""

    pipeline: PipelineModel
    meta: dict[str, Any]
    path: Path
    plan: LinearPlan | None = None  # the compiled engine; None runs PipelineModel.transform

    @property
    def version(self) -> str:
        """The model version, as written into every prediction."""
        return str(self.meta["version"])

    @property
    def thresholds(self) -> tuple[float, float]:
        """(medium, high) probability thresholds."""
        t = self.meta["risk_thresholds"]
        return float(t["medium"]), float(t["high"])


def risk_level(probability: float, medium: float, high: float) -> str:
    """Low, Medium or High for a probability of disease."""
    if probability >= high:
        return "High"
    if probability >= medium:
        return "Medium"
    return "Low"


def load_model(path: Path, meta: dict[str, Any] | None = None, engine: Engine = "compiled") -> LoadedModel:
    """Load a model directory (or its parent with a CURRENT pointer).

    Needs an active SparkSession. The directory is resolved once: pass the
    version directory and the ``meta`` that ``load_metadata`` returned for it,
    so the files are not hashed twice and a ``CURRENT`` pointer that moves in
    between cannot pair one version's metadata with another's pipeline.

    With ``engine="compiled"`` (the default) the fitted pipeline is also
    compiled into column arithmetic (``stream.model.compiled``).

    Raises:
        ModelError: see ``load_metadata``; ``meta`` is another version's;
            Spark cannot read the pipeline; or the compiled engine cannot run a stage.
    """
    from pyspark.ml import PipelineModel

    model_dir = resolve_model_dir(path)
    meta = meta if meta is not None else load_metadata(model_dir)
    if meta["version"] != model_dir.name:
        msg = (
            f"metadata of version {meta['version']!r} cannot go with the pipeline in {model_dir}: "
            "resolve the model directory once and pass that version directory on"
        )
        raise ModelError(msg)
    try:
        pipeline = PipelineModel.load(str(model_dir / PIPELINE_DIR))
    except Exception as exc:  # Spark raises Py4J/Analysis errors of many kinds
        msg = f"Spark cannot load the pipeline in {model_dir / PIPELINE_DIR}: {str(exc).splitlines()[0]}"
        raise ModelError(msg) from exc
    plan = None
    if engine == "compiled":
        from stream.model.compiled import compile_pipeline

        plan = compile_pipeline(pipeline)
    logger.info('event="model loaded" version="%s" path="%s" engine="%s"', meta["version"], model_dir, engine)
    return LoadedModel(pipeline, meta, model_dir, plan)
