"""The trigger setting: parsed into DataStreamWriter.trigger arguments, or refused with what to write."""

from __future__ import annotations

import pytest

from stream.errors import ConfigError
from stream.pipeline.trigger import is_real_time, parse_trigger


def test_trigger_parsing():
    assert parse_trigger("real-time") == {"realTime": "5 minutes"}
    assert parse_trigger("real-time=10s") == {"realTime": "10 seconds"}
    with pytest.raises(ConfigError, match="at least 5s"):
        parse_trigger("real-time=2s")
    assert parse_trigger("processing-time=500ms") == {"processingTime": "500 milliseconds"}
    with pytest.raises(ConfigError, match="real-time"):
        parse_trigger("continuous=1s")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("processing-time=1s", {"processingTime": "1 seconds"}),
        ("processing-time=2m", {"processingTime": "2 minutes"}),
        ("processing-time=3", {"processingTime": "3 seconds"}),
        ("  Processing-Time=0s ", {"processingTime": "0 seconds"}),
        ("available-now", {"availableNow": True}),
        ("real-time=5m", {"realTime": "5 minutes"}),
    ],
)
def test_durations_become_spark_interval_text(text, expected):
    assert parse_trigger(text) == expected


@pytest.mark.parametrize("text", ["processing-time", "processing-time=fast", "available-now=1s", "once", ""])
def test_a_malformed_trigger_names_the_forms_that_work(text):
    with pytest.raises(ConfigError, match="processing-time=<duration>"):
        parse_trigger(text)


def test_real_time_is_recognised_with_or_without_an_interval():
    assert is_real_time("real-time") and is_real_time("Real-Time=5m")
    assert not is_real_time("processing-time=1s")


def test_the_processing_time_interval_is_read_for_the_graceful_stop():
    from stream.pipeline.trigger import trigger_interval_s

    assert trigger_interval_s("processing-time=250ms") == 0.25
    assert trigger_interval_s("processing-time=2s") == 2.0
    assert trigger_interval_s("available-now") is None
    assert trigger_interval_s("real-time=5s") is None


def test_a_graceful_stop_keeps_clear_of_the_next_processing_time_trigger(monkeypatch):
    from stream.app import graceful

    # Spark fires at each multiple of the interval since the epoch: 1000.25, 1000.50, ...
    for now, clear in ((1000.01, True), (1000.19, True), (1000.21, False), (1000.249, False)):
        monkeypatch.setattr(graceful.time, "time", lambda n=now: n)
        assert graceful._clear_of_next_trigger(0.25) is clear, now
    assert graceful._clear_of_next_trigger(None) is True
