"""The fitted model compiled from ``model.json`` into plain Python: one event scored in microseconds, no Spark.

``model.json`` carries everything the fitted ``PipelineModel`` computes with:
each feature's imputation value, category layout (one slot per label plus the
indexer's unknown bucket), the scaler's mean and std and the logistic
regression's coefficient and intercept. ``LinearScorer`` evaluates them in the
order the stream's compiled engine does (``stream.model.compiled``), so its
probability agrees with ``PipelineModel.transform`` to rounding
(``tests/integration/test_serve.py`` says to what precision), and it gives
the stream's top-3 contributions and imputed fields. Used by ``heartrisk serve``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from stream.contract.schema import clinical_fields
from stream.contract.spark_json import java_double

TOP_CONTRIBUTIONS = 3
LR_THRESHOLD = 0.5  # LogisticRegression's default decision threshold, which training keeps
_SIX = Decimal("0.000001")


def spark_round6(x: float) -> float:
    """``round(x, 6)`` as Spark rounds a double: half up, on its shortest decimal form.

    Python's ``round`` agrees except on a decimal tie (the shortest form ends in a 5
    at the 7th decimal), which goes through ``Decimal``; + 0.0 turns -0.0 into 0.0.
    """
    text = repr(x)
    if "e" not in text and "n" not in text:
        frac = text.partition(".")[2]
        if len(frac) != 7 or frac[-1] != "5":
            return round(x, 6) + 0.0
    return float(Decimal(text).quantize(_SIX, rounding=ROUND_HALF_UP)) + 0.0


@dataclass(frozen=True)
class _Term:
    field: str
    label: str | None  # None: a number; "__unknown": the unknown bucket; else a category label
    mean: float
    scale: float
    coefficient: float


@dataclass(frozen=True)
class Score:
    """The model's answer for one valid event."""

    probability: float
    prediction: int
    risk_level: str
    contributions: list[dict[str, Any]]
    imputed_fields: list[str]


class LinearScorer:
    """Impute, one-hot, standardize, dot, sigmoid: the pipeline as arithmetic over ``model.json``."""

    def __init__(self, meta: dict[str, Any]) -> None:
        m = meta["model"]
        self.version = str(meta["version"])
        self.intercept = float(m["intercept"])
        self.imputation = {k: float(v) for k, v in m["imputation"].items()}
        t = meta["risk_thresholds"]
        self.medium, self.high = float(t["medium"]), float(t["high"])
        self.fields = clinical_fields()
        self.kinds = {f.name: f.kind for f in self.fields}
        self.known: dict[str, frozenset[str]] = {}
        terms = []
        for feat in m["features"]:
            label = feat["category"]
            if label is not None and label != "__unknown":
                self.known[feat["field"]] = self.known.get(feat["field"], frozenset()) | {label}
            std, coefficient = float(feat["std"]), float(feat["coefficient"])
            if coefficient == 0.0 or std == 0.0:
                continue  # contributes 0, as the compiled engine leaves it out
            terms.append(_Term(feat["field"], label, float(feat["mean"]), 1.0 / std, coefficient))
        self.terms = tuple(terms)
        self.nullable = [f.name for f in self.fields if f.nullable]
        self.names = tuple(f.name for f in self.fields)

    def score(self, event: dict[str, Any]) -> Score:
        """Score one valid event (its clinical fields typed as the contract says)."""
        margin = 0.0
        sums: dict[str, float] = {}
        imputation, known = self.imputation, self.known
        for term in self.terms:
            value = event.get(term.field)
            label = term.label
            if label is None:
                x = imputation[term.field] if value is None or value != value else float(value)
            elif label == "__unknown":
                x = 1.0 if value is None or value not in known.get(term.field, ()) else 0.0
            else:
                x = 1.0 if value == label else 0.0
            t = (x - term.mean) * term.scale * term.coefficient
            margin += t
            sums[term.field] = sums[term.field] + t if term.field in sums else t
        margin += self.intercept
        p = 1.0 / (1.0 + math.exp(-margin))
        level = "High" if p >= self.high else ("Medium" if p >= self.medium else "Low")
        ranked = sorted((-abs(sums.get(name, 0.0)), i) for i, name in enumerate(self.names))
        top = []
        for _, i in ranked[:TOP_CONTRIBUTIONS]:
            name = self.names[i]
            top.append({"field": name, "value": self._text(name, event.get(name)),
                        "contribution": spark_round6(sums.get(name, 0.0))})
        imputed = [name for name in self.nullable if event.get(name) is None]
        return Score(p, 1 if p > LR_THRESHOLD else 0, level, top, imputed)

    def _text(self, name: str, value: Any) -> str | None:
        """A field's value as Spark's ``cast(... as string)`` writes it."""
        if value is None:
            return None
        if self.kinds[name] == "number":
            return java_double(float(value))
        return str(value)
