"""The model registry: MLflow's, holding each version of ``heart-risk`` with its run, metrics and aliases.

A registered version is one run of the ``heartrisk`` experiment that holds the
model directory exactly as ``train`` wrote it (``heartrisk/<version>/``: the
pipeline, ``model.json`` with its sha256 manifest, the out-of-fold predictions),
the same pipeline in MLflow's Spark flavour (``spark-model/``, for MLflow's own
tools), the model card when it lies beside the model, the hyperparameters as
params and the card's figures as metrics. The scorer reads the model directory
back and verifies it as it verifies a local one (``artifact.load_metadata``),
plus the sha256 of ``model.json`` recorded at registration, so a tampered
artifact is refused.

Aliases name roles: ``champion`` (what the scorer serves) and ``challenger``
(shadow-scored). MLflow keeps only an alias's current holder, so every move is
also appended to a registered-model tag (``heartrisk.history.<alias>``): that is
what ``rollback`` walks back, and what ``model list`` shows as who/when.

The default store is local: SQLite and an artifact folder under ``.mlflow-local/``
(no server); ``HEARTRISK_MLFLOW_TRACKING_URI`` names a real MLflow server instead.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.config import Settings
from stream.errors import ModelError
from stream.model.artifact import MODEL_FILE, load_metadata, resolve_model_dir
from stream.model.uri import NAME
from stream.spec import redact_url

logger = logging.getLogger(__name__)

EXPERIMENT = "heartrisk"
CHAMPION = "champion"
CHALLENGER = "challenger"
LOCAL_DIR = ".mlflow-local"
ARTIFACT_DIR = "heartrisk"  # the model directory inside a run's artifacts
TAG_VERSION = "heartrisk.model_version"  # model.json's version, on each registered version
TAG_SHA = "heartrisk.model_json_sha256"
TAG_METRICS = "heartrisk.metrics"
TAG_HISTORY = "heartrisk.history."
HISTORY_KEEP = 50
CARD = "MODEL_CARD.md"


@contextmanager
def answered(uri: str) -> Iterator[None]:
    """Turn MLflow's errors (a server down, a refused request) into one clear ``ModelError``.

    Raises:
        ModelError: naming the registry and MLflow's first line.
    """
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        msg = (f"the MLflow registry at {redact_url(uri)} failed: {first}. Check HEARTRISK_MLFLOW_TRACKING_URI "
               "(and MLFLOW_TRACKING_USERNAME/PASSWORD for a server)")
        raise ModelError(msg) from exc


def tracking_uri(settings: Settings) -> str:
    """The MLflow tracking/registry URI: the setting, or the local SQLite store."""
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    return f"sqlite:///{settings.path(LOCAL_DIR) / 'mlflow.db'}"


@dataclass(frozen=True)
class Version:
    """One registered version, as ``model list`` shows it."""

    number: int
    model_version: str
    aliases: tuple[str, ...]
    created_at: float
    registered_by: str
    run_id: str
    metrics: dict[str, Any]


class ModelRegistry:
    """The MLflow registry of one model name (``heart-risk``)."""

    def __init__(self, uri: str, artifact_root: Path | None, name: str = NAME) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.name = name
        self.artifact_root = artifact_root
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    @classmethod
    def from_settings(cls, settings: Settings, name: str = NAME) -> ModelRegistry:
        """The registry the settings name (the local store when none is set)."""
        uri = tracking_uri(settings)
        # a SQLite store keeps its artifacts beside it (MLflow's default is ./mlruns, wherever the command ran)
        root = Path(uri.removeprefix("sqlite:///")).parent / "artifacts" if uri.startswith("sqlite:///") else None
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        return cls(uri, root, name)

    # ---- registering ----------------------------------------------------
    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(EXPERIMENT)
        if exp is not None:
            return str(exp.experiment_id)
        location = self.artifact_root.as_uri() if self.artifact_root is not None else None
        return str(self.client.create_experiment(EXPERIMENT, artifact_location=location))

    def find(self, model_version: str) -> int | None:
        """The registry number holding ``model_version`` (model.json's), or None."""
        for v in self.versions():
            if v.model_version == model_version:
                return v.number
        return None

    def register(self, path: Path, spark: Any = None) -> tuple[int, bool]:
        """Log a verified model directory as a run and register it; returns (number, newly registered).

        A model.json version already registered is not registered twice: its number comes back.
        With a ``spark`` session the pipeline is also logged in MLflow's Spark flavour.

        Raises:
            ModelError: the directory does not verify.
        """
        import mlflow
        from mlflow.exceptions import MlflowException

        model_dir = resolve_model_dir(path)
        meta = load_metadata(model_dir)
        known = self.find(meta["version"])
        if known is not None:
            return known, False
        try:
            self.client.create_registered_model(self.name, description="heart-disease risk (Cleveland), heartrisk")
        except MlflowException as exc:
            if "already exists" not in str(exc).lower():
                raise
        m = meta["metrics"]
        metrics = {k: m[k] for k in ("cv_auc", "oof_auc", "oof_accuracy", "oof_brier") if m.get(k) is not None}
        hp = meta["hyperparameters"]
        run = self.client.create_run(self._experiment_id(), run_name=f"{self.name} {meta['version']}",
                                     tags={TAG_VERSION: meta["version"]})
        run_id = run.info.run_id
        for k, v in {"regParam": hp["regParam"], "elasticNetParam": hp["elasticNetParam"], "folds": hp["folds"],
                     "medium_threshold": meta["risk_thresholds"]["medium"],
                     "high_threshold": meta["risk_thresholds"]["high"]}.items():
            self.client.log_param(run_id, k, v)
        for k, v in metrics.items():
            self.client.log_metric(run_id, k, float(v))
        self.client.log_artifacts(run_id, str(model_dir), f"{ARTIFACT_DIR}/{model_dir.name}")
        for card in (model_dir.parent / CARD, model_dir.parent.parent / CARD):  # the model card, if beside it
            if card.is_file():
                self.client.log_artifact(run_id, str(card))
                break
        if spark is not None:
            from pyspark.ml import PipelineModel

            pipeline = PipelineModel.load(str(model_dir / "pipeline"))
            mlflow.set_tracking_uri(self.uri)  # the flavour logs through the fluent API
            with mlflow.start_run(run_id=run_id):
                mlflow.spark.log_model(pipeline, "spark-model", pip_requirements=["pyspark==4.2.0"])
        self.client.set_terminated(run_id)
        sha = hashlib.sha256((model_dir / MODEL_FILE).read_bytes()).hexdigest()
        mv = self.client.create_model_version(
            self.name, f"{run.info.artifact_uri}/{ARTIFACT_DIR}", run_id=run_id,
            tags={TAG_VERSION: meta["version"], TAG_SHA: sha, TAG_METRICS: json.dumps(metrics),
                  "heartrisk.registered_by": getpass.getuser()},
            description=f"model.json version {meta['version']}",
        )
        logger.info('event="model registered" name="%s" number=%s model_version="%s"', self.name, mv.version,
                    meta["version"])
        return int(mv.version), True

    # ---- reading ----------------------------------------------------------
    def versions(self) -> list[Version]:
        """Every registered version, oldest first (empty when the model is not registered yet)."""
        from mlflow.exceptions import MlflowException

        found = self.client.search_model_versions(f"name='{self.name}'")  # [] for a model not registered yet
        if not found:
            return []
        try:
            held = {str(a): str(n) for a, n in (self.client.get_registered_model(self.name).aliases or {}).items()}
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            held = {}
        out = []
        for mv in found:
            tags = mv.tags or {}
            out.append(Version(
                number=int(mv.version), model_version=tags.get(TAG_VERSION, "?"),
                aliases=tuple(sorted(a for a, n in held.items() if n == str(mv.version))),
                created_at=(mv.creation_timestamp or 0) / 1000.0,
                registered_by=tags.get("heartrisk.registered_by", mv.user_id or ""),
                run_id=mv.run_id or "", metrics=json.loads(tags.get(TAG_METRICS, "{}")),
            ))
        return sorted(out, key=lambda v: v.number)

    def holder(self, alias: str) -> int | None:
        """The number an alias points at, or None when unset (or the model is not registered).

        Raises:
            MlflowException: the registry did not answer (so a caller never takes an outage for "unset").
        """
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(self.name, alias).version)
        except MlflowException as exc:
            if exc.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
                return None
            raise

    def history(self, alias: str) -> list[dict[str, Any]]:
        """The alias's moves, oldest first: ``{"number", "by", "at", "action"}``."""
        from mlflow.exceptions import MlflowException

        try:
            tags = self.client.get_registered_model(self.name).tags or {}
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return []
        return list(json.loads(tags.get(TAG_HISTORY + alias, "[]")))

    # ---- moving aliases ---------------------------------------------------
    def _record(self, alias: str, number: int | None, action: str) -> None:
        entries = self.history(alias)
        entries.append({"number": number, "by": getpass.getuser(), "at": round(time.time(), 3), "action": action})
        self.client.set_registered_model_tag(self.name, TAG_HISTORY + alias, json.dumps(entries[-HISTORY_KEEP:]))

    def _check(self, number: int) -> None:
        if number not in {v.number for v in self.versions()}:
            known = [v.number for v in self.versions()]
            msg = f"{self.name} has no version {number} (registered: {known or 'none'}): see `heartrisk model list`"
            raise ModelError(msg)

    def promote(self, number: int, alias: str = CHAMPION) -> int | None:
        """Point ``alias`` at ``number``; returns the previous holder.

        Raises:
            ModelError: no such version.
        """
        self._check(number)
        previous = self.holder(alias)
        if previous != number:
            self.client.set_registered_model_alias(self.name, alias, str(number))
            self._record(alias, number, "promote")
        return previous

    def rollback(self, alias: str = CHAMPION) -> tuple[int, int]:
        """Move ``alias`` back to the version that held it before the current one; returns (from, to).

        Raises:
            ModelError: the alias is unset, or had no earlier holder.
        """
        current = self.holder(alias)
        if current is None:
            msg = f"alias {alias!r} of {self.name} is not set: nothing to roll back"
            raise ModelError(msg)
        # the holders, in order, as promotions and rollbacks left them (a rollback pops one)
        stack: list[int] = []
        for e in self.history(alias):
            if e["action"] == "rollback":
                if stack:
                    stack.pop()
            elif e["number"] is not None and (not stack or stack[-1] != e["number"]):
                stack.append(int(e["number"]))
        while stack and stack[-1] == current:
            stack.pop()
        if not stack:
            msg = f"alias {alias!r} of {self.name} had no holder before version {current}: nothing to roll back to"
            raise ModelError(msg)
        target = stack[-1]
        self.client.set_registered_model_alias(self.name, alias, str(target))
        self._record(alias, target, "rollback")
        return current, target

    def unset(self, alias: str) -> int | None:
        """Remove ``alias`` (e.g. end shadow scoring); returns its holder."""
        current = self.holder(alias)
        if current is not None:
            self.client.delete_registered_model_alias(self.name, alias)
            self._record(alias, None, "unset")
        return current

    # ---- fetching ---------------------------------------------------------
    def fetch(self, number: int, into: Path) -> tuple[Path, dict[str, Any]]:
        """Download version ``number`` into a new folder under ``into`` and verify it; (version dir, meta).

        Raises:
            ModelError: missing, or it does not verify (a tampered artifact).
        """
        import mlflow
        from mlflow.exceptions import MlflowException

        into.mkdir(parents=True, exist_ok=True)
        dest = Path(tempfile.mkdtemp(prefix=f"{self.name}-{number}-", dir=into))
        try:
            mv = self.client.get_model_version(self.name, str(number))
            source = self.client.get_model_version_download_uri(self.name, str(number))
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dest),
                                                              tracking_uri=self.uri))
        except MlflowException as exc:
            shutil.rmtree(dest, ignore_errors=True)
            msg = f"{self.name} version {number} cannot be fetched from {self.uri}: {str(exc).splitlines()[0]}"
            raise ModelError(msg) from exc
        try:
            found = [p.parent for p in local.rglob(MODEL_FILE)]
            if len(found) != 1:
                msg = f"{self.name} version {number} holds {len(found)} {MODEL_FILE} files, not one: not a model"
                raise ModelError(msg)
            model_dir = found[0]
            sha = hashlib.sha256((model_dir / MODEL_FILE).read_bytes()).hexdigest()
            expected = (mv.tags or {}).get(TAG_SHA)
            if expected != sha:
                msg = (f"{self.name} version {number}: {MODEL_FILE} was changed after registration (sha256 "
                       f"{sha[:12]}, registered {str(expected)[:12]}): refused")
                raise ModelError(msg)
            return model_dir, load_metadata(model_dir)
        except ModelError:
            shutil.rmtree(dest, ignore_errors=True)
            raise

    def discard(self, model_dir: Path) -> None:
        """Delete a fetched version's download (the folder ``fetch`` made for it)."""
        for parent in model_dir.parents:
            if parent.name.startswith(f"{self.name}-"):
                shutil.rmtree(parent, ignore_errors=True)
                return
