"""Score: apply the risk model to validated events, all inside the JVM.

Two engines give the same columns. ``compiled`` (the default) evaluates the
fitted pipeline as plain column arithmetic (``stream.model.compiled``): no
vectors, no UDF, no lambdas, and only for valid rows. ``pipeline`` runs
``PipelineModel.transform``, with rejected rows' features replaced by safe
constants so the model never sees a bad value. For each valid event both add
``probability_disease``, ``risk_prediction``, ``risk_level``, ``contributions``
(the top 3 fields by |coefficient x standardized value|, largest first, ties
in field order) and ``imputed_fields``; rejected rows get nulls.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from stream.contract.schema import FieldSpec, clinical_fields
from stream.model.artifact import LoadedModel
from stream.model.compiled import LinearPlan
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
_PREDICTION = "_prediction"


def _event(name: str) -> Column:
    return F.col(f"{EVENT}.`{name}`")


def top_contributions(per_field: dict[str, Column]) -> Column:
    """The top fields as (field, value, contribution), by |rounded contribution| then field order; no lambda.

    ``sort_array`` orders structs field by field, so a struct that starts with
    ``-|contribution|`` and the field's position sorts largest first, ties in field order.
    """
    items = []
    for position, f in enumerate(clinical_fields()):
        contribution = F.round(per_field.get(f.name, F.lit(0.0)), 6)
        items.append(
            F.struct(
                (-F.abs(contribution)).alias("key"),
                F.lit(position).alias("position"),
                F.lit(f.name).alias("field"),
                _event(f.name).cast("string").alias("value"),
                contribution.alias("contribution"),
            )
        )
    ordered = F.sort_array(F.array(*items))
    return F.array(
        *[
            F.struct(
                ordered[i]["field"].alias("field"),
                ordered[i]["value"].alias("value"),
                ordered[i]["contribution"].alias("contribution"),
            )
            for i in range(TOP_CONTRIBUTIONS)
        ]
    )


def imputed_fields_column() -> Column:
    """Names of the nullable fields that were null and so imputed by the model."""
    names = [F.when(_event(f.name).isNull(), F.lit(f.name)) for f in clinical_fields() if f.nullable]
    return F.array_compact(F.array(*names)) if names else F.array().cast("array<string>")


def _compiled(df: DataFrame, plan: LinearPlan) -> tuple[DataFrame, dict[str, Column]]:
    terms = plan.terms(_event)
    per_field: dict[str, Column] = {}
    for slot, term in terms:
        per_field[slot.field] = per_field[slot.field] + term if slot.field in per_field else term
    p = plan.probability(terms)
    valid = F.col(ERROR_CODE).isNull()
    df = df.withColumn(PROBABILITY, F.when(valid, p))
    return df.withColumn(_PREDICTION, plan.prediction(F.col(PROBABILITY))), per_field


def _safe_default(f: FieldSpec, meta: dict[str, Any]) -> Any:
    if f.is_numeric:
        value = meta["model"]["imputation"][f.name]
        return int(value) if f.kind == "integer" else float(value)
    return f.values[0]


def _transformed(df: DataFrame, model: LoadedModel) -> tuple[DataFrame, dict[str, Column]]:
    from pyspark.ml.functions import vector_to_array

    valid = F.col(ERROR_CODE).isNull()
    safe = {
        f.name: F.when(valid, _event(f.name)).otherwise(F.lit(_safe_default(f, model.meta)).cast(f.spark_type))
        for f in clinical_fields()
    }
    df = model.pipeline.transform(df.withColumns(safe))
    df = df.withColumns(
        {
            PROBABILITY: F.when(valid, vector_to_array(F.col("probability"))[1]),
            _SCALED: vector_to_array(F.col("features")),
            _PREDICTION: F.col("prediction"),
        }
    )
    per_field: dict[str, Column] = {}
    for i, feat in enumerate(model.meta["model"]["features"]):
        coef = float(feat["coefficient"])
        if coef == 0.0 or float(feat["std"]) == 0.0:
            continue
        term = F.col(_SCALED)[i] * F.lit(coef)
        per_field[feat["field"]] = per_field[feat["field"]] + term if feat["field"] in per_field else term
    return df, per_field


def score_events(df: DataFrame, model: LoadedModel) -> DataFrame:
    """Add the prediction columns (null for rejected rows), with the model's engine."""
    medium, high = model.thresholds
    if model.plan is not None:
        scored, per_field = _compiled(df, model.plan)
    else:
        scored, per_field = _transformed(df, model)
    valid = F.col(ERROR_CODE).isNull()
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
    p = F.col(PROBABILITY)
    return scored.withColumns(
        {
            RISK_PREDICTION: F.when(ok, F.col(_PREDICTION).cast("int")),
            RISK_LEVEL: F.when(ok & (p >= high), F.lit("High")).when(ok & (p >= medium), F.lit("Medium"))
            .when(ok, F.lit("Low")),
            CONTRIBUTIONS: F.when(ok, top_contributions(per_field)),
            IMPUTED_FIELDS: F.when(ok, imputed_fields_column()),
            MODEL_VERSION: F.lit(model.version),
        }
    )
