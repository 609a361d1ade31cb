"""The contract checked in plain Python (``stream.contract.check``) against the stream's Spark decode + validate.

Same bytes in, same verdict out: error code, patient id, event id and event
time, for the hostile table and for 3,000 seeded mutations of a valid event.
Spark runs once per table (one batch job), so this stays fast.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone

from pyspark.sql import functions as F

from stream.contract.check import check_event
from stream.contract.codes import DECODE_CODES
from stream.contract.spark_time import iso_millis
from stream.pipeline.decode import decode_events
from stream.pipeline.encode import ISO_MILLIS
from stream.pipeline.validate import validate_events
from tests.helpers import kafka_rows
from tests.hostile import EXAMPLE, hostile_table, mutant

TS = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
TS_US = int(TS.timestamp() * 1_000_000)


def _spark_verdicts(spark, values: list[bytes], keys: list[bytes | None] | None = None) -> list[tuple]:
    df = kafka_rows(spark, list(zip(keys or [None] * len(values), values, strict=True)), timestamp=TS)
    out = validate_events(decode_events(df)).select(
        "offset", "error_code", "patient_id", "event_id", F.date_format("event_ts", ISO_MILLIS).alias("t"),
        F.unix_millis("event_ts").alias("ms"),
    )
    rows = sorted(out.collect(), key=lambda r: r.offset)
    return [(r.error_code, r.patient_id, r.event_id, r.t, r.ms) for r in rows]


def _python_verdicts(values: list[bytes], keys: list[bytes | None] | None = None) -> list[tuple]:
    now_us = int(datetime.now(timezone.utc).timestamp() * 1_000_000)
    out = []
    for i, (k, v) in enumerate(zip(keys or [None] * len(values), values, strict=True)):
        c = check_event(v, k, fallback_event_id=f"t-0-{i}", fallback_time_us=TS_US, now_us=now_us)
        if c.code is not None and c.stage == "decode":
            out.append((c.code, None, f"t-0-{i}", iso_millis(TS_US), TS_US // 1000))
            continue
        t = iso_millis(c.event_time_us) if c.event_time_us is not None else None
        ms = c.event_time_us // 1000 if c.event_time_us is not None else None
        out.append((c.code, c.patient_id, c.event_id, t, ms))
    return out


def _compare(spark, named: list[tuple[str, bytes]], keys: list[bytes | None] | None = None) -> list[tuple]:
    spark_side = _spark_verdicts(spark, [v for _, v in named], keys)
    python_side = _python_verdicts([v for _, v in named], keys)
    diffs = []
    for (name, value), s, p in zip(named, spark_side, python_side, strict=True):
        if s[0] in DECODE_CODES:
            s = (s[0], None, *s[2:])  # a decode error carries no envelope
        if s != p:
            diffs.append((name, value[:160], tuple(str(x)[:80] for x in s), tuple(str(x)[:80] for x in p)))
    assert diffs == [], "\n".join(map(repr, diffs[:20]))
    return spark_side


def test_the_hostile_table_gets_the_streams_verdicts(spark):
    table = hostile_table()
    assert len(table) >= 100
    verdicts = _compare(spark, table)
    codes = {v[0] for v in verdicts}
    assert len(codes - {None}) >= 12 and None in codes


def test_three_thousand_mutants_get_the_streams_verdicts(spark):
    rng = random.Random(20261127)
    mutants = [(f"mutant-{i}", mutant(rng)) for i in range(3000)]
    verdicts = _compare(spark, mutants)
    codes = [v[0] for v in verdicts]
    assert len(set(codes) - {None}) >= 9, set(codes)
    assert 0.1 < codes.count(None) / len(codes) < 0.9, "valid and rejected mutants both well represented"


def test_message_keys_stand_in_for_patient_ids_alike(spark):
    no_id = {k: v for k, v in EXAMPLE.items() if k != "patient_id"}
    body = json.dumps(no_id).encode()
    keyed = [
        ("short_key", b"p-1"),
        ("spaced_key", b"  p-2  "),
        ("blank_key", b"   "),
        ("key_256", b"k" * 256),
        ("key_257", b"k" * 257),
        ("key_600k", b"k" * 600_000),
        ("key_not_utf8", b"p\xff\xfeq"),
        ("key_escape", b"a\x1b[31mb"),
    ]
    verdicts = _compare(spark, [(name, body) for name, _ in keyed], [k for _, k in keyed])
    assert [v[0] for v in verdicts] == [None, None, "NO_PATIENT_ID", None, "ID_TOO_LONG", "ID_TOO_LONG",
                                        "KEY_NOT_UTF8", "ID_NOT_PRINTABLE"]
