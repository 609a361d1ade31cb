"""``heartrisk serve`` over real HTTP: the stream's answers, its error codes, tokens, rate limits, batches, reload.

The parity test runs the real streaming scorer (Kafka + Spark) and the real
HTTP service on the same bytes: the 303 patients of the data set and the
hostile table. The HTTP service must give the stream's prediction records
(all fields but ``scored_at``) and the stream's dead-letter codes, and its
unrounded probability must agree with ``PipelineModel.transform`` to 1e-9.
"""

from __future__ import annotations

import json
import shutil
import signal
import time

import jwt
import pytest
from confluent_kafka import Producer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client.parser import text_string_to_metric_families
from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F

from stream.app.scorer import start_scorer
from stream.config import PROJECT_ROOT, load_settings
from stream.model.dataset import read_csv
from tests.helpers import HeartriskServer, consume, end_offsets_total, http_call, wait_for
from tests.hostile import hostile_table

pytestmark = pytest.mark.integration

AUDIENCE = "heartrisk"
FIELDS = ("Age", "Blood_Pressure", "Cholesterol", "Heart_Rate", "Sex", "angina", "Glycemia", "ECG",
          "angina_after_sport", "ecg_slope", "fluoroscopy", "thalassemia")


class Keys:
    """An HS256 secret, an RS256 key pair (PEM public key file) and a JWKS file with a third key."""

    def __init__(self, tmp) -> None:
        self.secret = b"s" * 16 + b"0123456789abcdef0123"
        (tmp / "hs.secret").write_bytes(self.secret)
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (tmp / "rs.pub.pem").write_bytes(self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        self.jwk_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.jwk_key.public_key()))
        (tmp / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
        self.env = {
            "HEARTRISK_JWT_SECRET_FILE": str(tmp / "hs.secret"),
            "HEARTRISK_JWT_PUBLIC_KEY_FILE": str(tmp / "rs.pub.pem"),
            "HEARTRISK_JWT_JWKS_FILE": str(tmp / "jwks.json"),
        }

    def token(self, sub="integrator", scope="predict", aud=AUDIENCE, exp_in=300, alg="HS256", key=None, kid=None):
        claims = {"sub": sub, "aud": aud, "exp": int(time.time()) + exp_in, "scope": scope}
        signing = key if key is not None else (self.secret if alg == "HS256" else self.rsa)
        return jwt.encode(claims, signing, algorithm=alg, headers={"kid": kid} if kid else None)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return Keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def server(keys, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    env = {**keys.env, "HEARTRISK_SERVE_RATE": "1000", "HEARTRISK_SERVE_BURST": "5000",
           "HEARTRISK_SERVE_BATCH_MAX": "50", "HEARTRISK_MODEL_DIR": str(PROJECT_ROOT / "models" / "heart_lr")}
    srv = HeartriskServer(tmp, env).start()
    yield srv
    assert srv.stop() in (0, -signal.SIGTERM), "uvicorn re-raises SIGTERM once it has stopped gracefully"
    assert "Shutting down" in srv.logs() and "Finished server process" in srv.logs()


def predict(srv, body: bytes, token: str | None, path="/v1/predict"):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    status, hdrs, raw = http_call("POST", srv.url + path, body, headers)
    return status, hdrs, json.loads(raw)


def _patient_events() -> list[tuple[str, bytes]]:
    out = []
    for i, row in enumerate(read_csv(PROJECT_ROOT / "data" / "heart_disease.csv")):
        body = {"event_id": f"parity-{i}", "patient_id": str(row["patient_id"]),
                "event_time": f"2026-11-27T10:{i // 60:02d}:{i % 60:02d}Z", **{f: row[f] for f in FIELDS}}
        out.append((body["patient_id"], json.dumps(body).encode()))
    return out


def test_the_endpoint_gives_the_streams_answers_for_the_303_patients_and_the_hostile_table(
    spark, model, kafka_bootstrap, make_topics, tmp_path, server, keys
):
    inp, = make_topics("serve-in", partitions=1)
    out, dlq = make_topics("serve-out", "serve-dlq")
    patients = _patient_events()
    hostile = hostile_table()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for pid, value in patients:
        producer.produce(inp, value, key=pid.encode(), partition=0)
    for _, value in hostile:
        producer.produce(inp, value, partition=0)  # no key: the HTTP service has none either
    assert producer.flush(30) == 0
    settings = load_settings({"bootstrap_servers": kafka_bootstrap, "input_topic": inp, "output_topic": out,
                              "dlq_topic": dlq, "checkpoint_dir": str(tmp_path / "ckpt"),
                              "trigger": "available-now", "spark_master": "local[2]"})
    query = start_scorer(spark, settings, model)
    query.awaitTermination(300)
    assert query.exception() is None
    total = len(patients) + len(hostile)
    n_out, n_dlq = end_offsets_total(kafka_bootstrap, out), end_offsets_total(kafka_bootstrap, dlq)
    assert n_out + n_dlq == total, "input = predictions + dead letters"
    preds = consume(kafka_bootstrap, out, lambda r: len(r) >= n_out, 60)
    letters = consume(kafka_bootstrap, dlq, lambda r: len(r) >= n_dlq, 60)
    stream_records = [json.loads(m.value()) for m in preds]
    assert len(stream_records) + len(letters) == total, "input = predictions + dead letters"
    by_event = {r["event_id"]: r for r in stream_records}

    # 1. the 303 patients: the whole record, but scored_at (and the HTTP-only probability_exact)
    token = keys.token()
    http_records = {}
    for _, value in patients:
        status, _, body = predict(server, value, token)
        assert status == 200, body
        http_records[body["event_id"]] = body
    assert len(http_records) == 303
    worst = 0.0
    for event_id, h in http_records.items():
        s = by_event[event_id]
        exact = h.pop("probability_exact")
        worst = max(worst, abs(exact - s["probability"]))
        assert {k: v for k, v in h.items() if k != "scored_at"} == {k: v for k, v in s.items() if k != "scored_at"}
    assert worst <= 5e-7, "the stream's record rounds to 6 decimals"

    # 2. against PipelineModel.transform, unrounded
    rows = [(json.loads(v)["event_id"], *[json.loads(v)[f] for f in FIELDS]) for _, v in patients]
    ddl = "event_id string, Age int, Blood_Pressure double, Cholesterol double, Heart_Rate double, Sex string, " \
          "angina string, Glycemia string, ECG string, angina_after_sport string, ecg_slope string, " \
          "fluoroscopy int, thalassemia string"
    df = spark.createDataFrame([(r[0], *[float(x) if f in ("Blood_Pressure", "Cholesterol", "Heart_Rate")
                                          and x is not None else x for f, x in zip(FIELDS, r[1:], strict=True)])
                                for r in rows], ddl)
    direct = model.pipeline.transform(df).select("event_id", vector_to_array(F.col("probability"))[1].alias("p"))
    exact_http = {e: predict(server, v, token)[2]["probability_exact"] for e, v in
                  ((json.loads(v)["event_id"], v) for _, v in patients)}
    deltas = [abs(exact_http[r.event_id] - r.p) for r in direct.collect()]
    assert len(deltas) == 303 and max(deltas) <= 1e-9, max(deltas)

    # 3. the hostile table: the dead letter's code, or a prediction, for the same bytes
    first = len(patients)
    stream_verdict = {}
    for m in letters:
        rec = json.loads(m.value())
        stream_verdict[rec["offset"] - first] = rec["error_code"]
    for r in stream_records:
        if r["event_id"].startswith(f"{inp}-0-"):
            stream_verdict[int(r["event_id"].rsplit("-", 1)[1]) - first] = "OK"
        elif not r["event_id"].startswith("parity-"):
            stream_verdict.setdefault(r["event_id"], "OK")
    mismatches = []
    http_codes = {}
    for i, (name, value) in enumerate(hostile):
        status, _, body = predict(server, value, token)
        http_code = "OK" if status == 200 else body["error_code"]
        http_codes[name] = http_code
        want = stream_verdict.get(i)
        if want is None and status == 200:
            want = stream_verdict.get(body["event_id"])  # an explicit event_id in the body
        if status != 200:
            assert status == 422 and set(body) == {"error_code", "error_detail", "field", "stage", "event_id"}
        if http_code != want:
            mismatches.append((name, want, http_code))
    assert mismatches == []
    assert len(set(http_codes.values())) >= 12, "the table covers most codes"


GOOD = json.dumps({"Age": 54, "Blood_Pressure": 130, "Cholesterol": 242, "Heart_Rate": 150, "Sex": "Male",
                   "angina": "Asymptomatic", "Glycemia": "Less than 120 mg/dl", "ECG": "Normal",
                   "angina_after_sport": "No", "ecg_slope": "Rising", "fluoroscopy": 2, "thalassemia": "No",
                   "patient_id": "p-auth"}).encode()


def test_tokens_are_checked_401_403_and_each_key_kind_is_accepted(server, keys):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = {
        "no token": None,
        "expired": keys.token(exp_in=-120),
        "wrong audience": keys.token(aud="someone-else"),
        "wrong signature (HS256)": keys.token(key=b"x" * 40),
        "wrong signature (RS256)": keys.token(alg="RS256", key=other),
        "unknown kid": keys.token(alg="RS256", key=keys.jwk_key, kid="nope"),
        "not a JWT": "abc.def",
        "alg none": jwt.encode({"sub": "x", "aud": AUDIENCE, "exp": int(time.time()) + 60}, None, algorithm="none"),
    }
    for what, token in refused.items():
        status, headers, body = predict(server, GOOD, token)
        assert (status, body["error_code"]) == (401, "UNAUTHENTICATED"), what
        assert headers["www-authenticate"].startswith("Bearer"), what
        assert "Traceback" not in json.dumps(body)
    status, headers, body = predict(server, GOOD, keys.token(scope="read other"))
    assert (status, body["error_code"]) == (403, "FORBIDDEN")
    assert 'insufficient_scope' in headers["www-authenticate"]
    for token in (keys.token(), keys.token(alg="RS256"), keys.token(alg="RS256", key=keys.jwk_key, kid="k1"),
                  keys.token(scope="openid predict")):
        status, _, body = predict(server, GOOD, token)
        assert status == 200 and body["patient_id"] == "p-auth"
    assert http_call("GET", server.url + "/v1/model")[0] == 401
    status, _, raw = http_call("GET", server.url + "/v1/model", headers={"Authorization": f"Bearer {keys.token()}"})
    info = json.loads(raw)
    assert status == 200 and info["version"] == "1.0.0" and info["risk_thresholds"] == {"medium": 0.17, "high": 0.51}
    assert info["metrics"]["cv_auc"] == 0.9166 and info["card"].endswith("1.0.0/model.json")


def test_batches_answer_per_item_and_are_bounded(server, keys):
    token = keys.token(sub="batcher")
    body = b"[" + b", ".join([GOOD, b'{"Age": 500}', b"42", b'{"Age": "x"} ', GOOD]) + b"]"
    status, _, out = predict(server, body, token, "/v1/predict/batch")
    assert status == 200 and (out["predicted"], out["rejected"]) == (2, 3)
    assert [r["status"] for r in out["results"]] == [200, 422, 422, 422, 200]
    assert [r.get("error_code") for r in out["results"]] == [None, "OUT_OF_RANGE", "NOT_AN_OBJECT", "WRONG_TYPE",
                                                             None]
    assert out["results"][0]["probability"] == out["results"][4]["probability"]
    status, _, out = predict(server, b"[" + b",".join([GOOD] * 51) + b"]", token, "/v1/predict/batch")
    assert (status, out["error_code"]) == (413, "BATCH_TOO_LARGE")
    status, _, out = predict(server, b'{"not": "an array"}', token, "/v1/predict/batch")
    assert (status, out["error_code"]) == (422, "NOT_A_BATCH")


def test_bodies_over_the_limits_get_413_and_an_empty_one_its_code(server, keys):
    token = keys.token(sub="big")
    big = GOOD[:-1] + b', "note": "' + b"x" * (1024 * 1024) + b'"}'
    status, _, body = predict(server, big, token)
    assert (status, body["error_code"]) == (413, "MESSAGE_TOO_LARGE")
    status, _, body = predict(server, b"x" * (5 * 1024 * 1024), token)
    assert (status, body["error_code"]) == (413, "MESSAGE_TOO_LARGE")
    status, _, body = predict(server, b"", token)
    assert (status, body["error_code"]) == (422, "EMPTY_VALUE")


def test_metrics_count_by_route_and_code_and_never_name_a_patient(server, keys):
    token = keys.token(sub="metrics")
    for pid in ("patient-secret-1", "patient-secret-2"):
        assert predict(server, GOOD.replace(b"p-auth", pid.encode()), token)[0] == 200
    assert predict(server, b'{"Age": 500, "patient_id": "patient-secret-3"}', token)[0] == 422
    status, _, raw = http_call("GET", server.url + "/metrics")
    text = raw.decode()
    assert status == 200 and "patient-secret" not in text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert samples[("heartrisk_http_errors_total", (("error_code", "OUT_OF_RANGE"),))] >= 1
    assert samples[("heartrisk_http_requests_total", (("route", "/v1/predict"), ("status", "200")))] >= 2
    assert samples[("heartrisk_http_request_duration_seconds_count", (("route", "/v1/predict"),))] >= 3
    assert samples[("heartrisk_http_model_info", (("version", "1.0.0"),))] == 1
    assert sum(v for (n, _), v in samples.items() if n == "heartrisk_http_predictions_total") >= 2
    assert http_call("GET", server.url + "/healthz")[0] == 200


def test_a_client_over_its_rate_gets_429_with_retry_after(keys, tmp_path):
    env = {**keys.env, "HEARTRISK_SERVE_RATE": "2", "HEARTRISK_SERVE_BURST": "3", "HEARTRISK_SERVE_ACCESS_LOG": "off"}
    srv = HeartriskServer(tmp_path, env).start()
    try:
        greedy, calm = keys.token(sub="greedy"), keys.token(sub="calm")
        statuses = [predict(srv, GOOD, greedy)[0] for _ in range(6)]
        assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
        status, headers, body = predict(srv, GOOD, greedy)
        assert (status, body["error_code"]) == (429, "RATE_LIMITED") and int(headers["retry-after"]) >= 1
        assert predict(srv, GOOD, calm)[0] == 200, "the limit is per client"
        wait_for(lambda: predict(srv, GOOD, greedy)[0] == 200, 10, 0.6, what="the greedy client allowed again")
    finally:
        assert srv.stop() in (0, -signal.SIGTERM)


def test_a_new_model_version_is_swapped_in_and_a_broken_one_refused(keys, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(PROJECT_ROOT / "models" / "heart_lr", models)
    v2 = models / "1.0.1"
    shutil.copytree(models / "1.0.0", v2)
    meta = json.loads((v2 / "model.json").read_text())
    meta["version"] = "1.0.1"
    (v2 / "model.json").write_text(json.dumps(meta))
    broken = models / "9.9.9"
    shutil.copytree(v2, broken)
    meta["version"] = "9.9.9"
    (broken / "model.json").write_text(json.dumps(meta))
    next(broken.rglob("*.parquet")).write_bytes(b"tampered")
    env = {**keys.env, "HEARTRISK_MODEL_DIR": str(models), "HEARTRISK_SERVE_RELOAD_INTERVAL": "0.3"}
    srv = HeartriskServer(tmp_path, env).start()
    try:
        token = keys.token(sub="reload")
        assert predict(srv, GOOD, token)[2]["model_version"] == "1.0.0"
        (models / "CURRENT").write_text("1.0.1\n")
        wait_for(lambda: predict(srv, GOOD, token)[2]["model_version"] == "1.0.1", 20, what="1.0.1 serving")
        (models / "CURRENT").write_text("9.9.9\n")

        def refused():
            text = http_call("GET", srv.url + "/metrics")[2].decode()
            return "heartrisk_http_model_reload_failures_total 1.0" in text or \
                "heartrisk_http_model_reload_failures_total 2.0" in text
        wait_for(refused, 20, what="the tampered version refused")
        assert predict(srv, GOOD, token)[2]["model_version"] == "1.0.1", "the old version keeps serving"
        assert 'event="model reload refused"' in srv.logs()
    finally:
        srv.stop()


def test_two_worker_processes_serve_and_stop_together(keys, tmp_path):
    srv = HeartriskServer(tmp_path, {**keys.env, "HEARTRISK_SERVE_WORKERS": "2"}).start()
    try:
        token = keys.token(sub="workers")
        wait_for(lambda: srv.logs().count("Application startup complete") == 2, 60, what="both workers started")
        assert {predict(srv, GOOD, token)[0] for _ in range(20)} == {200}
    finally:
        srv.stop()
    assert srv.logs().count("Finished server process") == 2


def test_https_with_the_servers_own_certificate(keys, tmp_path):
    import datetime as dt
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    env = {**keys.env, "HEARTRISK_SERVE_TLS_CERT": str(tmp_path / "cert.pem"),
           "HEARTRISK_SERVE_TLS_KEY": str(tmp_path / "key.pem")}
    srv = HeartriskServer(tmp_path, env, context=context).start()
    try:
        status, _, raw = http_call("POST", srv.url + "/v1/predict", GOOD, {
            "Authorization": f"Bearer {keys.token(sub='tls')}", "Content-Type": "application/json"}, context=context)
        assert status == 200 and json.loads(raw)["patient_id"] == "p-auth"
        with pytest.raises(OSError):
            http_call("GET", srv.url.replace("https", "http") + "/healthz", timeout=3)
    finally:
        srv.stop()
