"""The registry client against confluent-kafka's in-process mock:// registry, and writer-schema verdicts."""

from __future__ import annotations

import copy
import json
import uuid

import pytest

from stream.config import load_settings
from stream.contract.avro import event_schema_versions, load_avsc, reader_schema
from stream.contract.registry import SchemaRegistry, WriterSchema, subject_for
from stream.contract.writer_schemas import WriterSchemas
from stream.errors import RegistryUnavailable, SchemaNotFound, StoppedWhilePaused

V = event_schema_versions()


@pytest.fixture
def registry() -> SchemaRegistry:
    return SchemaRegistry(f"mock://{uuid.uuid4().hex}")


def _v1() -> str:
    return json.dumps(load_avsc(V[1]))


def test_register_then_fetch_by_id_and_list_subject(registry):
    sid = registry.register("events-value", _v1())
    got = registry.writer_schema(sid)
    assert got.schema_id == sid and got.schema_type == "AVRO"
    assert json.loads(got.schema_str)["name"] == "PatientEvent"
    assert registry.subject_schema_ids("events-value") == [sid]
    assert registry.subject_schema_ids("nothing-value") == []
    assert registry.register("events-value", _v1()) == sid, "registering is idempotent"


def test_unknown_id_is_schema_not_found(registry):
    with pytest.raises(SchemaNotFound, match="schema id 424242 is not in the registry"):
        registry.writer_schema(424242)


def test_unreachable_registry_is_unavailable_and_says_what_to_do():
    reg = SchemaRegistry("http://127.0.0.1:1/apis/ccompat/v7", timeout_s=1)
    with pytest.raises(RegistryUnavailable, match="heartrisk registry up"):
        reg.writer_schema(1)
    with pytest.raises(RegistryUnavailable):
        reg.register("x-value", _v1())


def test_credentials_in_the_url_are_never_shown():
    reg = SchemaRegistry("http://alice:s3cret@127.0.0.1:1/x", timeout_s=1)
    assert "s3cret" not in repr(reg)
    with pytest.raises(RegistryUnavailable) as info:
        reg.writer_schema(1)
    assert "s3cret" not in str(info.value)


def test_subject_follows_the_topic_name_strategy():
    assert subject_for("risk-predictions") == "risk-predictions-value"


def test_settings_hide_the_registry_secret(tmp_path):
    secret_file = tmp_path / "userinfo"
    secret_file.write_text("bob:hunter2\n")
    s = load_settings(environ={"HEARTRISK_SCHEMA_REGISTRY_USER_INFO_FILE": str(secret_file)})
    assert s.schema_registry_user_info == "bob:hunter2"
    assert "hunter2" not in repr(s)
    s2 = load_settings({"schema_registry_url": "https://u:pw@sr.example/apis"})
    assert "pw@" not in repr(s2) and "sr.example" in repr(s2)


# ---- verdicts -------------------------------------------------------------
class FlakyRegistry:
    """A pure stand-in: fails `failures` times, then serves the given schemas."""

    def __init__(self, schemas: dict[int, WriterSchema], failures: int = 0) -> None:
        self.schemas, self.failures, self.calls = schemas, failures, 0

    def writer_schema(self, schema_id: int) -> WriterSchema:
        self.calls += 1
        if self.calls <= self.failures:
            raise RegistryUnavailable("down")
        if schema_id not in self.schemas:
            raise SchemaNotFound("nope")
        return self.schemas[schema_id]


def test_verdicts_ok_unknown_incompatible_and_not_avro(registry):
    v1 = _v1()
    no_age = copy.deepcopy(json.loads(v1))
    no_age["fields"] = [f for f in no_age["fields"] if f["name"] != "Age"]
    ok_id = registry.register("a-value", v1)
    bad_id = registry.register("b-value", json.dumps(no_age))
    from confluent_kafka.schema_registry import Schema

    json_id = registry.client.register_schema("c-value", Schema('{"type": "object"}', "JSON"))
    ws = WriterSchemas(registry, json.loads(reader_schema()))
    got = ws.resolve([ok_id, bad_id, json_id, 999])
    assert got[ok_id].status == "ok" and got[ok_id].code is None and got[ok_id].schema_str == v1
    assert got[bad_id].code == "INCOMPATIBLE_SCHEMA" and "$.Age" in got[bad_id].detail
    assert got[json_id].code == "INCOMPATIBLE_SCHEMA" and "JSON, not AVRO" in got[json_id].detail
    assert got[999].code == "UNKNOWN_SCHEMA_ID"


def test_pause_policy_retries_until_the_registry_answers():
    schema = WriterSchema(7, "AVRO", _v1())
    flaky = FlakyRegistry({7: schema}, failures=3)
    waits: list[float] = []
    events: list[tuple] = []
    ws = WriterSchemas(
        flaky, json.loads(reader_schema()), "pause", sleep=waits.append,  # type: ignore[arg-type]
        on_pause=lambda i, n: events.append(("paused", i, n)), on_resume=lambda: events.append(("resumed",)),
    )
    got = ws.resolve([7])
    assert got[7].status == "ok"
    assert waits == [1.0, 2.0, 5.0], "backs off, and never gives up under the pause policy"
    assert events == [("paused", 7, 1), ("paused", 7, 2), ("paused", 7, 3), ("resumed",)]
    assert ws.resolve([7])[7].status == "ok" and flaky.calls == 4, "final verdicts are cached"


def test_pause_ends_with_an_error_when_a_stop_is_requested():
    import threading

    stop = threading.Event()
    stop.set()
    ws = WriterSchemas(FlakyRegistry({}, failures=99), json.loads(reader_schema()), "pause", stop=stop)  # type: ignore[arg-type]
    with pytest.raises(StoppedWhilePaused) as info:
        ws.resolve([1])
    assert StoppedWhilePaused.MARKER in str(info.value) and "schema id 1" in str(info.value)


def test_dead_letter_policy_marks_the_id_unavailable_and_asks_again_next_batch():
    flaky = FlakyRegistry({5: WriterSchema(5, "AVRO", _v1())}, failures=1)
    ws = WriterSchemas(flaky, json.loads(reader_schema()), "dead-letter")  # type: ignore[arg-type]
    first = ws.resolve([5])
    assert first[5].code == "REGISTRY_UNAVAILABLE"
    assert ws.resolve([5])[5].status == "ok"


def test_an_unknown_id_is_remembered_for_a_minute_not_asked_per_batch():
    reg = FlakyRegistry({})
    ws = WriterSchemas(reg, json.loads(reader_schema()))  # type: ignore[arg-type]
    for _ in range(5):
        assert ws.resolve([123])[123].code == "UNKNOWN_SCHEMA_ID"
    assert reg.calls == 1


def test_recheck_never_waits_and_reports_a_verdict_that_changed(monkeypatch):
    import stream.contract.writer_schemas as ws_module

    reg = FlakyRegistry({}, failures=1)
    ws = WriterSchemas(reg, json.loads(reader_schema()), "dead-letter")  # type: ignore[arg-type]
    planned = ws.resolve([5, 6])
    assert (planned[5].status, planned[6].status) == ("unavailable", "unknown")
    reg.failures = 99
    assert ws.recheck(planned) is False, "the registry still does not answer about 5: the plan stays"
    assert reg.calls == 3, "5 asked once more, without waiting; 6 was asked under a minute ago: not asked"
    reg.failures = 0
    assert ws.recheck(planned) is True, "5 now gets an answer (unknown): a new verdict"
    reg.schemas[6] = WriterSchema(6, "AVRO", _v1())
    monkeypatch.setattr(ws_module, "UNKNOWN_TTL_S", 0.0)
    assert ws.recheck({6: planned[6]}) is True, "6 was registered since"
    assert ws.resolve([6])[6].status == "ok"


def test_a_flood_of_new_ids_asks_the_registry_a_bounded_number_of_times_and_the_rest_later(monkeypatch):
    import stream.contract.writer_schemas as ws_module

    reg = FlakyRegistry({3: WriterSchema(3, "AVRO", _v1())})
    ws = WriterSchemas(reg, json.loads(reader_schema()))  # type: ignore[arg-type]
    flood = [3, *range(10_000, 15_000)]
    got = ws.resolve(flood)
    assert reg.calls == ws_module.MAX_LOOKUPS == 100, "one plan asks about 100 new ids, lowest first"
    assert got[3].status == "ok", "a real (low) id is among those asked"
    assert all(got[i].code == "UNKNOWN_SCHEMA_ID" for i in flood[1:])
    unasked = [i for i in flood if not got[i].asked]
    assert len(unasked) == 4_901 and "was not asked about" in got[14_999].detail
    assert ws.recheck(got) is False and reg.calls == 200, "a recheck asks the next 100: still unknown, no re-plan"
    reg.schemas[14_999] = WriterSchema(14_999, "AVRO", _v1())
    monkeypatch.setattr(ws_module, "UNKNOWN_TTL_S", 0.0)
    found = [ws.recheck(got) for _ in range(60)]  # 100 more each time, until the real schema in the flood is met
    assert found.count(True) >= 1, "its verdict changed (unknown -> ok): that one re-plans"
    assert ws.resolve([14_999])[14_999].status == "ok"


def test_the_unknown_verdicts_kept_are_bounded(monkeypatch):
    import stream.contract.writer_schemas as ws_module

    monkeypatch.setattr(ws_module, "MAX_REMEMBERED", 50)
    reg = FlakyRegistry({})
    ws = WriterSchemas(reg, json.loads(reader_schema()))  # type: ignore[arg-type]
    for start in range(0, 200, 10):
        ws.resolve(range(start, start + 10))
    assert len(ws._unknown) == 50 and min(ws._unknown) == 150, "the least recently met are forgotten first"
    ws.resolve([0])
    assert reg.calls == 201, "a forgotten id is simply asked again"
