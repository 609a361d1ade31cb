"""Request bytes -> the stream's prediction record, or its error code: no Spark, one model version at a time.

The body of ``POST /v1/predict`` is checked exactly as the stream checks a
message value (``stream.contract.check``; there is no message key, so
``patient_id`` must be in the event); a valid event is scored by the model
compiled from ``model.json`` (``stream.model.linear``) and returned as the
prediction record the stream writes (``schemas/prediction.v1.schema.json``),
plus ``probability_exact``, the unrounded probability. The model is the one
the model directory's ``CURRENT`` names; ``reload()`` swaps in a new version
when the pointer moves, after verifying it, and keeps the old one otherwise.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.contract.check import DEFAULT_WINDOW, Checked, Window, check_event
from stream.contract.spark_time import iso_millis
from stream.errors import HeartriskError
from stream.model.artifact import load_metadata, resolve_model_dir
from stream.model.linear import LinearScorer, spark_round6

logger = logging.getLogger(__name__)
_WS = " \t\n\r"


@dataclass(frozen=True)
class Outcome:
    """One event's answer: HTTP status, JSON body, and the code counted by the metrics."""

    status: int
    body: dict[str, Any]
    code: str  # the error code, or the risk level of a prediction


def error_body(code: str, detail: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    """The one error shape: ``error_code``, ``error_detail``, ``field`` (never a stack trace or patient data)."""
    return {"error_code": code, "error_detail": detail, "field": field, **extra}


class Predictor:
    """The loaded model version and the request -> answer logic."""

    def __init__(self, model_dir: Path, ranges: Mapping[str, tuple[float, float]] | None = None,
                 window: Window = DEFAULT_WINDOW) -> None:
        self.model_dir = model_dir
        self.ranges = ranges
        self.window = window
        self.version_dir = resolve_model_dir(model_dir)
        self.meta = load_metadata(self.version_dir)
        self.scorer = LinearScorer(self.meta)
        self.reload_failures = 0

    @property
    def version(self) -> str:
        """The model version serving now."""
        return self.scorer.version

    def reload(self) -> bool:
        """Swap in the version ``CURRENT`` names now, if it moved and verifies; True when swapped."""
        try:
            target = resolve_model_dir(self.model_dir)
            if target == self.version_dir:
                return False
            meta = load_metadata(target)
            scorer = LinearScorer(meta)
        except (HeartriskError, OSError, KeyError, ValueError) as exc:
            self.reload_failures += 1
            logger.error('event="model reload refused" model_dir="%s" reason="%s" serving="%s"',
                         self.model_dir, exc, self.version)
            return False
        old = self.version
        self.version_dir, self.meta, self.scorer = target, meta, scorer
        logger.info('event="model swapped" from="%s" to="%s"', old, scorer.version)
        return True

    def predict(self, body: bytes, received_us: int | None = None) -> Outcome:
        """One event's bytes -> 200 with the prediction record, 413 or 422 with the error code."""
        now_us = received_us if received_us is not None else time.time_ns() // 1000
        checked = check_event(body, None, fallback_event_id=f"http-{uuid.uuid4()}", fallback_time_us=now_us,
                              now_us=now_us, ranges=self.ranges, window=self.window)
        if not checked.ok:
            assert checked.code is not None and checked.detail is not None
            body_out = error_body(checked.code, checked.detail, checked.field, stage=checked.stage,
                                  event_id=checked.event_id)
            return Outcome(413 if checked.code == "MESSAGE_TOO_LARGE" else 422, body_out, checked.code)
        return Outcome(200, self.record(checked, now_us), "OK")

    def record(self, checked: Checked, scored_us: int) -> dict[str, Any]:
        """The stream's prediction record for a valid event (``encode._prediction_struct``)."""
        scorer = self.scorer
        s = scorer.score(checked.event)
        assert checked.event_time_us is not None
        return {
            "event_id": checked.event_id,
            "patient_id": checked.patient_id,
            "event_time": iso_millis(checked.event_time_us),
            "scored_at": iso_millis(scored_us),
            "model_version": scorer.version,
            "probability": spark_round6(s.probability),
            "prediction": s.prediction,
            "risk_level": s.risk_level,
            "contributions": s.contributions,
            "imputed_fields": s.imputed_fields,
            "probability_exact": s.probability,
        }

    def predict_batch(self, body: bytes, limit: int) -> tuple[int, dict[str, Any]]:
        """A JSON array of events (each checked from its own bytes) -> 200 with one result per item.

        A body that is not an array of at most ``limit`` items is a 422 for the whole request.
        """
        try:
            items = split_array(body)
        except ValueError as exc:
            return 422, error_body("NOT_A_BATCH", f"the body must be a JSON array of events: {exc}")
        if len(items) > limit:
            return 413, error_body("BATCH_TOO_LARGE", f"{len(items)} events; at most {limit} per batch")
        now_us = time.time_ns() // 1000
        results = []
        counts = {"predicted": 0, "rejected": 0}
        for i, item in enumerate(items):
            out = self.predict(item, now_us)
            counts["predicted" if out.status == 200 else "rejected"] += 1
            results.append({"index": i, "status": out.status, **out.body})
        return 200, {"model_version": self.version, **counts, "results": results}


_DECODER = json.JSONDecoder()


def split_array(body: bytes) -> list[bytes]:
    """The bytes of each element of a JSON array, as written (so each is checked like a message value).

    Raises:
        ValueError: not UTF-8, not a JSON array, or an element that is not JSON.
    """
    text = body.decode("utf-8")
    i = len(text) - len(text.lstrip(_WS))
    if not text.startswith("[", i):
        msg = "it does not start with ["
        raise ValueError(msg)
    i += 1
    out: list[bytes] = []
    while True:
        while i < len(text) and text[i] in _WS:
            i += 1
        if i < len(text) and text[i] == "]" and not out:
            i += 1
            break
        _, end = _DECODER.raw_decode(text, i)
        out.append(text[i:end].encode("utf-8"))
        i = end
        while i < len(text) and text[i] in _WS:
            i += 1
        if i < len(text) and text[i] == ",":
            i += 1
            continue
        if i < len(text) and text[i] == "]":
            i += 1
            break
        msg = f"expected , or ] at character {i}"
        raise ValueError(msg)
    if text[i:].strip(_WS):
        msg = "there is text after the closing ]"
        raise ValueError(msg)
    return out
