"""Trigger: the ``--trigger`` setting parsed into ``DataStreamWriter.trigger`` arguments (pure Python)."""

from __future__ import annotations

import re

from stream.errors import ConfigError

_DURATION = re.compile(r"^\s*\d+(\.\d+)?\s*(ms|s|sec|seconds?|m|min|minutes?)?\s*$")


# Each real-time checkpoint boundary stops and restarts the long-running tasks (a gap of ~1 s
# on this machine); a long interval makes those gaps rare. The price: after a crash or stop,
# the whole interval since the last checkpoint is read and written again (at-least-once).
REAL_TIME_DEFAULT_INTERVAL = "5 minutes"
REAL_TIME_MIN_SECONDS = 5.0


def _seconds(arg: str) -> float:
    """``500ms`` / ``5s`` / ``2m`` / ``3`` -> seconds."""
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", arg)
    if not m:
        return 0.0
    value, unit = float(m.group(1)), m.group(2)
    if unit == "ms":
        return value / 1000
    if unit.startswith("m"):
        return value * 60
    return value


def _spark_duration(arg: str) -> str:
    """``500ms`` / ``1s`` / ``2m`` / ``3`` -> Spark's interval text."""
    text = arg.strip()
    text = re.sub(r"(\d)\s*ms$", r"\1 milliseconds", text)
    text = re.sub(r"(\d)\s*(s|sec)$", r"\1 seconds", text)
    text = re.sub(r"(\d)\s*m(in)?$", r"\1 minutes", text)
    if text.replace(".", "").isdigit():
        text += " seconds"
    return text


def parse_trigger(text: str) -> dict[str, object]:
    """``processing-time=1s`` | ``available-now`` | ``real-time[=5s]`` -> kwargs for ``DataStreamWriter.trigger``.

    In real-time mode the duration is Spark's checkpoint interval, not a latency target.

    Raises:
        ConfigError: any other value.
    """
    kind, _, arg = text.strip().partition("=")
    kind = kind.strip().lower()
    if kind == "processing-time" and _DURATION.match(arg or ""):
        return {"processingTime": _spark_duration(arg)}
    if kind == "available-now" and not arg:
        return {"availableNow": True}
    if kind == "real-time" and (not arg or _DURATION.match(arg)):
        if arg and _seconds(arg) < REAL_TIME_MIN_SECONDS:
            msg = (
                f"trigger {text!r}: the real-time checkpoint interval must be at least "
                f"{REAL_TIME_MIN_SECONDS:g}s (Spark's spark.sql.streaming.realTimeMode.minBatchDuration)"
            )
            raise ConfigError(msg)
        return {"realTime": _spark_duration(arg) if arg else REAL_TIME_DEFAULT_INTERVAL}
    msg = (
        f"trigger {text!r} is not valid: use processing-time=<duration> (e.g. 1s, 500ms), "
        "available-now, or real-time[=<checkpoint interval>]"
    )
    raise ConfigError(msg)


def is_real_time(trigger: str) -> bool:
    """Whether the trigger setting selects Spark's real-time mode."""
    return trigger.strip().lower().startswith("real-time")


def trigger_interval_s(trigger: str) -> float | None:
    """The processing-time trigger's interval in seconds (None for any other trigger)."""
    kind, _, arg = trigger.strip().partition("=")
    if kind.strip().lower() != "processing-time" or not _DURATION.match(arg or ""):
        return None
    return _seconds(arg)
