"""The settings object: precedence, parsing, secrets."""

from __future__ import annotations

import pytest

from stream.config import SPECS, load_settings
from stream.errors import ConfigError, HeartriskError


def test_defaults():
    s = load_settings(environ={})
    assert s.bootstrap_servers == "localhost:9092"
    assert (s.input_topic, s.output_topic, s.dlq_topic) == (
        "patient-events",
        "risk-predictions",
        "patient-events-dlq",
    )
    assert s.partitions == 3
    assert s.checkpoint_location.endswith("checkpoints/heartrisk-scorer")


def test_flag_beats_env_beats_default():
    env = {"HEARTRISK_INPUT_TOPIC": "from-env", "HEARTRISK_PARTITIONS": "5"}
    s = load_settings({"input_topic": "from-flag"}, environ=env)
    assert s.input_topic == "from-flag"
    assert s.partitions == 5


def test_bad_env_value_names_the_variable():
    with pytest.raises(ConfigError, match="HEARTRISK_PARTITIONS='zero' is invalid"):
        load_settings(environ={"HEARTRISK_PARTITIONS": "zero"})
    with pytest.raises(ConfigError, match="HEARTRISK_KAFKA_PORT"):
        load_settings(environ={"HEARTRISK_KAFKA_PORT": "70000"})


def test_config_error_is_a_heartrisk_error_and_value_error():
    assert issubclass(ConfigError, HeartriskError)
    assert issubclass(ConfigError, ValueError)


def test_secrets_never_rendered():
    env = {
        "HEARTRISK_KAFKA_OPTIONS": "security.protocol=SASL_SSL,sasl.password=hunter2,"
        "sasl.jaas.config=x required password=hunter2"
    }
    s = load_settings(environ=env)
    assert s.kafka_options["sasl.password"] == "hunter2"
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s)
    assert "SASL_SSL" in repr(s)
    assert s.spark_kafka_options()["kafka.sasl.password"] == "hunter2"


def test_every_spec_has_env_and_help():
    for spec in SPECS.values():
        assert spec.env.startswith("HEARTRISK_")
        assert spec.help


def test_to_env_round_trips():
    s = load_settings({"input_topic": "x", "partitions": 7, "kafka_options": {"a": "1", "b": "2"}}, environ={})
    assert load_settings(environ=s.to_env()) == s


def test_settings_are_declared_once_with_groups_and_closed_choices():
    from stream.config import settings_in

    assert settings_in("kafka") == ("bootstrap_servers", "kafka_options", "kafka_java_options",
                                    "kafka_librdkafka_options", "broker_wait", "kafka_security_file")
    assert settings_in("topics", "model_dir") == (
        "input_topic", "output_topic", "dlq_topic", "shadow_topic", "commit_topic", "partitions", "model_dir"
    )
    with pytest.raises(ConfigError, match="unknown settings or groups"):
        settings_in("nope")
    assert SPECS["engine"].default == "compiled" and SPECS["trigger"].default == "processing-time=250ms"
    with pytest.raises(ConfigError, match="HEARTRISK_ENGINE='fast' is invalid: must be one of compiled | pipeline"):
        load_settings(environ={"HEARTRISK_ENGINE": "fast"})


def test_every_kafka_secret_key_is_redacted_and_paths_and_names_are_not():
    from stream.spec import is_secret

    secret = ("sasl.jaas.config", "sasl.password", "sasl.oauthbearer.config", "sasl.oauthbearer.client.secret",
              "ssl.key.password", "ssl.keystore.password", "ssl.truststore.password", "ssl.keystore.key",
              "ssl.key.pem", "basic.auth.user.info", "sasl.kerberos.keytab")
    plain = ("bootstrap.servers", "security.protocol", "sasl.mechanism", "sasl.username", "ssl.ca.location",
             "ssl.keystore.location", "ssl.certificate.location")
    assert [k for k in secret if not is_secret(k)] == []
    assert [k for k in plain if is_secret(k)] == []
    s = load_settings({"kafka_options": {"ssl.key.pem": "-----BEGIN PRIVATE KEY-----abc", "sasl.username": "u"}})
    assert "BEGIN PRIVATE" not in repr(s)
    assert s.redacted()["kafka_options"] == {"ssl.key.pem": "***", "sasl.username": "u"}


def test_a_malformed_secret_flag_or_variable_is_never_echoed(capsys):
    import pytest

    from stream.cli import main
    from stream.errors import ConfigError

    with pytest.raises(SystemExit) as exit_info:
        main(["score", "--kafka-options", "sasl.password"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "sasl.password" not in err and "secret and not shown" in err
    with pytest.raises(ConfigError) as e:
        load_settings(environ={"HEARTRISK_KAFKA_OPTIONS": "sasl.jaas.config=x y,=hunter2"})
    assert "hunter2" not in str(e.value) and "secret and not shown" in str(e.value)


def test_registry_credentials_over_plain_http_to_another_host_are_warned_about(caplog):
    from stream.contract.registry import SchemaRegistry
    from stream.spec import clear_text_off_host

    assert clear_text_off_host("http://registry.hospital:8081/apis/ccompat/v7")
    assert clear_text_off_host("pushgateway.monitoring.svc:9091"), "a bare host:port is http"
    assert not clear_text_off_host("https://registry.hospital:8081")
    assert not clear_text_off_host("http://localhost:8081") and not clear_text_off_host("127.0.0.1:9091")
    with caplog.at_level("WARNING"):
        SchemaRegistry("http://registry.hospital:8081", "user:hunter2")
    assert "registry credentials over plain http" in caplog.text and "hunter2" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        SchemaRegistry("https://registry.hospital:8081", "user:hunter2")
    assert "plain http" not in caplog.text
