"""One credentials file, two dialects: librdkafka's and Java's; errors that never echo a secret."""

from __future__ import annotations

import json

import pytest

from stream.config import load_settings
from stream.credentials import KafkaCredentials
from stream.errors import ConfigError


def _write(tmp_path, **content):
    path = tmp_path / "kafka.json"
    path.write_text(json.dumps(content))
    return path


def test_sasl_ssl_in_both_dialects_with_the_password_from_a_file(tmp_path):
    (tmp_path / "ca.pem").write_text("CA")
    (tmp_path / "pw").write_text('s3"cret\n')
    creds = KafkaCredentials.load(_write(tmp_path, security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                                         username="scorer", password_file="pw", ca_file="ca.pem"))
    assert creds.librdkafka() == {
        "security.protocol": "SASL_SSL", "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "scorer",
        "sasl.password": 's3"cret', "ssl.ca.location": str(tmp_path / "ca.pem")}
    java = creds.java()
    assert java["sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="scorer" password="s3\\"cret";')
    assert (java["sasl.mechanism"], java["ssl.truststore.type"], java["ssl.truststore.location"]) == (
        "SCRAM-SHA-512", "PEM", str(tmp_path / "ca.pem"))
    assert "s3" not in repr(creds)
    settings = load_settings({"kafka_security_file": str(tmp_path / "kafka.json"),
                              "kafka_options": {"client.id": "mine", "sasl.username": "override"}})
    conf = settings.kafka_client_config()
    assert conf["sasl.password"] == 's3"cret' and conf["sasl.username"] == "override", "raw options win"
    spark = settings.spark_kafka_options()
    assert spark["kafka.sasl.jaas.config"] == java["sasl.jaas.config"] and spark["kafka.client.id"] == "mine"
    assert "s3" not in repr(settings)


def test_mutual_tls_in_both_dialects_with_one_pem_key_store_for_java(tmp_path):
    for name in ("ca.pem", "c.crt", "c.key"):
        (tmp_path / name).write_text(f"-----{name}-----")
    creds = KafkaCredentials.load(_write(tmp_path, security_protocol="SSL", ca_file="ca.pem", cert_file="c.crt",
                                         key_file="c.key"))
    assert creds.librdkafka() == {"security.protocol": "SSL", "ssl.ca.location": str(tmp_path / "ca.pem"),
                                  "ssl.certificate.location": str(tmp_path / "c.crt"),
                                  "ssl.key.location": str(tmp_path / "c.key")}
    java = creds.java()
    store = tmp_path / "c.keystore.pem"
    assert (java["ssl.keystore.type"], java["ssl.keystore.location"]) == ("PEM", str(store))
    assert store.read_text() == "-----c.key-----\n-----c.crt-----\n" and oct(store.stat().st_mode)[-3:] == "600"
    assert "sasl.jaas.config" not in java


def test_incomplete_or_broken_files_are_refused_without_echoing_them(tmp_path):
    cases = [
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "username": "u"}, "needs sasl_mechanism"),
        ({"security_protocol": "TLS"}, "must be one of"),
        ({"security_protocol": "SSL", "cert_file": "x.crt"}, "needs both cert_file and key_file"),
        ({"security_protocol": "SSL", "ca_file": "missing.pem"}, "does not exist"),
        ({"security_protocol": "SSL", "pasword": "hunter2"}, "unknown keys ['pasword']"),
    ]
    for content, says in cases:
        with pytest.raises(ConfigError, match=None) as e:
            KafkaCredentials.load(_write(tmp_path, **content))
        assert says in str(e.value) and "hunter2" not in str(e.value), content
    (tmp_path / "kafka.json").write_text('{"password": "hunter2"')
    with pytest.raises(ConfigError) as e:
        KafkaCredentials.load(tmp_path / "kafka.json")
    assert "not JSON" in str(e.value) and "hunter2" not in str(e.value)
