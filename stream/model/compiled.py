"""The fitted pipeline compiled into plain Spark column arithmetic: model as data, engine as code.

``compile_pipeline`` reads the fitted ``PipelineModel`` (the training artifact
stays the truth) stage by stage and turns it into a ``LinearPlan``: one ``Slot``
per column of the assembled feature vector, with its imputer surrogate or
category label, the scaler's mean and scale, and the logistic regression's
coefficient. ``LinearPlan`` then builds native Spark expressions (no UDF, no
vector types, no lambdas) whose results agree with ``PipelineModel.transform``
(``tests/unit/test_compiled.py`` says to what precision).

Supported stages, as the project trains them: ``ImputerModel``,
``StringIndexerModel`` (handleInvalid keep), ``OneHotEncoderModel``,
``VectorAssembler``, ``StandardScalerModel`` and a binary
``LogisticRegressionModel``. Anything else is refused with a ``ModelError``
naming the stage; ``--engine pipeline`` still runs any pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column
from pyspark.sql import functions as F

from stream.errors import ModelError

Value = Callable[[str], Column]  # field name -> the event's column for it


@dataclass(frozen=True)
class Slot:
    """One column of the assembled vector: where it comes from, how it is scaled, its weight."""

    field: str
    label: str | None  # a category's label; None for a number, or for the indexer's unknown bucket
    is_number: bool
    mean: float
    scale: float  # 1/std as the scaler applies it (0 where std is 0)
    coefficient: float

    @property
    def name(self) -> str:
        """``Age``, ``Sex=Male``, ``Sex=__unknown``."""
        if self.is_number:
            return self.field
        return f"{self.field}={self.label if self.label is not None else '__unknown'}"


@dataclass(frozen=True)
class LinearPlan:
    """The whole fitted pipeline as data."""

    slots: tuple[Slot, ...]
    surrogates: dict[str, float]  # numeric field -> the imputer's value for a missing one
    labels: dict[str, tuple[str, ...]]  # category field -> the indexer's labels, in index order
    intercept: float
    threshold: float

    def slot_value(self, slot: Slot, value: Value) -> Column:
        """The assembled vector's entry for one slot (before scaling)."""
        c = value(slot.field)
        if slot.is_number:
            x = c.cast("double")
            return F.when(x.isNull() | F.isnan(x), F.lit(self.surrogates[slot.field])).otherwise(x)
        if slot.label is not None:
            return F.when(c == F.lit(slot.label), F.lit(1.0)).otherwise(F.lit(0.0))
        known = c.isin(*self.labels[slot.field])
        return F.when(c.isNull() | ~known, F.lit(1.0)).otherwise(F.lit(0.0))

    def terms(self, value: Value) -> list[tuple[Slot, Column]]:
        """``coefficient x standardized value`` of every slot that can contribute (others are 0)."""
        out = []
        for slot in self.slots:
            if slot.coefficient == 0.0 or slot.scale == 0.0:
                continue
            z = (self.slot_value(slot, value) - F.lit(slot.mean)) * F.lit(slot.scale)
            out.append((slot, z * F.lit(slot.coefficient)))
        return out

    def probability(self, terms: list[tuple[Slot, Column]]) -> Column:
        """P(disease): the sigmoid of the margin, summed in slot order as Spark's dot product does."""
        margin: Column = F.lit(0.0)
        for _, term in terms:
            margin = margin + term
        margin = margin + F.lit(self.intercept)
        return F.lit(1.0) / (F.lit(1.0) + F.exp(-margin))

    def prediction(self, probability: Column) -> Column:
        """1 when the probability is above the model's threshold, as ``LogisticRegressionModel`` decides."""
        return F.when(probability > F.lit(self.threshold), F.lit(1)).otherwise(F.lit(0))


def _refuse(stage: Any, why: str) -> ModelError:
    return ModelError(
        f"the compiled engine cannot run pipeline stage {type(stage).__name__} ({why}): "
        "use --engine pipeline (HEARTRISK_ENGINE=pipeline) to run it with PipelineModel.transform"
    )


def compile_pipeline(pipeline: Any) -> LinearPlan:
    """Read the fitted stages into a ``LinearPlan``.

    Raises:
        ModelError: a stage (or a setting of one) the compiled engine does not support, named.
    """
    from pyspark.ml.classification import LogisticRegressionModel
    from pyspark.ml.feature import (
        ImputerModel,
        OneHotEncoderModel,
        StandardScalerModel,
        StringIndexerModel,
        VectorAssembler,
    )

    # column name -> its slots: (field, label, is_number); a scalar column has one slot
    columns: dict[str, list[tuple[str, str | None, bool]]] = {}
    surrogates: dict[str, float] = {}
    labels: dict[str, tuple[str, ...]] = {}
    indexed: dict[str, str] = {}  # indexer output column -> field
    vector: list[tuple[str, str | None, bool]] | None = None
    mean: list[float] | None = None
    scale: list[float] | None = None
    plan: LinearPlan | None = None
    for stage in pipeline.stages:
        if isinstance(stage, ImputerModel):
            missing_value = stage.getMissingValue()
            if missing_value == missing_value:  # only NaN is unequal to itself
                raise _refuse(stage, f"missingValue={missing_value}, only NaN (and null)")
            row = stage.surrogateDF.collect()[0]
            for src, dst in zip(stage.getInputCols(), stage.getOutputCols(), strict=True):
                surrogates[src] = float(row[src])
                columns[dst] = [(src, None, True)]
        elif isinstance(stage, StringIndexerModel):
            if stage.getHandleInvalid() != "keep":
                raise _refuse(stage, f"handleInvalid={stage.getHandleInvalid()!r}, only 'keep'")
            ins = stage.getInputCols() if stage.isSet("inputCols") else [stage.getInputCol()]
            outs = stage.getOutputCols() if stage.isSet("outputCols") else [stage.getOutputCol()]
            for src, dst, lab in zip(ins, outs, stage.labelsArray, strict=True):
                labels[src] = tuple(lab)
                indexed[dst] = src
        elif isinstance(stage, OneHotEncoderModel):
            ins = stage.getInputCols() if stage.isSet("inputCols") else [stage.getInputCol()]
            outs = stage.getOutputCols() if stage.isSet("outputCols") else [stage.getOutputCol()]
            keep = stage.getHandleInvalid() == "keep"
            for src, dst, size in zip(ins, outs, stage.categorySizes, strict=True):
                if src not in indexed:
                    raise _refuse(stage, f"input {src!r} is not a string indexer's output")
                field = indexed[src]
                width = size + (1 if keep else 0) - (1 if stage.getDropLast() else 0)
                names: list[str | None] = [*labels[field], None]  # index len(labels) is the unknown bucket
                columns[dst] = [(field, names[i] if i < len(names) else None, False) for i in range(width)]
                if width > len(names):
                    raise _refuse(stage, f"{width} one-hot columns for {len(labels[field])} labels")
        elif isinstance(stage, VectorAssembler):
            missing = [c for c in stage.getInputCols() if c not in columns]
            if missing:
                raise _refuse(stage, f"inputs {missing} come from no supported stage")
            vector = [s for c in stage.getInputCols() for s in columns[c]]
        elif isinstance(stage, StandardScalerModel):
            if vector is None:
                raise _refuse(stage, "no assembled vector before it")
            n = len(vector)
            mean = [float(m) for m in stage.mean.toArray()] if stage.getWithMean() else [0.0] * n
            std = [float(s) for s in stage.std.toArray()]
            scale = [(0.0 if s == 0.0 else 1.0 / s) for s in std] if stage.getWithStd() else [1.0] * n
        elif isinstance(stage, LogisticRegressionModel):
            if stage.numClasses != 2 or vector is None:
                raise _refuse(stage, "only binary logistic regression on an assembled vector")
            coefficients = [float(c) for c in stage.coefficients.toArray()]
            n = len(vector)
            if len(coefficients) != n:
                raise _refuse(stage, f"{len(coefficients)} coefficients for {n} features")
            mean = mean if mean is not None else [0.0] * n
            scale = scale if scale is not None else [1.0] * n
            slots = tuple(
                Slot(f, lab, num, mean[i], scale[i], coefficients[i]) for i, (f, lab, num) in enumerate(vector)
            )
            plan = LinearPlan(slots, surrogates, labels, float(stage.intercept), float(stage.getThreshold()))
        else:
            raise _refuse(stage, "not one of the stages the project trains")
    if plan is None:
        msg = "the pipeline has no LogisticRegressionModel stage: use --engine pipeline"
        raise ModelError(msg)
    return plan
