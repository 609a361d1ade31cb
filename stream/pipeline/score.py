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
_SORTED = "_sorted"


def _event(name: str) -> Column:
    return F.col(f"{EVENT}.`{name}`")


def _contribution_column(field: str) -> str:
    return f"_c_{field}"


def with_top_contributions(df: DataFrame, ok: Column) -> DataFrame:
    """Add ``contributions``: the top fields as (field, value, contribution), largest |contribution| first.

    Reads the per-field sums in ``_c_<field>`` (absent: 0). ``sort_array`` orders
    structs field by field, so a struct that starts with ``-|contribution|`` and
    the field's position sorts largest first, ties in field order; no lambda.
    The sorted array is its own projection, so the plan holds it once.
    """
    items = []
    present = set(df.columns)
    for position, f in enumerate(clinical_fields()):
        name = _contribution_column(f.name)
        contribution = F.round(F.col(name), 6) if name in present else F.lit(0.0)
        items.append(
            F.struct(
                (-F.abs(contribution)).alias("key"),
                F.lit(position).alias("position"),
                F.lit(f.name).alias("field"),
                _event(f.name).cast("string").alias("value"),
                contribution.alias("contribution"),
            )
        )
    df = df.withColumn(_SORTED, F.when(ok, F.sort_array(F.array(*items))))
    ordered = F.col(_SORTED)
    top = F.array(
        *[
            F.struct(
                ordered[i]["field"].alias("field"),
                ordered[i]["value"].alias("value"),
                ordered[i]["contribution"].alias("contribution"),
            )
            for i in range(TOP_CONTRIBUTIONS)
        ]
    )
    return df.withColumn(CONTRIBUTIONS, F.when(ok, top))


def imputed_fields_column() -> Column:
    """Names of the nullable fields that were null and so imputed by the model."""
    names = [F.when(_event(f.name).isNull(), F.lit(f.name)) for f in clinical_fields() if f.nullable]
    return F.array_compact(F.array(*names)) if names else F.array().cast("array<string>")


def _compiled(df: DataFrame, plan: LinearPlan) -> DataFrame:
    """Probability, prediction and per-field contribution sums, in three small projections."""
    terms = plan.terms(_event)
    names = [f"_t{i}" for i in range(len(terms))]
    df = df.withColumns({n: term for n, (_, term) in zip(names, terms, strict=True)})
    columns = [(slot, F.col(n)) for n, (slot, _) in zip(names, terms, strict=True)]
    probability = F.when(F.col(ERROR_CODE).isNull(), plan.probability(columns))
    df = df.withColumns({PROBABILITY: probability, **_per_field([(s.field, c) for s, c in columns])})
    return df.withColumn(_PREDICTION, plan.prediction(F.col(PROBABILITY))).drop(*names)


def _per_field(terms: list[tuple[str, Column]]) -> dict[str, Column]:
    """``_c_<field>``: the sum of each field's terms, in slot order."""
    sums: dict[str, Column] = {}
    for field, term in terms:
        sums[field] = sums[field] + term if field in sums else term
    return {_contribution_column(f): c for f, c in sums.items()}


def _safe_default(f: FieldSpec, meta: dict[str, Any]) -> Any:
    if f.is_numeric:
        value = meta["model"]["imputation"][f.name]
        return int(value) if f.kind == "integer" else float(value)
    return f.values[0]


def _transformed(df: DataFrame, model: LoadedModel) -> DataFrame:
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
    terms = []
    for i, feat in enumerate(model.meta["model"]["features"]):
        coef = float(feat["coefficient"])
        if coef != 0.0 and float(feat["std"]) != 0.0:
            terms.append((str(feat["field"]), F.col(_SCALED)[i] * F.lit(coef)))
    return df.withColumns(_per_field(terms))


def score_events(df: DataFrame, model: LoadedModel) -> DataFrame:
    """Add the prediction columns (null for rejected rows), with the model's engine."""
    medium, high = model.thresholds
    scored = _compiled(df, model.plan) if model.plan is not None else _transformed(df, model)
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
    scored = scored.withColumns(
        {
            RISK_PREDICTION: F.when(ok, F.col(_PREDICTION).cast("int")),
            RISK_LEVEL: F.when(ok & (p >= high), F.lit("High")).when(ok & (p >= medium), F.lit("Medium"))
            .when(ok, F.lit("Low")),
            IMPUTED_FIELDS: F.when(ok, imputed_fields_column()),
            MODEL_VERSION: F.lit(model.version),
        }
    )
    scored = with_top_contributions(scored, ok)
    helpers = [c for c in scored.columns if c.startswith("_c_")] + [_SORTED, _PREDICTION]
    return scored.drop(*helpers)
