"""Logging set-up: text for people, or JSON lines (``--log-format json``) for a hospital's SIEM.

Every log line of the package is ``event="..." key=value ...``; the JSON format
turns those pairs into fields. Lines whose event is in ``AUDIT_EVENTS`` (a
command's start with its redacted settings and its end, models loaded, swapped
or refused, schemas and models registered, the scorer's start and stop) carry
``"audit": true``, so a SIEM can keep them apart. No line carries a patient
record: the package logs ids and counts only.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import datetime, timezone
from typing import Any

AUDIT_EVENTS = frozenset({
    "command started", "command finished", "model loaded", "model registered", "model swapped",
    "model swap refused", "prediction schema registered", "scorer started", "scorer stopped", "stop requested",
    "registry credentials over plain http",
})
_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\{.*?\}(?=\s+\w+=|$)|\S+)')
NOISY = ("py4j", "kafka", "urllib3", "httpx", "httpx2", "httpcore", "alembic", "mlflow")


def fields_of(message: str) -> dict[str, Any]:
    """``event="x" n=3 to={"a": 1}`` -> ``{"event": "x", "n": 3, "to": {"a": 1}}`` (values as JSON when they are)."""
    out: dict[str, Any] = {}
    for key, raw in _PAIR.findall(message):
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, the message's fields (event, ...), audit, exc."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line."""
        message = record.getMessage()
        fields = fields_of(message) if "event=" in message else {}
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        out.update(fields if fields.get("event") else {"message": message})
        if out.get("event") in AUDIT_EVENTS:
            out["audit"] = True
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(level: str, verbose: bool, fmt: str = "text") -> None:
    """Configure the root handler once: text (``%(asctime)s LEVEL logger message``) or JSON lines, on stderr."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # MLflow's loggers then come through this handler
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.set_name("heartrisk")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "heartrisk"]:  # ours only: pytest's stay
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else getattr(logging, level.upper(), logging.INFO))
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
