"""Hostile input through the real query: real broker, real registry, real Spark, JSON and Avro on one topic.

Two runs of the streaming scorer (``input_format=auto``):
- the hostile table: every kind the security review named, each with the code the contract
  promises, plus the whole key-free table of ``tests/hostile.py``; the stream's verdict on every
  JSON message must also be the Python twin's (``stream.contract.check``), message by message;
- a fuzz run of 100,000 seeded mutants (80 % JSON, 20 % Avro).

Each run asserts: the query never dies, input = predictions + dead letters exactly (each input
accounted for by its offset or its event id), and every dead letter validates against
``schemas/dead_letter.v1.schema.json`` and fits a 1 MiB topic.
"""

from __future__ import annotations

import io
import json
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import fastavro
import jsonschema
import pytest
from confluent_kafka import Producer

from stream.app.lifecycle import stop_gracefully
from stream.app.scorer import start_scorer
from stream.config import load_settings
from stream.contract.avro import event_schema_versions, frame, load_avsc
from stream.contract.check import check_event
from stream.contract.codes import ERROR_CODES, SECONDS_DETAIL
from stream.contract.registry import SchemaRegistry, subject_for
from stream.contract.schema import load_json
from tests.helpers import consume, end_offsets_total, wait_for
from tests.hostile import EXAMPLE, avro_long, hostile_table, mutant

pytestmark = pytest.mark.integration

BODY = {k: v for k, v in EXAMPLE.items() if k != "patient_id"}  # the key stands in for patient_id
DAY_MS = 86_400_000
AVRO_CODES = {"CORRUPT_AVRO", "UNKNOWN_SCHEMA_ID", "INCOMPATIBLE_SCHEMA", "BAD_MAGIC_BYTE"}


@dataclass(frozen=True)
class Msg:
    """One input message, what the contract promises for it (``expect``), and whether it is Avro."""

    name: str
    key: bytes | None
    value: bytes | None
    expect: str | None = None
    avro: bool = False


def _json(body: dict, **changes: object) -> bytes:
    return json.dumps({**body, **changes}).encode()


def _text(body: dict, extra: str) -> bytes:
    return (json.dumps(body)[:-1] + ", " + extra + "}").encode()


def _avro(schema_id: int, record: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(load_avsc(event_schema_versions()[1])), record)
    return frame(schema_id, buf.getvalue())


def _avro_record(i: int, prefix: str, **changes: object) -> dict:
    return {"event_id": f"{prefix}-{i}", "patient_id": None, "event_time": None, "source": "fuzz",
            **BODY, **changes}


def named_kinds(v1_id: int) -> list[Msg]:
    """The kinds the security review named, and the code (or None: scored) the contract gives each."""
    now = int(time.time() * 1000)
    b, k = BODY, b"p-1"
    return [
        Msg("key_600k", b"k" * 600_000, _json(b), "ID_TOO_LONG"),
        Msg("key_900k_not_json", b"k" * 900_000, b"not json", "NOT_JSON"),
        Msg("patient_id_600k", None, _json(b, patient_id="p" * 600_000), "ID_TOO_LONG"),
        Msg("duplicate_key_other_type", k, _text(b, '"Age": "x"'), "DUPLICATE_FIELD"),
        Msg("duplicate_key_same_value", k, _text(b, '"Age": 54'), "DUPLICATE_FIELD"),
        Msg("duplicate_envelope_key", k, _text({**b, "patient_id": "p-2"}, '"patient_id": "p-3"'), "DUPLICATE_FIELD"),
        Msg("escape_in_patient_id", None, _json(b, patient_id="a\x1b[2Jb"), "ID_NOT_PRINTABLE"),
        Msg("escape_in_key", b"a\x1b]0;pwned\x07", _json(b), "ID_NOT_PRINTABLE"),
        Msg("c1_control_in_event_id", k, _json(b, event_id="e\u0085x"), "ID_NOT_PRINTABLE"),
        Msg("single_quotes", k, json.dumps(b).replace('"', "'").encode(), "NOT_JSON"),
        Msg("trailing_bytes", k, _json(b) + b" x", "NOT_JSON"),
        Msg("trailing_object", k, _json(b) + b'{"Age": 1}', "NOT_JSON"),
        Msg("trailing_white_space", k, _json(b) + b" \r\n\t", None),
        Msg("epoch_seconds", k, _json(b, event_time=now // 1000), "EVENT_TIME_OUT_OF_WINDOW"),
        Msg("year_33026", k, _json(b, event_time="+33026-01-01T00:00:00Z"), "EVENT_TIME_OUT_OF_WINDOW"),
        Msg("year_1", k, _json(b, event_time="0001-01-01T00:00:00Z"), "EVENT_TIME_OUT_OF_WINDOW"),
        Msg("two_days_ahead", k, _json(b, event_time=now + 2 * DAY_MS), "EVENT_TIME_OUT_OF_WINDOW"),
        Msg("nine_years_back", k, _json(b, event_time=now - 9 * 365 * DAY_MS), None),
        Msg("key_not_utf8", b"p\xff\xfe-1", _json(b), "KEY_NOT_UTF8"),
        Msg("key_not_utf8_with_patient_id", b"p\xff\xfe-1", _json(b, patient_id="p-4"), None),
        Msg("tombstone", k, None, "TOMBSTONE"),
        Msg("empty", k, b"", "EMPTY_VALUE"),
        Msg("too_large", k, _json(b, note="x" * (1024 * 1024)), "MESSAGE_TOO_LARGE"),
        Msg("not_utf8", k, b'{"Age": "\xff"}', "NOT_UTF8"),
        Msg("array", k, b"[54, 130]", "NOT_AN_OBJECT"),
        Msg("truncated", k, _json(b)[:40], "NOT_JSON"),
        Msg("nan", k, _json(b, Cholesterol=float("nan")), "NOT_FINITE"),
        Msg("missing_field", k, _json({n: v for n, v in b.items() if n != "Sex"}), "MISSING_FIELD"),
        Msg("null_field", k, _json(b, Age=None), "NULL_FIELD"),
        Msg("string_number", k, _json(b, Age="54"), "WRONG_TYPE"),
        Msg("out_of_range", k, _json(b, Age=500), "OUT_OF_RANGE"),
        Msg("invalid_enum", k, _json(b, Sex="M"), "INVALID_ENUM"),
        Msg("no_patient_id", None, _json(b), "NO_PATIENT_ID"),
        Msg("bad_event_time", k, _json(b, event_time="yesterday"), "BAD_EVENT_TIME"),
        Msg("event_id_300_chars", k, _json(b, event_id="e" * 300), None),
        Msg("patient_id_256_emoji", None, _json(b, patient_id="\U0001f600" * 256), None),
        Msg("duplicate_in_nested_object", k, _json(b, source={"a": 1, "b": 1}), None),
        Msg("avro_valid", b"a-1", _avro(v1_id, _avro_record(1, "avro")), None, avro=True),
        Msg("avro_short_header", b"a-2", b"\x00\x00\x01", "CORRUPT_AVRO", avro=True),
        Msg("avro_truncated", b"a-3", _avro(v1_id, _avro_record(3, "avro"))[:12], "CORRUPT_AVRO", avro=True),
        Msg("avro_unknown_schema_id", b"a-4", frame(0x7FFF0001, b"\x00" * 40), "UNKNOWN_SCHEMA_ID", avro=True),
        Msg("avro_declares_2gb_string", b"a-5", frame(v1_id, b"\x02" + avro_long(2_000_000_000) + b"abc"),
            "CORRUPT_AVRO", avro=True),
        Msg("avro_out_of_range", b"a-6", _avro(v1_id, _avro_record(6, "avro", Age=500)), "OUT_OF_RANGE", avro=True),
        Msg("avro_escape_in_patient_id", None, _avro(v1_id, _avro_record(7, "avro", patient_id="a\x1bb")),
            "ID_NOT_PRINTABLE", avro=True),
        Msg("avro_key_600k", b"k" * 600_000, _avro(v1_id, _avro_record(8, "avro")), "ID_TOO_LONG", avro=True),
        Msg("avro_epoch_seconds", b"a-9", _avro(v1_id, _avro_record(9, "avro", event_time=now // 1000)),
            "EVENT_TIME_OUT_OF_WINDOW", avro=True),
    ]


@pytest.fixture
def auto_settings(kafka_bootstrap, make_topics, tmp_path, schema_registry_url):
    def make(partitions: int):
        (inp,) = make_topics("events", partitions=partitions)
        out, dlq = make_topics("predictions", "dlq")
        return load_settings({
            "bootstrap_servers": kafka_bootstrap, "input_topic": inp, "output_topic": out, "dlq_topic": dlq,
            "checkpoint_dir": str(tmp_path / "checkpoints"), "trigger": "processing-time=500ms",
            "spark_master": "local[2]", "input_format": "auto", "schema_registry_url": schema_registry_url,
            "max_offsets_per_trigger": 20_000,
        })

    return make


def register_v1(settings) -> int:
    return SchemaRegistry(settings.schema_registry_url).register(
        subject_for(settings.input_topic), json.dumps(load_avsc(event_schema_versions()[1])))


def publish_all(settings, msgs: Sequence[Msg]) -> list[tuple[int, int, int]]:
    """Send every message, in order; (partition, offset, timestamp ms) of each from its delivery report."""
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True,
                         "linger.ms": 20, "message.max.bytes": 4 * 1024 * 1024})
    where: list[tuple[int, int, int] | None] = [None] * len(msgs)

    def report(i: int):
        def done(err, m) -> None:
            assert err is None, err
            where[i] = (m.partition(), m.offset(), m.timestamp()[1])
        return done

    for i, m in enumerate(msgs):
        while True:
            try:
                producer.produce(settings.input_topic, m.value, m.key, on_delivery=report(i))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert all(w is not None for w in where)
    return [w for w in where if w is not None]


def score_until_reconciled(spark, model, settings, total: int, timeout_s: float) -> tuple[list, list]:
    """Run the scorer until predictions + dead letters reach ``total``; both topics, read in full."""
    query = start_scorer(spark, settings, model)
    try:
        wait_for(lambda: end_offsets_total(settings.bootstrap_servers, settings.output_topic)
                 + end_offsets_total(settings.bootstrap_servers, settings.dlq_topic) >= total
                 or not query.isActive, timeout_s, interval_s=1, what="predictions + dead letters = input")
        assert query.isActive and query.exception() is None, "hostile input never stops the query"
    finally:
        stop_gracefully(query)
    n_out = end_offsets_total(settings.bootstrap_servers, settings.output_topic)
    n_dlq = end_offsets_total(settings.bootstrap_servers, settings.dlq_topic)
    assert n_out + n_dlq == total, "input = predictions + dead letters, none twice"
    preds = consume(settings.bootstrap_servers, settings.output_topic, lambda r: len(r) >= n_out, 120)
    dead = consume(settings.bootstrap_servers, settings.dlq_topic, lambda r: len(r) >= n_dlq, 120)
    return preds, dead


def check_dead_letters(dead: list, topic: str) -> dict[tuple[int, int], dict]:
    """Every dead letter valid against the schema and within 1 MiB; by (partition, offset), each once."""
    validator = jsonschema.Draft202012Validator(load_json("dead_letter.v1.schema.json"))
    by_offset: dict[tuple[int, int], dict] = {}
    for m in dead:
        rec = json.loads(m.value())
        validator.validate(rec)
        assert len(m.value()) + len(m.key() or b"") < 1024 * 1024
        assert rec["topic"] == topic and rec["error_code"] in ERROR_CODES
        assert dict(m.headers())["error_code"] == rec["error_code"].encode()
        by_offset[(rec["partition"], rec["offset"])] = rec
    assert len(by_offset) == len(dead), "one dead letter per input message"
    return by_offset


def twin_verdicts(msgs: Sequence[Msg], where: Sequence[tuple[int, int, int]], topic: str) -> list:
    """The Python twin's verdict on each JSON message (None for Avro), with the Kafka record's fallbacks."""
    now_us = time.time_ns() // 1000
    return [None if m.avro else check_event(m.value, m.key, fallback_event_id=f"{topic}-{p}-{o}",
                                            fallback_time_us=ts * 1000, now_us=now_us)
            for m, (p, o, ts) in zip(msgs, where, strict=True)]


def test_the_hostile_table_through_the_real_query(spark, model, auto_settings):
    s = auto_settings(partitions=1)
    v1_id = register_v1(s)
    named = named_kinds(v1_id)
    assert len(named) >= 30
    table = [Msg(name, None, value) for name, value in hostile_table()]
    msgs = named + table
    where = publish_all(s, msgs)
    assert [o for _, o, _ in where] == list(range(len(msgs)))
    twin = twin_verdicts(msgs, where, s.input_topic)

    preds, dead = score_until_reconciled(spark, model, s, len(msgs), 300)
    letters = check_dead_letters(dead, s.input_topic)
    got = {o: letters[(0, o)]["error_code"] if (0, o) in letters else None for o in range(len(msgs))}
    # the named kinds: the code the contract promises; the JSON ones also the twin's
    assert {m.name: got[i] for i, m in enumerate(named)} == {m.name: m.expect for m in named}
    for i, m in enumerate(msgs):
        if not m.avro:
            assert twin[i].code == got[i], (m.name, twin[i].code, got[i])
    assert letters[(0, [m.name for m in named].index("epoch_seconds"))]["error_detail"] == SECONDS_DETAIL
    # every valid message has its prediction, under the event id the twin (or the Avro record) gives it
    avro_ids = {"avro_valid": "avro-1"}  # the one valid Avro kind, and the event_id its record carries
    want_ids = Counter(avro_ids[m.name] if m.avro else twin[i].event_id for i, m in enumerate(msgs) if got[i] is None)
    assert Counter(json.loads(p.value())["event_id"] for p in preds) == want_ids
    # every code but four: BAD_MAGIC_BYTE is input format avro's (auto reads an unframed message as JSON),
    # INCOMPATIBLE_SCHEMA needs a registered writer schema that cannot be read (test_avro_scorer),
    # REGISTRY_UNAVAILABLE a registry down under the dead-letter policy, SCORE_FAILED no valid input gives
    assert set(ERROR_CODES) - set(got.values()) == {"BAD_MAGIC_BYTE", "INCOMPATIBLE_SCHEMA", "REGISTRY_UNAVAILABLE",
                                                    "SCORE_FAILED"}


def fuzz_messages(n: int, v1_id: int, seed: int = 20261204) -> list[Msg]:
    """``n`` seeded mutants: 80 % JSON (``tests.hostile.mutant``, odd keys too), 20 % Avro (bytes flipped,
    truncated, trailed, unknown schema ids, values out of range)."""
    rng = random.Random(seed)
    unknown_ids = (0x7FFF0101, 0x7FFF0102, 0x7FFF0103)  # a few fixed ones: a flood of new ids re-plans each
    out: list[Msg] = []
    for i in range(n):
        r = rng.random()
        key = (None if r < 0.02 else b"fz\xff" if r < 0.03 else b"fz\x1b[" if r < 0.04 else b"k" * 300
               if r < 0.045 else f"fz-{i}".encode())
        if rng.random() < 0.8:
            out.append(Msg(f"json-{i}", key, mutant(rng, BODY if rng.random() < 0.5 else EXAMPLE)))
            continue
        record = _avro_record(i, "av", Age=rng.choice([54, 54, 54, 0, 121, -5]))
        value = _avro(v1_id, record)
        op = rng.random()
        if op < 0.35:
            for _ in range(rng.randint(1, 3)):
                j = rng.randrange(5, len(value))
                value = value[:j] + bytes([rng.randrange(256)]) + value[j + 1:]
        elif op < 0.5:
            value = value[: rng.randrange(len(value))]
        elif op < 0.6:
            value += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op < 0.65:
            value = frame(rng.choice(unknown_ids), value[5:])
        out.append(Msg(f"avro-{i}", key or f"fz-{i}".encode(), value, avro=True))
    return out


def test_a_hundred_thousand_mutants_never_stop_the_query_and_all_reconcile(spark, model, auto_settings):
    s = auto_settings(partitions=3)
    msgs = fuzz_messages(100_000, register_v1(s))
    where = publish_all(s, msgs)
    twin = twin_verdicts(msgs, where, s.input_topic)

    preds, dead = score_until_reconciled(spark, model, s, len(msgs), 600)
    letters = check_dead_letters(dead, s.input_topic)
    avro_dead = 0
    for m, (p, o, _), t in zip(msgs, where, twin, strict=True):
        letter = letters.get((p, o))
        if m.avro:
            avro_dead += letter is not None
        else:  # JSON: the stream's verdict is the twin's, message by message
            assert (letter["error_code"] if letter else None) == t.code, (m.name, m.key, m.value[:200])
    json_ids = Counter(t.event_id for m, t in zip(msgs, twin, strict=True) if not m.avro and t.ok)
    pred_ids = Counter(json.loads(p.value())["event_id"] for p in preds)
    assert pred_ids & json_ids == json_ids, "every valid JSON mutant has its prediction"
    n_avro = sum(m.avro for m in msgs)
    assert (pred_ids - json_ids).total() == n_avro - avro_dead, "every other Avro mutant has its prediction"
    codes = Counter(r["error_code"] for r in letters.values())
    print(f"\nfuzz: {len(msgs):,} in = {len(preds):,} predictions + {len(dead):,} dead letters; "
          f"{n_avro:,} Avro ({avro_dead:,} dead); codes {dict(codes.most_common())}")
    assert len(codes) >= 15 and AVRO_CODES - {"BAD_MAGIC_BYTE", "INCOMPATIBLE_SCHEMA"} <= set(codes)
    assert 0.1 < len(preds) / len(msgs) < 0.9, "valid and rejected mutants both well represented"


def test_a_flood_of_garbage_schema_ids_is_bounded_and_never_stops_the_query(spark, model, auto_settings):
    """5,000 distinct schema ids the registry never saw (the plan for them once ran the driver out of memory)."""
    s = auto_settings(partitions=3)
    v1_id = register_v1(s)
    valid = [Msg(f"valid-{i}", f"fz-{i}".encode(), _avro(v1_id, _avro_record(i, "fl"))) for i in range(1_000)]
    flood = [Msg(f"flood-{i}", f"fl-{i}".encode(), frame(5_000_000 + i, b"\x00" * 30), avro=True)
             for i in range(5_000)]
    msgs = [m for pair in zip(flood[:1_000], valid, strict=True) for m in pair] + flood[1_000:]
    publish_all(s, msgs)

    preds, dead = score_until_reconciled(spark, model, s, len(msgs), 300)
    letters = check_dead_letters(dead, s.input_topic)
    assert len(preds) == 1_000 and {json.loads(p.value())["event_id"] for p in preds} == {
        f"fl-{i}" for i in range(1_000)}
    assert {r["error_code"] for r in letters.values()} == {"UNKNOWN_SCHEMA_ID"} and len(letters) == 5_000
    asked = sum("is not in the registry" in r["error_detail"] for r in letters.values())
    print(f"\nschema-id flood: 5,000 ids, {asked} asked of the registry before they were planned, "
          f"{5_000 - asked} dead-lettered unasked")
    assert 0 < asked <= 2 * 100, "the registry is asked about a bounded number of new ids per plan"
    assert all("was not asked about" in r["error_detail"] for r in letters.values()
               if "is not in the registry" not in r["error_detail"])
