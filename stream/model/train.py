"""Train the logistic-regression risk model and write a versioned, self-describing artifact.

Stages (those of the original design): median imputation of numbers,
``StringIndexer(handleInvalid="keep")`` + ``OneHotEncoder`` for categories,
``VectorAssembler``, ``StandardScaler`` and ``LogisticRegression``. The
hyper-parameters come from 10-fold ``CrossValidator``; the reported accuracy,
Brier score, calibration and risk thresholds come from out-of-fold
probabilities of the chosen configuration, so none is measured on training rows.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import numpy as np
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import (
    Imputer,
    ImputerModel,
    OneHotEncoder,
    StandardScaler,
    StandardScalerModel,
    StringIndexer,
    VectorAssembler,
)
from pyspark.ml.functions import vector_to_array
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from stream.contract.schema import FieldSpec, clinical_fields
from stream.model import evaluation
from stream.model.artifact import MODEL_FILE, PIPELINE_DIR, POINTER_FILE, file_manifest, validate_metadata
from stream.model.dataset import ID_COLUMN, TARGET, sha256_file
from stream.model.distribution import training_distribution

logger = logging.getLogger(__name__)

SEED = 42
FOLDS = 10
REG_PARAMS = (0.001, 0.01, 0.03, 0.1, 0.3)
ELASTIC_NET = (0.0, 0.5)
FEATURES_RAW = "features_raw"
FEATURES = "features"
LABEL = "label"
OOF_FILE = "oof_predictions.csv"  # beside model.json: the out-of-fold probabilities behind the card


def imputed_col(f: FieldSpec) -> str:
    """Output column of the imputer for a numeric field."""
    return f"{f.name}__imputed"


def index_col(f: FieldSpec) -> str:
    """Output column of the string indexer for a category."""
    return f"{f.name}__index"


def onehot_col(f: FieldSpec) -> str:
    """Output column of the one-hot encoder for a category."""
    return f"{f.name}__onehot"


def build_pipeline() -> Pipeline:
    """The unfitted pipeline, built from the event contract's fields."""
    fields = clinical_fields()
    numeric = [f for f in fields if f.is_numeric]
    categorical = [f for f in fields if not f.is_numeric]
    imputer = Imputer(
        inputCols=[f.name for f in numeric],
        outputCols=[imputed_col(f) for f in numeric],
        strategy="median",
    )
    indexer = StringIndexer(
        inputCols=[f.name for f in categorical],
        outputCols=[index_col(f) for f in categorical],
        handleInvalid="keep",
        stringOrderType="alphabetAsc",
    )
    encoder = OneHotEncoder(
        inputCols=[index_col(f) for f in categorical],
        outputCols=[onehot_col(f) for f in categorical],
        dropLast=True,
        handleInvalid="keep",
    )
    assembler = VectorAssembler(
        inputCols=[imputed_col(f) for f in numeric] + [onehot_col(f) for f in categorical],
        outputCol=FEATURES_RAW,
        handleInvalid="keep",
    )
    scaler = StandardScaler(inputCol=FEATURES_RAW, outputCol=FEATURES, withMean=True, withStd=True)
    lr = LogisticRegression(featuresCol=FEATURES, labelCol=LABEL, maxIter=100, tol=1e-6)
    return Pipeline(stages=[imputer, indexer, encoder, assembler, scaler, lr])


def training_schema() -> str:
    """DDL schema of the data CSV."""
    cols = [f"{ID_COLUMN} string"] + [f"{f.name} {f.spark_type}" for f in clinical_fields()]
    return ", ".join([*cols, f"{TARGET} string"])


def read_training_data(spark: SparkSession, path: Path) -> DataFrame:
    """The data set as a labelled DataFrame in one partition (for reproducible folds)."""
    df = spark.read.csv(str(path), header=True, schema=training_schema(), mode="FAILFAST")
    return df.withColumn(LABEL, (F.col(TARGET) == "Yes").cast("double")).coalesce(1).cache()


def _probabilities(model: PipelineModel, df: DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rows = (
        model.transform(df)
        .select(ID_COLUMN, LABEL, vector_to_array(F.col("probability"))[1].alias("p"))
        .collect()
    )
    return (
        np.array([r[LABEL] for r in rows]),
        np.array([r["p"] for r in rows]),
        [r[ID_COLUMN] for r in rows],
    )


def out_of_fold(
    spark: SparkSession, df: DataFrame, reg: float, enet: float, folds: int = FOLDS
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Out-of-fold probabilities of the chosen configuration, stratified folds: labels, probabilities, ids."""
    ids = [r[0] for r in df.select(ID_COLUMN, LABEL).orderBy(ID_COLUMN).collect()]
    labels = {r[0]: r[1] for r in df.select(ID_COLUMN, LABEL).collect()}
    rng = np.random.default_rng(SEED)
    fold_of: dict[str, int] = {}
    for cls in (0.0, 1.0):
        members = [i for i in ids if labels[i] == cls]
        rng.shuffle(members)
        for k, pid in enumerate(members):
            fold_of[pid] = k % folds
    fold_df = spark.createDataFrame(list(fold_of.items()), f"{ID_COLUMN} string, fold int")
    data = df.join(fold_df, ID_COLUMN).cache()
    ys, ps, ids_out = [], [], []
    pipeline = build_pipeline()
    lr = cast(LogisticRegression, pipeline.getStages()[-1])
    for k in range(folds):
        model = pipeline.fit(data.where(F.col("fold") != k), {lr.regParam: reg, lr.elasticNetParam: enet})
        y, p, fold_ids = _probabilities(model, data.where(F.col("fold") == k))
        ys.append(y)
        ps.append(p)
        ids_out.extend(fold_ids)
    data.unpersist()
    return np.concatenate(ys), np.concatenate(ps), ids_out


def how_sure(y: np.ndarray, p: np.ndarray, sex: list[Any], age: list[Any]) -> dict[str, Any]:
    """The card's uncertainty figures from out-of-fold probabilities: AUC interval, calibration, subgroups."""
    lo, hi = evaluation.bootstrap_auc_ci(y, p, seed=SEED)
    intercept, slope = evaluation.calibration_fit(y, p)
    return {
        "oof_auc_ci95": [round(lo, 4), round(hi, 4)],
        "bootstrap_reps": evaluation.BOOTSTRAP_REPS,
        "calibration_intercept": round(intercept, 4),
        "calibration_slope": round(slope, 4),
        "subgroups": evaluation.subgroup_figures(y, p, sex, age),
    }


def expanded_features(model: PipelineModel, df: DataFrame) -> list[dict[str, Any]]:
    """Name, source field and category of each column of the assembled vector."""
    out = model.transform(df.limit(1))
    attrs = out.schema[FEATURES_RAW].metadata["ml_attr"]["attrs"]
    flat = sorted((a for group in attrs.values() for a in group), key=lambda a: a["idx"])
    fields = {f.name: f for f in clinical_fields()}
    result = []
    for a in flat:
        name = a["name"]
        for f in fields.values():
            if f.is_numeric and name == imputed_col(f):
                result.append({"feature": f.name, "field": f.name, "category": None})
                break
            if not f.is_numeric and name.startswith(onehot_col(f) + "_"):
                category = name[len(onehot_col(f)) + 1 :]
                result.append({"feature": f"{f.name}={category}", "field": f.name, "category": category})
                break
        else:
            msg = f"unexpected assembled feature {name!r}"
            raise RuntimeError(msg)
    return result


def train(
    spark: SparkSession,
    data_path: Path,
    models_dir: Path,
    version: str,
    promote: bool = True,
    folds: int = FOLDS,
    progress: bool = True,
    reg_params: Sequence[float] = REG_PARAMS,
    elastic_net: Sequence[float] = ELASTIC_NET,
) -> dict[str, Any]:
    """Train, cross-validate over the grid, save ``models_dir/<version>/`` and return its metadata."""
    started = time.monotonic()

    def say(msg: str) -> None:
        if progress:
            print(f"[{time.monotonic() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    target = models_dir / version
    if target.exists():
        msg = f"{target} exists already: choose another --version or delete it"
        raise FileExistsError(msg)
    df = read_training_data(spark, data_path)
    n = df.count()
    positives = int(df.where(F.col(LABEL) == 1.0).count())
    say(f"read {n} patients ({positives} with disease) from {data_path}")

    pipeline = build_pipeline()
    lr = cast(LogisticRegression, pipeline.getStages()[-1])
    grid = (
        ParamGridBuilder()
        .addGrid(lr.regParam, list(reg_params))
        .addGrid(lr.elasticNetParam, list(elastic_net))
        .build()
    )
    cv = CrossValidator(
        estimator=pipeline,
        estimatorParamMaps=grid,
        evaluator=BinaryClassificationEvaluator(labelCol=LABEL, metricName="areaUnderROC"),
        numFolds=folds,
        seed=SEED,
        parallelism=2,
    )
    say(f"{folds}-fold cross-validation over {len(grid)} configurations ({folds * len(grid)} fits) ...")
    cv_model = cv.fit(df)
    best_i = int(np.argmax(cv_model.avgMetrics))
    best = grid[best_i]
    reg = float(best[lr.regParam])
    enet = float(best[lr.elasticNetParam])
    cv_auc = float(cv_model.avgMetrics[best_i])
    say(f"best regParam={reg} elasticNetParam={enet}: CV AUC {cv_auc:.4f}")

    say(f"out-of-fold probabilities ({folds} more fits) ...")
    y, p, oof_ids = out_of_fold(spark, df, reg, enet, folds)
    medium, high = evaluation.choose_thresholds(y, p)
    rows = {r[ID_COLUMN]: r for r in df.select(ID_COLUMN, "Sex", "Age").collect()}
    metrics = {
        "cv_auc": round(cv_auc, 4),
        "cv_auc_std": round(float(cv_model.stdMetrics[best_i]), 4) if cv_model.stdMetrics else None,
        "cv_auc_by_config": [
            {
                "regParam": float(m[lr.regParam]),
                "elasticNetParam": float(m[lr.elasticNetParam]),
                "auc": round(float(a), 4),
            }
            for m, a in zip(grid, cv_model.avgMetrics, strict=True)
        ],
        "oof_auc": round(evaluation.roc_auc(y, p), 4),
        "oof_accuracy": round(evaluation.accuracy(y, p), 4),
        "oof_brier": round(evaluation.brier(y, p), 4),
        "calibration": evaluation.calibration_table(y, p),
        "levels": evaluation.level_summary(y, p, medium, high),
        **how_sure(y, p, [rows[i]["Sex"] for i in oof_ids], [rows[i]["Age"] for i in oof_ids]),
    }
    say(f"out-of-fold AUC {metrics['oof_auc']} (95% CI {metrics['oof_auc_ci95']}), accuracy "
        f"{metrics['oof_accuracy']}, Brier {metrics['oof_brier']}, calibration intercept "
        f"{metrics['calibration_intercept']} slope {metrics['calibration_slope']}")

    final = pipeline.fit(df, {lr.regParam: reg, lr.elasticNetParam: enet})
    target.mkdir(parents=True)
    final.write().save(str(target / PIPELINE_DIR))
    shutil.rmtree(target / PIPELINE_DIR / "_temporary", ignore_errors=True)
    reloaded = PipelineModel.load(str(target / PIPELINE_DIR))
    lr_model = reloaded.stages[-1]
    scaler = reloaded.stages[-2]
    imputer = reloaded.stages[0]
    assert isinstance(lr_model, LogisticRegressionModel)
    assert isinstance(scaler, StandardScalerModel)
    features = expanded_features(reloaded, df)
    coefs = lr_model.coefficients.toArray()
    means = scaler.mean.toArray()
    stds = scaler.std.toArray()
    for i, feat in enumerate(features):
        feat.update(coefficient=float(coefs[i]), mean=float(means[i]), std=float(stds[i]))
    surrogates = cast(ImputerModel, imputer).surrogateDF.collect()[0].asDict()

    meta: dict[str, Any] = {
        "schema_version": 1,
        "name": models_dir.name,
        "version": version,
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "spark_version": spark.version,
        "training_data": {
            "path": str(data_path.name),
            "sha256": sha256_file(data_path),
            "rows": n,
            "positives": positives,
            "source": "Cleveland heart-disease data (Detrano et al. 1989), UCI; via orange3's heart_disease.tab",
        },
        "feature_schema": [
            {
                "name": f.name,
                "type": f.spark_type,
                "nullable": f.nullable,
                **({"categories": list(f.values)} if f.values else {}),
            }
            for f in clinical_fields()
        ],
        "hyperparameters": {
            "regParam": reg,
            "elasticNetParam": enet,
            "grid": {"regParam": list(reg_params), "elasticNetParam": list(elastic_net)},
            "folds": folds,
            "seed": SEED,
            "selection": "max mean CV areaUnderROC",
        },
        "metrics": metrics,
        "risk_thresholds": {
            "medium": medium,
            "high": high,
            "rule": "Low: p < medium; Medium: medium <= p < high; High: p >= high. medium is the largest "
            "threshold keeping >= 95% of diseased patients out of Low (out-of-fold); high is the smallest "
            "threshold at and above which >= 85% of patients flagged High are diseased.",
        },
        "model": {
            "intercept": float(lr_model.intercept),
            "features": features,
            "imputation": {k: float(v) for k, v in surrogates.items()},
        },
        "training_distribution": training_distribution([r.asDict() for r in df.collect()]),
        "files": file_manifest(target / PIPELINE_DIR, target),
    }
    validate_metadata(meta)
    (target / MODEL_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    with open(target / OOF_FILE, "w") as f:  # what the card's figures were computed from, for audit
        f.write(f"{ID_COLUMN},label,probability\n")
        f.writelines(f"{i},{int(label)},{float(prob)!r}\n" for i, label, prob in zip(oof_ids, y, p, strict=True))
    if promote:
        (models_dir / POINTER_FILE).write_text(version + "\n")
    say(f"saved {target} ({'now current' if promote else 'not promoted'}) in {time.monotonic() - started:.0f}s")
    return meta
