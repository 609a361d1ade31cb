"""Score: apply the risk model to validated events, all inside the JVM.

Rejected rows still flow through ``PipelineModel.transform`` (one pass, one sink,
no union), but with their features replaced by safe constants so the model never
sees a bad value; their score is discarded by the encoder. For each valid event
this adds ``probability``, ``prediction``, ``risk_level``, ``contributions``
(top 3 fields by |coefficient x standardized value|, computed from the
coefficients in model.json) and ``imputed_fields``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from stream.contract.schema import FieldSpec, clinical_fields
from stream.model.artifact import LoadedModel
from stream.pipeline.columns import (
    CONTRIBUTIONS,
    ERROR_CODE,
    ERROR_DETAIL,
    EVENT,
    IMPUTED_FIELDS,
    MODEL_VERSION,
    PROBABILITY,
    RISK_LEVEL,
    RISK_PREDICTION,
    STAGE,
)

TOP_CONTRIBUTIONS = 3
_SCALED = "_scaled"


def _safe_default(f: FieldSpec, meta: dict[str, Any]) -> Any:
    if f.is_numeric:
        value = meta["model"]["imputation"][f.name]
        return int(value) if f.kind == "integer" else float(value)
    return f.values[0]


def feature_columns(meta: dict[str, Any]) -> dict[str, Column]:
    """Model inputs: the event's values for valid rows, safe constants for rejected ones."""
    valid = F.col(ERROR_CODE).isNull()
    return {
        f.name: F.when(valid, F.col(f"{EVENT}.`{f.name}`")).otherwise(
            F.lit(_safe_default(f, meta)).cast(f.spark_type)
        )
        for f in clinical_fields()
    }


def contribution_columns(meta: dict[str, Any], scaled: Column) -> Column:
    """Array of (field, value, contribution) for the top fields, largest |contribution| first.

    A field's contribution sums coefficient x standardized value over its
    expanded features (one for a number, one per category for a category);
    ``scaled`` is the pipeline's own standardized vector.
    """
    per_field: OrderedDict[str, Column] = OrderedDict()
    for i, feat in enumerate(meta["model"]["features"]):
        coef = float(feat["coefficient"])
        if coef == 0.0 or float(feat["std"]) == 0.0:
            continue
        term = scaled[i] * F.lit(coef)
        per_field[feat["field"]] = per_field[feat["field"]] + term if feat["field"] in per_field else term
    items = [
        F.struct(
            F.lit(f.name).alias("field"),
            F.col(f"{EVENT}.`{f.name}`").cast("string").alias("value"),
            F.round(per_field.get(f.name, F.lit(0.0)), 6).alias("contribution"),
        )
        for f in clinical_fields()
    ]
    ordered = F.array_sort(
        F.array(*items),
        lambda a, b: F.when(F.abs(a["contribution"]) > F.abs(b["contribution"]), -1)
        .when(F.abs(a["contribution"]) < F.abs(b["contribution"]), 1)
        .otherwise(0),
    )
    return F.slice(ordered, 1, TOP_CONTRIBUTIONS)


def imputed_fields_column() -> Column:
    """Names of the nullable fields that were null and so imputed by the model."""
    names = [
        F.when(F.col(f"{EVENT}.`{f.name}`").isNull(), F.lit(f.name))
        for f in clinical_fields()
        if f.nullable
    ]
    return F.filter(F.array(*names), lambda x: x.isNotNull()) if names else F.array().cast("array<string>")


def score_events(df: DataFrame, model: LoadedModel) -> DataFrame:
    """Run the pipeline and add the prediction columns (null for rejected rows)."""
    meta = model.meta
    medium, high = model.thresholds
    scored = model.pipeline.transform(df.withColumns(feature_columns(meta)))
    valid = F.col(ERROR_CODE).isNull()
    p = vector_to_array(F.col("probability"))[1]
    scored = scored.withColumns(
        {PROBABILITY: F.when(valid, p), _SCALED: vector_to_array(F.col("features"))}
    )
    failed = valid & (F.col(PROBABILITY).isNull() | F.isnan(F.col(PROBABILITY)))
    scored = scored.withColumns(
        {
            ERROR_CODE: F.when(failed, F.lit("SCORE_FAILED")).otherwise(F.col(ERROR_CODE)),
            ERROR_DETAIL: F.when(failed, F.lit("the model produced no finite probability")).otherwise(
                F.col(ERROR_DETAIL)
            ),
            STAGE: F.when(failed, F.lit("score")).otherwise(F.col(STAGE)),
        }
    )
    ok = F.col(ERROR_CODE).isNull()
    return scored.withColumns(
        {
            RISK_PREDICTION: F.when(ok, F.col("prediction").cast("int")),
            RISK_LEVEL: F.when(ok & (F.col(PROBABILITY) >= high), F.lit("High"))
            .when(ok & (F.col(PROBABILITY) >= medium), F.lit("Medium"))
            .when(ok, F.lit("Low")),
            CONTRIBUTIONS: F.when(ok, contribution_columns(meta, F.col(_SCALED))),
            IMPUTED_FIELDS: F.when(ok, imputed_fields_column()),
            MODEL_VERSION: F.lit(model.version),
        }
    )
