"""Score and encode on a local SparkSession (no broker): contributions, imputation, levels, records, routing."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime, timezone

import pytest

from stream.config import load_settings
from stream.pipeline.build import build_scores
from stream.pipeline.encode import encode_output
from stream.pipeline.sink import kafka_sink_options
from tests.helpers import kafka_rows

EXAMPLE = {
    "Age": 54, "Blood_Pressure": 130.0, "Cholesterol": 242.0, "Heart_Rate": 150.0, "Sex": "Male",
    "angina": "Asymptomatic", "Glycemia": "Less than 120 mg/dl", "ECG": "Normal",
    "angina_after_sport": "No", "ecg_slope": "Rising", "fluoroscopy": 2, "thalassemia": "No",
}
TS = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
SETTINGS = load_settings({"output_topic": "preds", "dlq_topic": "dlq"}, environ={})


def _raw(spark, messages):
    return kafka_rows(spark, messages, topic="in", timestamp=TS)


def _scored(spark, model, bodies):
    raw = _raw(spark, [(f"p-{i}".encode(), json.dumps(b).encode()) for i, b in enumerate(bodies)])
    return build_scores(raw, model).orderBy("offset").collect()


def _expected_contributions(meta, body):
    """Per field: sum of coefficient x (x - mean) / std over its expanded features (model.json's numbers)."""
    imputation = meta["model"]["imputation"]
    out: dict[str, float] = {}
    for feat in meta["model"]["features"]:
        field = feat["field"]
        value = body.get(field)
        if feat["category"] is None:
            x = float(imputation[field] if value is None else value)
        else:
            x = 1.0 if value == feat["category"] else 0.0
        std = float(feat["std"])
        z = 0.0 if std == 0.0 else (x - float(feat["mean"])) / std
        out[field] = out.get(field, 0.0) + float(feat["coefficient"]) * z
    return out


def test_contributions_are_the_top_three_by_magnitude_with_their_signs(spark, model):
    (row,) = _scored(spark, model, [EXAMPLE])
    expected = _expected_contributions(model.meta, EXAMPLE)
    top = sorted(expected.items(), key=lambda kv: -abs(kv[1]))[:3]
    got = [(c.field, c.contribution) for c in row.contributions]
    assert [f for f, _ in got] == [f for f, _ in top]
    for (_, g), (_, e) in zip(got, top, strict=True):
        assert g == pytest.approx(e, abs=1e-6)
        assert math.copysign(1, g) == math.copysign(1, e)
    assert abs(got[0][1]) >= abs(got[1][1]) >= abs(got[2][1])
    assert row.contributions[0].value == str(EXAMPLE[got[0][0]])


def test_a_null_nullable_field_is_imputed_and_listed(spark, model):
    body = dict(EXAMPLE, fluoroscopy=None)
    plain, imputed = _scored(spark, model, [EXAMPLE, body])
    assert plain.imputed_fields == []
    assert imputed.imputed_fields == ["fluoroscopy"]
    assert imputed.error_code is None
    median = float(model.meta["model"]["imputation"]["fluoroscopy"])
    (same,) = _scored(spark, model, [dict(EXAMPLE, fluoroscopy=int(median))])
    assert imputed.probability_disease == pytest.approx(same.probability_disease, abs=1e-15)


@pytest.mark.parametrize(
    ("thresholds", "level"),
    [("p_is_high", "High"), ("p_is_medium", "Medium"), ("p_just_under_medium", "Low")],
)
def test_risk_levels_at_the_exact_thresholds(spark, model, thresholds, level):
    (row,) = _scored(spark, model, [EXAMPLE])
    p = row.probability_disease
    t = {
        "p_is_high": {"medium": p / 2, "high": p},
        "p_is_medium": {"medium": p, "high": math.nextafter(p, 1.0)},
        "p_just_under_medium": {"medium": math.nextafter(p, 1.0), "high": 0.999},
    }[thresholds]
    meta = dict(model.meta, risk_thresholds=dict(model.meta["risk_thresholds"], **t))
    (again,) = _scored(spark, dataclasses.replace(model, meta=meta), [EXAMPLE])
    assert again.probability_disease == p
    assert again.risk_level == level


def test_a_rejected_row_has_no_score_columns(spark, model):
    (row,) = _scored(spark, model, [dict(EXAMPLE, Age=500)])
    assert row.error_code == "OUT_OF_RANGE"
    assert (row.probability_disease, row.risk_level, row.contributions, row.imputed_fields) == (None,) * 4


def test_encode_routes_predictions_and_dead_letters_with_their_headers(spark, model):
    raw = _raw(spark, [(b"k-good", json.dumps(EXAMPLE).encode()), (b"k-bad", b"{not json")])
    rows = encode_output(build_scores(raw, model), SETTINGS).collect()
    good, bad = rows
    assert (good.topic, bad.topic) == ("preds", "dlq")
    assert good.key == b"k-good", "a prediction is keyed by patient_id (here from the message key)"
    assert bad.key == b"k-bad", "a dead letter keeps the original key"
    prediction = json.loads(good.value)
    assert list(prediction) == [
        "event_id", "patient_id", "event_time", "scored_at", "model_version", "probability", "prediction",
        "risk_level", "contributions", "imputed_fields",
    ]
    assert prediction["event_id"] == "in-0-0" and prediction["event_time"] == "2026-01-02T03:04:05.000Z"
    assert prediction["model_version"] == model.version
    letter = json.loads(bad.value)
    assert letter["error_code"] == "NOT_JSON" and letter["stage"] == "decode"
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("in", 0, 1)
    assert letter["value_size"] == len(b"{not json")
    good_headers = {h.key: bytes(h.value) for h in good.headers}
    bad_headers = {h.key: bytes(h.value) for h in bad.headers}
    assert good_headers == {
        "model_version": model.version.encode(), "content-type": b"application/json",
        "schema": b"heartrisk.prediction.v1",
    }
    assert bad_headers == {
        "error_code": b"NOT_JSON", "content-type": b"application/json", "schema": b"heartrisk.dead_letter.v1",
    }


def test_hashed_dead_letters_keep_no_patient_data_and_still_validate(spark, model):
    import hashlib

    import jsonschema

    from stream.contract.schema import load_json

    secret_key, secret_value = b"patient-4711", b'{"patient_id": "patient-4711", "Age": "x"'
    raw = _raw(spark, [(secret_key, secret_value), (None, b"")])
    hashed = dataclasses.replace(SETTINGS, dead_letter_payload="hashed")
    first, second = encode_output(build_scores(raw, model), hashed).collect()
    letter = json.loads(first.value)
    assert first.key == hashlib.sha256(secret_key).hexdigest().encode(), "the Kafka key is the key's sha256"
    assert (letter["key_base64"], letter["value_base64"], letter["payload"]) == (None, None, "hashed")
    assert letter["key_sha256"] == hashlib.sha256(secret_key).hexdigest()
    assert letter["value_sha256"] == hashlib.sha256(secret_value).hexdigest()
    assert (letter["key_size"], letter["value_size"]) == (len(secret_key), len(secret_value))
    assert b"4711" not in first.value, "no trace of the patient in the dead letter"
    schema = load_json("dead_letter.v1.schema.json")
    for row in (first, second):
        jsonschema.validate(json.loads(row.value), schema)
    assert second.key is None and json.loads(second.value)["error_code"] == "EMPTY_VALUE"


def test_sink_options_default_and_yield_to_the_users_kafka_options():
    opts = kafka_sink_options(SETTINGS)
    assert opts["kafka.bootstrap.servers"] == "localhost:9092"
    assert (opts["kafka.linger.ms"], opts["kafka.compression.type"]) == ("5", "lz4")
    assert (opts["kafka.acks"], opts["kafka.enable.idempotence"]) == ("all", "true"), "durable on a replicated cluster"
    mine = load_settings({"kafka_options": {"linger.ms": "50", "acks": "1"}}, environ={})
    opts = kafka_sink_options(mine)
    assert (opts["kafka.linger.ms"], opts["kafka.acks"], opts["kafka.compression.type"]) == ("50", "1", "lz4")


def test_async_progress_tracking_only_where_spark_allows_it():
    from stream.pipeline.sink import progress_options

    on = progress_options(load_settings({"trigger": "processing-time=250ms"}, environ={}))
    assert on == {"asyncProgressTrackingEnabled": "true", "asyncProgressTrackingCheckpointIntervalMs": "0"}
    for trigger in ("real-time", "available-now"):
        assert progress_options(load_settings({"trigger": trigger}, environ={})) == {}, trigger
    off = load_settings({"trigger": "processing-time=0", "progress_tracking": "sync"}, environ={})
    assert progress_options(off) == {}


def _keys_file(tmp_path, *names: str):
    from cryptography.fernet import Fernet

    keys = {n: Fernet.generate_key().decode() for n in names}
    path = tmp_path / "dlq.keys"
    path.write_text("# dead-letter keys: the first seals\n" + "".join(f"{n}={k}\n" for n, k in keys.items()))
    return path, keys


def test_encrypted_dead_letters_open_with_pythons_fernet_and_hold_no_plaintext(spark, model, tmp_path):
    import base64
    import hashlib

    import jsonschema
    from cryptography.fernet import Fernet

    from stream.contract.schema import load_json
    from stream.contract.sealed import original_bytes, read_keys

    path, keys = _keys_file(tmp_path, "2026-12", "2026-06")
    secret_key, secret_value = b"patient-4711", b'{"patient_id": "patient-4711", "Cholesterol": 587.125, "Age": "x"'
    big_key = b"k" * 70_000  # cut to 64 KiB before sealing, as a kept one is
    raw = _raw(spark, [(secret_key, secret_value), (secret_key, secret_value), (big_key, b"{"), (None, b"")])
    encrypted = dataclasses.replace(SETTINGS, dead_letter_payload="encrypted", dead_letter_key_file=str(path))
    rows = encode_output(build_scores(raw, model), encrypted).collect()
    letters = [json.loads(r.value) for r in rows]
    schema = load_json("dead_letter.v1.schema.json")
    for row, letter in zip(rows, letters, strict=True):
        jsonschema.validate(letter, schema)
        assert (letter["payload"], letter["key_id"]) == ("encrypted", "2026-12"), "the file's first key seals"
        assert letter["key_base64"] is None and letter["value_base64"] is None
        for secret in (b"4711", b"587.125", base64.b64encode(secret_value)[:20]):
            assert secret not in row.value
    assert rows[0].key == hashlib.sha256(secret_key).hexdigest().encode(), "the Kafka key is the key's sha256"
    # Python's own Fernet opens what the JVM sealed; each token has its own IV
    assert Fernet(keys["2026-12"].encode()).decrypt(letters[0]["value_fernet"]) == secret_value
    assert letters[0]["value_fernet"] != letters[1]["value_fernet"]
    assert original_bytes(letters[0], read_keys(path)) == (secret_key, secret_value)
    assert original_bytes(letters[2], read_keys(path))[0] == big_key[: 64 * 1024]
    assert letters[2]["key_truncated"] is True
    assert original_bytes(letters[3], read_keys(path)) == (None, b""), "a null key stays null"
    # rotation: a later file with a new first key still opens the letters the old one sealed
    rotated = tmp_path / "rotated.keys"
    rotated.write_text(f"2027-01={Fernet.generate_key().decode()}\n" + path.read_text())
    assert original_bytes(letters[0], read_keys(rotated)) == (secret_key, secret_value)


def test_encrypted_mode_refuses_a_missing_or_malformed_keys_file_without_quoting_a_key(tmp_path):
    from stream.errors import ConfigError
    from stream.pipeline.encode import Payload

    with pytest.raises(ConfigError, match="needs the Fernet keys: set HEARTRISK_DEAD_LETTER_KEY_FILE"):
        Payload.of(dataclasses.replace(SETTINGS, dead_letter_payload="encrypted"))
    with pytest.raises(ConfigError, match="cannot be read"):
        Payload.of(dataclasses.replace(SETTINGS, dead_letter_payload="encrypted",
                                       dead_letter_key_file=str(tmp_path / "absent")))
    bad = tmp_path / "bad.keys"
    bad.write_text("k1=c2VjcmV0LW5vdC1hLWZlcm5ldC1rZXk=\n")
    with pytest.raises(ConfigError) as err:
        Payload.of(dataclasses.replace(SETTINGS, dead_letter_payload="encrypted", dead_letter_key_file=str(bad)))
    assert "line 1" in str(err.value) and "c2VjcmV0" not in str(err.value)
    path, _ = _keys_file(tmp_path, "only")
    assert Payload.of(dataclasses.replace(SETTINGS, dead_letter_payload="encrypted",
                                          dead_letter_key_file=str(path))).key_id == "only"


def test_a_keys_file_rotated_under_a_running_jvm_seals_with_the_key_the_letter_names(spark, model, tmp_path):
    from cryptography.fernet import Fernet

    path, keys = _keys_file(tmp_path, "old")
    encrypted = dataclasses.replace(SETTINGS, dead_letter_payload="encrypted", dead_letter_key_file=str(path))
    raw = _raw(spark, [(b"k", b"{not json")])
    (before,) = [json.loads(r.value) for r in encode_output(build_scores(raw, model), encrypted).collect()]
    new_key = Fernet.generate_key().decode()
    path.write_text(f"new={new_key}\nold={keys['old']}\n")  # rotated: a new first line, the old kept below
    (after,) = [json.loads(r.value) for r in encode_output(build_scores(raw, model), encrypted).collect()]
    assert (before["key_id"], after["key_id"]) == ("old", "new")
    assert Fernet(keys["old"].encode()).decrypt(before["value_fernet"]) == b"{not json"
    assert Fernet(new_key.encode()).decrypt(after["value_fernet"]) == b"{not json", "sealed with the key it names"
