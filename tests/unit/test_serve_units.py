"""The HTTP service's pure parts: rate limiter, batch splitting, Java number and Spark time rendering, the scorer."""

from __future__ import annotations

import json

import pytest

from stream.config import PROJECT_ROOT
from stream.contract.spark_json import java_double, parse_root, read_struct
from stream.contract.spark_time import iso_millis, string_to_micros
from stream.model.artifact import load_metadata
from stream.model.linear import LinearScorer, spark_round6
from stream.serve.limits import RateLimiter, retry_after_header
from stream.serve.predict import split_array


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_rate_limiter_allows_a_burst_then_the_rate_per_client():
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.allow("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.allow("a")
    assert wait == pytest.approx(0.5) and retry_after_header(wait) == "1"
    assert limiter.allow("b") == 0.0, "another client has its own bucket"
    clock.t += 0.5
    assert limiter.allow("a") == 0.0
    assert limiter.allow("a") > 0
    clock.t += 3600
    limiter.allow("c")
    assert set(limiter.buckets) == {"c"}, "idle clients are forgotten"


def test_a_batch_is_split_into_each_items_own_bytes():
    assert split_array(b' [ {"a": 1} ,42,"x" , {"b": [1, 2]}]\n') == [b'{"a": 1}', b"42", b'"x"', b'{"b": [1, 2]}']
    assert split_array(b"[]") == []
    for bad in (b'{"a": 1}', b"[1,", b"[1] x", b"[1 2]", b"\xff"):
        with pytest.raises(ValueError):
            split_array(bad)


@pytest.mark.parametrize(("x", "text"), [
    (130.0, "130.0"), (1.5, "1.5"), (1e-4, "1.0E-4"), (0.001, "0.001"), (12345678.9, "1.23456789E7"),
    (1e7, "1.0E7"), (9999999.0, "9999999.0"), (-0.0, "-0.0"), (1e21, "1.0E21"), (float("inf"), "Infinity"),
])
def test_numbers_render_as_java_writes_them(x, text):
    assert java_double(x) == text


def test_iso_millis_writes_years_as_spark_does():
    assert iso_millis(0) == "1970-01-01T00:00:00.000Z"
    assert iso_millis(-5000) == "1969-12-31T23:59:59.995Z"
    assert iso_millis(999999999999999 * 1000) == "+33658-09-27T01:46:39.999Z"
    assert iso_millis(-63549360000000 * 1000) == "-0044-03-15T00:00:00.000Z"
    now = 1795687200000000
    assert string_to_micros("2026-11-26T10:00:00+1:00", now) == 1795683600000000
    assert string_to_micros("2026-02-29", now) is None
    assert string_to_micros("10:00", now) == 1795687200000000 - 0, "a time alone is today (UTC)"


def test_duplicate_keys_keep_the_last_value_that_converts():
    fields = {"Age": "int", "Sex": "string"}
    root, _ = parse_root('{"Age": 54, "Age": "x", "Sex": 1, "Sex": [true]}')
    assert read_struct(root, fields) == {"Age": 54, "Sex": "[true]"}
    assert read_struct(parse_root("[1]")[0], fields) is None


def test_the_scorer_reads_model_json_and_rounds_as_spark():
    meta = load_metadata(PROJECT_ROOT / "models" / "heart_lr")
    scorer = LinearScorer(meta)
    event = {"Age": 54, "Blood_Pressure": 130.0, "Cholesterol": 242.0, "Heart_Rate": 150.0, "Sex": "Male",
             "angina": "Asymptomatic", "Glycemia": "Less than 120 mg/dl", "ECG": "Normal",
             "angina_after_sport": "No", "ecg_slope": "Rising", "fluoroscopy": None, "thalassemia": None}
    s = scorer.score(event)
    assert 0 < s.probability < 1 and s.imputed_fields == ["fluoroscopy", "thalassemia"]
    assert [c["field"] for c in s.contributions] == sorted(
        (c["field"] for c in s.contributions), key=lambda f: -abs(next(
            x["contribution"] for x in s.contributions if x["field"] == f)))
    assert spark_round6(0.1234565) == 0.123457 and spark_round6(-0.0) == 0.0
    assert json.dumps(spark_round6(-1e-9)) == "0.0", "no negative zero in a record"
