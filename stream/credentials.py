"""One way to say "this cluster, these credentials", turned into each Kafka client's dialect.

A credentials file (``HEARTRISK_KAFKA_SECURITY_FILE``, JSON) names the security
protocol and what it needs::

    {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
     "username": "scorer", "password_file": "scorer.password", "ca_file": "ca.pem"}
    {"security_protocol": "SSL", "ca_file": "ca.pem",
     "cert_file": "scorer.crt", "key_file": "scorer.key", "key_password_file": "scorer.keypass"}

Paths are relative to the file. Secrets may be inline (``password``,
``key_password``) or in files (``..._file``). ``librdkafka`` turns it into the
options of confluent-kafka (the producer, tail, the topic admin, the broker
check); ``java`` into those of Kafka's Java client (Spark's source and sink,
Kafka's own tools). ``HEARTRISK_KAFKA_OPTIONS`` still passes anything else, and
wins over both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.errors import ConfigError
from stream.spec import redact_values

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT")
MECHANISMS = {
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
}


@dataclass(frozen=True)
class KafkaCredentials:
    """A cluster's security settings and one principal's credentials (secrets never in ``repr``)."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: str | None = None

    def __repr__(self) -> str:
        return (f"KafkaCredentials(protocol={self.security_protocol}, mechanism={self.sasl_mechanism}, "
                f"username={self.username}, ca={self.ca_file}, cert={self.cert_file})")

    @classmethod
    def load(cls, path: Path) -> KafkaCredentials:
        """Read and check a credentials file.

        Raises:
            ConfigError: unreadable, not JSON, unknown keys, or incomplete for its protocol (never echoing a secret).
        """
        where = f"the Kafka credentials file {path}"
        try:
            raw = json.loads(path.read_text())
        except OSError as exc:
            msg = f"{where} cannot be read: {exc.strerror}"
            raise ConfigError(msg) from exc
        except ValueError as exc:
            msg = f"{where} is not JSON (its content is not shown: it may hold secrets)"
            raise ConfigError(msg) from exc
        known = {"security_protocol", "sasl_mechanism", "username", "password", "password_file", "ca_file",
                 "cert_file", "key_file", "key_password", "key_password_file"}
        if not isinstance(raw, dict) or set(raw) - known:
            msg = f"{where}: unknown keys {sorted(set(raw) - known) if isinstance(raw, dict) else type(raw)}; known: "
            raise ConfigError(msg + ", ".join(sorted(known)))
        base = path.parent

        def file(key: str) -> Path | None:
            return (base / raw[key]).resolve() if raw.get(key) else None

        def secret(key: str) -> str | None:
            if raw.get(key):
                return str(raw[key])
            f = file(key + "_file")
            if f is None:
                return None
            try:
                return f.read_text().strip()
            except OSError as exc:
                msg = f"{where}: {key}_file {f} cannot be read: {exc.strerror}"
                raise ConfigError(msg) from exc

        creds = cls(str(raw.get("security_protocol", "PLAINTEXT")).upper(), raw.get("sasl_mechanism"),
                    raw.get("username"), secret("password"), file("ca_file"), file("cert_file"), file("key_file"),
                    secret("key_password"))
        creds.check(where)
        return creds

    def check(self, where: str) -> None:
        """Refuse what the protocol cannot work with.

        Raises:
            ConfigError: naming what is missing.
        """
        if self.security_protocol not in PROTOCOLS:
            msg = f"{where}: security_protocol must be one of {', '.join(PROTOCOLS)}"
            raise ConfigError(msg)
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism not in MECHANISMS or not self.username or not self.password:
                msg = (f"{where}: {self.security_protocol} needs sasl_mechanism ({', '.join(MECHANISMS)}), "
                       "username and password (or password_file)")
                raise ConfigError(msg)
        if (self.cert_file is None) != (self.key_file is None):
            msg = f"{where}: a client certificate needs both cert_file and key_file"
            raise ConfigError(msg)
        for f in (self.ca_file, self.cert_file, self.key_file):
            if f is not None and not f.is_file():
                msg = f"{where}: {f} does not exist"
                raise ConfigError(msg)

    @property
    def tls(self) -> bool:
        """Whether the connection is TLS."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    def librdkafka(self) -> dict[str, str]:
        """Options for confluent-kafka (librdkafka)."""
        out = {"security.protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            out.update({"sasl.mechanisms": str(self.sasl_mechanism), "sasl.username": str(self.username),
                        "sasl.password": str(self.password)})
        if self.ca_file:
            out["ssl.ca.location"] = str(self.ca_file)
        if self.cert_file and self.key_file:
            out.update({"ssl.certificate.location": str(self.cert_file), "ssl.key.location": str(self.key_file)})
            if self.key_password:
                out["ssl.key.password"] = self.key_password
        return out

    def java(self) -> dict[str, str]:
        """Options for Kafka's Java client (Spark's source and sink take them as ``kafka.<option>``)."""
        out = {"security.protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            module = MECHANISMS[str(self.sasl_mechanism)]
            user, password = _jaas_quote(str(self.username)), _jaas_quote(str(self.password))
            out.update({"sasl.mechanism": str(self.sasl_mechanism),
                        "sasl.jaas.config": f'{module} required username="{user}" password="{password}";'})
        if self.ca_file:
            out.update({"ssl.truststore.type": "PEM", "ssl.truststore.location": str(self.ca_file)})
        if self.cert_file and self.key_file:
            # Java's PEM key store is one file holding the (encrypted) private key and its certificate chain
            out.update({"ssl.keystore.type": "PEM", "ssl.keystore.location": str(self.keystore_file())})
            if self.key_password:
                out["ssl.key.password"] = self.key_password
        return out

    def keystore_file(self) -> Path:
        """The key and certificate in one PEM file, beside the key (written once, for the Java client)."""
        assert self.key_file is not None and self.cert_file is not None
        target = self.key_file.with_suffix(".keystore.pem")
        content = self.key_file.read_text().strip() + "\n" + self.cert_file.read_text().strip() + "\n"
        if not target.is_file() or target.read_text() != content:
            target.write_text(content)
            target.chmod(0o600)
        return target


def _jaas_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def librdkafka_refusal(exc: BaseException, options: Mapping[str, Any]) -> str | None:
    """The refusal of a client option by librdkafka (``KafkaException``, ``_INVALID_ARG``) as one sentence, or None.

    Every secret value of ``options`` (a client's config) is scrubbed from librdkafka's text.
    """
    err: Any = exc.args[0] if exc.args else None
    if type(exc).__name__ != "KafkaException" or not hasattr(err, "code"):
        return None
    from confluent_kafka import KafkaError

    if err.code() != KafkaError._INVALID_ARG:
        return None
    why = redact_values(str(err.str()), {k: str(v) for k, v in options.items()})
    return (f"a Kafka client (librdkafka) refused its options: {why}. HEARTRISK_KAFKA_OPTIONS goes to both "
            "clients: describe the cluster's credentials in the credentials file (HEARTRISK_KAFKA_SECURITY_FILE), "
            "and put an option only Java's client knows (sasl.jaas.config, ...) in HEARTRISK_KAFKA_JAVA_OPTIONS")
