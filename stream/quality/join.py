"""Join: each outcome to the prediction of its event, within the state bound, with watermarks.

A left outer join from the outcomes: an outcome whose prediction is not found
within ``bound_s`` of its confirmation comes out with a null prediction once the
watermark passes (counted as unmatched), never silently. Predictions repeated by
an at-least-once replay, and outcomes sent twice, are deduplicated by event id
within the watermark. State: every prediction is held until the watermark
passes ``scored_at + bound_s``; every unmatched outcome until ``confirmed_at + bound_s``.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def lateness_s(bound_s: float) -> int:
    """The watermark delay: how late a record may arrive behind the newest of its side (at most 60 s)."""
    return max(1, int(min(60.0, bound_s / 2)))


def labelled(outcomes: DataFrame, predictions: DataFrame, bound_s: float) -> DataFrame:
    """Outcomes with their prediction's columns (null when unmatched)."""
    delay = f"{lateness_s(bound_s)} seconds"
    o = outcomes.withWatermark("confirmed_at", delay).dropDuplicatesWithinWatermark(["o_event_id"])
    p = predictions.withWatermark("scored_at", delay).dropDuplicatesWithinWatermark(["p_event_id"])
    bound = F.expr(f"INTERVAL {int(bound_s)} SECONDS")
    on = (
        (F.col("o_event_id") == F.col("p_event_id"))
        & (F.col("scored_at") >= F.col("confirmed_at") - bound)
        & (F.col("scored_at") <= F.col("confirmed_at") + bound)
    )
    return o.join(p, on, "leftOuter")
