"""Properties of decode -> validate, with hypothesis: every input gets exactly one verdict, and the contract holds.

Each example is one Spark job over a whole list of messages, so a handful of
examples covers hundreds of messages.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.contract.codes import ERROR_CODES, stage_of
from stream.contract.schema import FieldSpec, clinical_fields
from stream.pipeline.decode import decode_events
from stream.pipeline.validate import validate_events
from tests.helpers import kafka_rows

TS = datetime(2026, 1, 2, tzinfo=timezone.utc)
FIELDS = clinical_fields()
SLOW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _verdicts(spark, messages: list[tuple[bytes | None, bytes | None]]):
    df = kafka_rows(spark, messages, timestamp=TS)
    rows = validate_events(decode_events(df)).select("offset", "error_code", "stage", "error_detail").collect()
    return sorted(rows, key=lambda r: r.offset)


def _in_range(f: FieldSpec) -> st.SearchStrategy[object]:
    if f.kind == "category":
        return st.sampled_from(f.values)
    lo = f.minimum if f.minimum is not None else -1e6
    hi = f.maximum if f.maximum is not None else 1e6
    if f.kind == "integer":
        return st.integers(int(lo), int(hi))
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


VALID_EVENT = st.fixed_dictionaries({f.name: _in_range(f) for f in FIELDS})


@SLOW
@given(st.lists(st.tuples(st.one_of(st.none(), st.binary(max_size=8)), st.one_of(st.none(), st.binary())),
                min_size=1, max_size=60))
def test_any_bytes_get_exactly_one_verdict_with_a_known_code(spark, messages):
    rows = _verdicts(spark, messages)
    assert [r.offset for r in rows] == list(range(len(messages))), "one row per input, none lost or doubled"
    for r in rows:
        if r.error_code is not None:
            assert r.error_code in ERROR_CODES
            assert r.stage == stage_of(r.error_code)
            assert r.error_detail
        else:
            assert r.stage is None


@SLOW
@given(st.lists(VALID_EVENT, min_size=1, max_size=40))
def test_every_event_within_the_contract_is_valid(spark, events):
    rows = _verdicts(spark, [(b"patient", json.dumps(e).encode()) for e in events])
    assert [(r.error_code, r.error_detail) for r in rows] == [(None, None)] * len(events)


@SLOW
@given(VALID_EVENT, st.sampled_from([f for f in FIELDS if f.maximum is not None]), st.floats(1, 1e6))
def test_a_value_above_its_range_is_out_of_range_naming_the_field(spark, event, field, excess):
    value = field.maximum + (int(excess) or 1 if field.kind == "integer" else excess)  # type: ignore[operator]
    (row,) = _verdicts(spark, [(b"patient", json.dumps({**event, field.name: value}).encode())])
    assert row.error_code == "OUT_OF_RANGE"
    assert field.name in row.error_detail


@SLOW
@given(VALID_EVENT, st.sampled_from([f for f in FIELDS if not f.nullable]))
def test_a_missing_required_field_is_missing_field(spark, event, field):
    body = {k: v for k, v in event.items() if k != field.name}
    (row,) = _verdicts(spark, [(b"patient", json.dumps(body).encode())])
    assert (row.error_code, row.stage) == ("MISSING_FIELD", "validate")
    assert field.name in row.error_detail
