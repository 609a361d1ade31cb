"""Build: the steps wired in flow order, on any DataFrame of raw Kafka rows (streaming or batch).

source -> decode -> validate -> score -> (stamp) -> encode -> sink. The
streaming query (JSON or Avro), ``score-batch``, the bench and the tests all
build their plans here, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pyspark.sql import DataFrame

from stream.config import Settings
from stream.contract.writer_schemas import Writer
from stream.model.artifact import LoadedModel
from stream.pipeline.decode import decode_events
from stream.pipeline.encode import encode_output, stamp_scored_at
from stream.pipeline.score import score_events, score_shadow
from stream.pipeline.validate import DEFAULT_WINDOW, Ranges, Window, parse_ranges, validate_events
from stream.spec import time_window_ms

Tap = Callable[[DataFrame], DataFrame]


def build_scores(
    raw: DataFrame,
    model: LoadedModel,
    input_format: str = "json",
    writers: Mapping[int, Writer] | None = None,
    ranges: Ranges | None = None,
    challenger: LoadedModel | None = None,
    window: Window = DEFAULT_WINDOW,
) -> DataFrame:
    """Decoded, validated and scored rows (every input row, good or bad), stamped with ``scored_at``.

    With a ``challenger`` its shadow scores are added beside the champion's. ``window`` is the
    plausible event_time in milliseconds (``Settings.event_time_window``; None: no window).
    """
    decoded = decode_events(raw, input_format, writers)
    validated = validate_events(decoded, ranges, window)
    scored = score_events(validated, model)
    if challenger is not None:
        scored = score_shadow(scored, challenger)
    return stamp_scored_at(scored)


def build_output(
    raw: DataFrame,
    model: LoadedModel,
    settings: Settings,
    prediction_schema_id: int | None = None,
    tap: Tap | None = None,
    writers: Mapping[int, Writer] | None = None,
    challenger: LoadedModel | None = None,
) -> DataFrame:
    """Kafka records (topic, key, value, headers) for every input row (and a shadow record per valid one).

    ``tap`` sees the scored rows before they are encoded (the scorer attaches its
    per-batch observation there). With Avro or auto input, ``writers`` are the
    schema ids the plan decodes (see ``stream.pipeline.decode``).
    """
    scored = build_scores(raw, model, settings.input_format, writers, parse_ranges(settings.field_ranges),
                          challenger, time_window_ms(settings.event_time_window))
    if tap is not None:
        scored = tap(scored)
    return encode_output(scored, settings, prediction_schema_id)
