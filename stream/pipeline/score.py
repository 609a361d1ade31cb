"""Score: apply the risk model to validated events, all inside the JVM.

Two engines give the same columns. ``compiled`` (the default) evaluates the
fitted pipeline as plain column arithmetic (``stream.model.compiled``): no
vectors, no UDF, no lambdas; its results are kept for valid rows only. ``pipeline`` runs
``PipelineModel.transform``, with rejected rows' features replaced by safe
constants so the model never sees a bad value. For each valid event both add
``probability_disease``, ``risk_prediction``, ``risk_level``, ``contributions``
(the top 3 fields by |coefficient x standardized value|, largest first by the
exact value, ties in field order, then rounded to 6 decimals) and
``imputed_fields``; rejected rows get nulls.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from stream.contract.schema import FieldSpec, clinical_fields
from stream.errors import ModelError
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
    SHADOW_LEVEL,
    SHADOW_PROBABILITY,
    SHADOW_VERSION,
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
    structs field by field, so a (-|contribution|, position) struct sorts largest
    first, ties in field order; no lambda. Only the chosen fields' values are
    rendered as text and rounded (to 6 decimals), and the sorted array is a
    projection of its own, so the plan holds it once.
    """
    fields = clinical_fields()
    present = set(df.columns)
    sums = [F.col(_contribution_column(f.name)) if _contribution_column(f.name) in present else F.lit(0.0)
            for f in fields]
    keys = [F.struct((-F.abs(c)).alias("key"), F.lit(i).alias("position"), c.alias("contribution"))
            for i, c in enumerate(sums)]
    df = df.withColumn(_SORTED, F.when(ok, F.sort_array(F.array(*keys))))
    names = F.array(*[F.lit(f.name) for f in fields])
    top = []
    for i in range(TOP_CONTRIBUTIONS):
        position = F.col(_SORTED)[i]["position"]
        value = F.when(F.lit(False), F.lit(None).cast("string"))
        for j, f in enumerate(fields):
            value = value.when(position == j, _event(f.name).cast("string"))
        top.append(
            F.struct(
                F.element_at(names, position + 1).alias("field"),
                value.alias("value"),
                F.round(F.col(_SORTED)[i]["contribution"], 6).alias("contribution"),
            )
        )
    return df.withColumn(CONTRIBUTIONS, F.when(ok, F.array(*top)))


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


def score_shadow(df: DataFrame, challenger: LoadedModel) -> DataFrame:
    """Add the challenger's probability, level and version for every valid row (its compiled plan only).

    The same column arithmetic as the champion's, in the same projection pass; the
    rows the champion rejected or failed to score get nulls.
    """
    if challenger.plan is None:
        msg = f"shadow scoring needs the compiled engine: challenger {challenger.version} has no compiled plan"
        raise ModelError(msg)
    terms = challenger.plan.terms(_event)
    names = [f"_s{i}" for i in range(len(terms))]
    df = df.withColumns({n: term for n, (_, term) in zip(names, terms, strict=True)})
    columns = [(slot, F.col(n)) for n, (slot, _) in zip(names, terms, strict=True)]
    ok = F.col(ERROR_CODE).isNull()
    df = df.withColumn(SHADOW_PROBABILITY, F.when(ok, challenger.plan.probability(columns))).drop(*names)
    medium, high = challenger.thresholds
    p = F.col(SHADOW_PROBABILITY)
    finite = p.isNotNull() & ~F.isnan(p)
    return df.withColumns({
        SHADOW_LEVEL: F.when(finite & (p >= high), F.lit("High")).when(finite & (p >= medium), F.lit("Medium"))
        .when(finite, F.lit("Low")),
        SHADOW_VERSION: F.lit(challenger.version),
    })
