"""The one settings object of heartrisk-stream.

Every setting has a default, an environment variable (``HEARTRISK_...``) and a
command-line flag. Precedence: flag > environment > default. This is the only
module that reads the environment. Secrets (Kafka SASL passwords, registry
credentials) are redacted whenever settings are rendered for people.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from stream.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

InputFormat = Literal["json", "avro", "auto"]
OutputFormat = Literal["json", "avro"]
SECRET_HINTS = ("password", "secret", "jaas", "token", "credential", "key.password")
REDACTED = "***"
PROGRESS_FILE = "heartrisk-progress.json"


def _parse_kv(text: str) -> dict[str, str]:
    """Parse ``k=v,k2=v2`` (or newline-separated) into a dict."""
    out: dict[str, str] = {}
    for part in re.split(r"[,\n]", text):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            msg = f"expected key=value, got {part!r}"
            raise ConfigError(msg)
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        msg = f"must be a positive integer, got {text!r}"
        raise ValueError(msg)
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        msg = f"must be a positive number, got {text!r}"
        raise ValueError(msg)
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        msg = f"must be a TCP port (1-65535), got {text!r}"
        raise ValueError(msg)
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            msg = f"must be one of {' | '.join(allowed)}, got {text!r}"
            raise ValueError(msg)
        return value

    return parse


@dataclass(frozen=True)
class Spec:
    """How one setting is named, parsed and documented."""

    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    secret: bool = False
    metavar: str | None = None

    @property
    def env(self) -> str:
        """The environment variable that sets it."""
        return "HEARTRISK_" + self.name.upper()

    @property
    def flag(self) -> str:
        """The command-line flag that sets it."""
        return "--" + self.name.replace("_", "-")


SPECS: dict[str, Spec] = {
    s.name: s
    for s in [
        # Kafka, for every command that talks to a broker.
        Spec("bootstrap_servers", "localhost:9092", "Kafka bootstrap servers (host:port,...)"),
        Spec("input_topic", "patient-events", "topic the EHR systems publish patient events to"),
        Spec("output_topic", "risk-predictions", "topic the risk predictions are written to"),
        Spec("dlq_topic", "patient-events-dlq", "dead-letter topic for rejected events"),
        Spec("partitions", 3, "partitions per topic when creating topics", _positive_int),
        Spec(
            "kafka_options",
            {},
            "extra Kafka client options, k=v,k2=v2 (e.g. security.protocol=SASL_SSL); "
            "passed to Spark as kafka.<k> and to confluent-kafka as is",
            _parse_kv,
            secret=True,
            metavar="K=V,...",
        ),
        # Formats and the schema registry (Confluent wire format for Avro).
        Spec(
            "input_format",
            "json",
            "json | avro (Confluent-framed, schema id from the registry) | auto (first byte 0 = Avro, else JSON)",
            _choice("json", "avro", "auto"),
        ),
        Spec("output_format", "json", "predictions as json | avro (Confluent-framed)", _choice("json", "avro")),
        Spec(
            "schema_registry_url",
            "http://localhost:8081/apis/ccompat/v7",
            "Confluent-compatible schema registry URL (the local one: `heartrisk registry up`)",
        ),
        Spec(
            "schema_registry_user_info",
            "",
            "registry basic-auth credentials as user:password (better: the env var, or _FILE)",
            secret=True,
            metavar="USER:PASSWORD",
        ),
        Spec(
            "registry_unavailable",
            "pause",
            "when a writer schema cannot be fetched: pause (wait, lose nothing) | dead-letter",
            _choice("pause", "dead-letter"),
        ),
        Spec("registry_port", 8081, "port of the local schema registry", _port),
        Spec(
            "registry_state_dir",
            ".registry-local",
            "directory for the local registry's pid file, log and schema storage (H2)",
        ),
        # The local single-node KRaft broker (`heartrisk kafka ...`).
        Spec("kafka_port", 9092, "port of the local broker's client listener", _port),
        Spec("kafka_controller_port", 9093, "port of the local broker's KRaft controller", _port),
        Spec("kafka_state_dir", ".kafka-local", "directory for the local broker's data and logs"),
        Spec("kafka_heap", "1g", "Java heap of the local broker (-Xmx)"),
        Spec("jvm_dir", ".jvm", "where `make setup` put the Maven-resolved jars"),
        # The model.
        Spec("model_dir", "models/heart_lr", "model directory: a version dir, or its parent with a CURRENT pointer"),
        Spec("data_file", "data/heart_disease.csv", "the Cleveland data set in event field names"),
        # The scorer.
        Spec("query_name", "heartrisk-scorer", "streaming query name; also its checkpoint folder name"),
        Spec("checkpoint_dir", "checkpoints", "parent of the checkpoint folders (any Hadoop path)"),
        Spec(
            "trigger",
            "processing-time=1s",
            "processing-time=<duration> | available-now | real-time[=<checkpoint interval>]",
        ),
        Spec(
            "max_offsets_per_trigger",
            200_000,
            "cap on events read per micro-batch",
            _positive_int,
        ),
        Spec("starting_offsets", "earliest", "where a new query starts: earliest | latest | JSON"),
        Spec(
            "progress_file",
            "",
            "progress file the scorer writes and the exporter reads "
            "(default: <checkpoint>/heartrisk-progress.json, or .run/ for a remote checkpoint)",
        ),
        Spec("spark_master", "local[*]", "Spark master URL"),
        Spec("spark_driver_memory", "1g", "Spark driver memory"),
        Spec("shuffle_partitions", 4, "spark.sql.shuffle.partitions", _positive_int),
        Spec(
            "spark_conf",
            {},
            "extra Spark configuration, k=v,k2=v2 (e.g. spark.executor.instances=3)",
            _parse_kv,
            metavar="K=V,...",
        ),
        Spec("log_level", "INFO", "log level: DEBUG | INFO | WARNING | ERROR"),
        # The sidecar exporter.
        Spec("pushgateway", "localhost:9091", "Prometheus Pushgateway address (host:port or URL)"),
        Spec("exporter_port", 9108, "port of the exporter's /metrics and /healthz", _port),
        Spec("exporter_interval", 5.0, "seconds between pushes", _positive_float),
        Spec("stale_after", 60.0, "seconds without query progress after which the scorer counts as down",
             _positive_float),
    ]
}


@dataclass(frozen=True)
class Settings:
    """All settings, resolved once at the entry point and passed down."""

    bootstrap_servers: str = SPECS["bootstrap_servers"].default
    input_topic: str = SPECS["input_topic"].default
    output_topic: str = SPECS["output_topic"].default
    dlq_topic: str = SPECS["dlq_topic"].default
    partitions: int = SPECS["partitions"].default
    kafka_options: Mapping[str, str] = field(default_factory=dict)
    input_format: str = SPECS["input_format"].default
    output_format: str = SPECS["output_format"].default
    schema_registry_url: str = SPECS["schema_registry_url"].default
    schema_registry_user_info: str = SPECS["schema_registry_user_info"].default
    registry_unavailable: str = SPECS["registry_unavailable"].default
    registry_port: int = SPECS["registry_port"].default
    registry_state_dir: str = SPECS["registry_state_dir"].default
    kafka_port: int = SPECS["kafka_port"].default
    kafka_controller_port: int = SPECS["kafka_controller_port"].default
    kafka_state_dir: str = SPECS["kafka_state_dir"].default
    kafka_heap: str = SPECS["kafka_heap"].default
    jvm_dir: str = SPECS["jvm_dir"].default
    model_dir: str = SPECS["model_dir"].default
    data_file: str = SPECS["data_file"].default
    query_name: str = SPECS["query_name"].default
    checkpoint_dir: str = SPECS["checkpoint_dir"].default
    trigger: str = SPECS["trigger"].default
    max_offsets_per_trigger: int = SPECS["max_offsets_per_trigger"].default
    starting_offsets: str = SPECS["starting_offsets"].default
    progress_file: str = SPECS["progress_file"].default
    spark_master: str = SPECS["spark_master"].default
    spark_driver_memory: str = SPECS["spark_driver_memory"].default
    shuffle_partitions: int = SPECS["shuffle_partitions"].default
    spark_conf: Mapping[str, str] = field(default_factory=dict)
    log_level: str = SPECS["log_level"].default
    pushgateway: str = SPECS["pushgateway"].default
    exporter_port: int = SPECS["exporter_port"].default
    exporter_interval: float = SPECS["exporter_interval"].default
    stale_after: float = SPECS["stale_after"].default

    # ---- derived values -------------------------------------------------
    def path(self, value: str) -> Path:
        """Resolve a relative path setting against the project root."""
        p = Path(value)
        return p if p.is_absolute() else PROJECT_ROOT / p

    @property
    def checkpoint_location(self) -> str:
        """``<checkpoint_dir>/<query_name>``; a Hadoop URI is kept as is."""
        base = self.checkpoint_dir
        if "://" in base:
            return base.rstrip("/") + "/" + self.query_name
        return str(self.path(base) / self.query_name)

    @property
    def progress_path(self) -> Path:
        """Where the scorer's progress file lives."""
        if self.progress_file:
            return self.path(self.progress_file)
        location = self.checkpoint_location
        if "://" in location and not location.startswith("file://"):
            return self.path(".run") / f"{self.query_name}.{PROGRESS_FILE}"
        return Path(location.removeprefix("file://")) / PROGRESS_FILE

    @property
    def local_bootstrap(self) -> str:
        """Bootstrap address of the local broker."""
        return f"localhost:{self.kafka_port}"

    def kafka_client_config(self, **extra: Any) -> dict[str, Any]:
        """Options for a confluent-kafka client."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        conf.update(self.kafka_options)
        conf.update(extra)
        return conf

    def spark_kafka_options(self) -> dict[str, str]:
        """``kafka.*`` options for Spark's Kafka source and sink."""
        opts = {"kafka.bootstrap.servers": self.bootstrap_servers}
        opts.update({f"kafka.{k}": str(v) for k, v in self.kafka_options.items()})
        return opts

    def fingerprint(self) -> dict[str, str]:
        """What a checkpoint is bound to: changing any of these breaks it."""
        return {"input_topic": self.input_topic}

    def to_env(self) -> dict[str, str]:
        """The settings as ``HEARTRISK_*`` variables, to hand them to a child process."""
        env = {}
        for name, spec in SPECS.items():
            value = getattr(self, name)
            if isinstance(value, Mapping):
                value = ",".join(f"{k}={v}" for k, v in value.items())
            env[spec.env] = str(value)
        return env

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict, with secrets replaced by ``***``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = {k: (REDACTED if is_secret(k) else v) for k, v in value.items()}
            elif f.name in SPECS and SPECS[f.name].secret and value:
                value = REDACTED
            elif isinstance(value, str) and "://" in value:
                value = redact_url(value)
            out[f.name] = value
        return out

    def __repr__(self) -> str:
        return f"Settings({json.dumps(self.redacted(), sort_keys=True)})"

    __str__ = __repr__


def redact_url(url: str) -> str:
    """``http://user:pass@host/x`` -> ``http://***@host/x``."""
    return re.sub(r"(://)[^/@]+@", r"\1" + REDACTED + "@", url)


def is_secret(key: str) -> bool:
    """Whether an option key names a secret that must never be printed."""
    k = key.lower()
    return any(h in k for h in SECRET_HINTS)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve settings: explicit overrides, then ``HEARTRISK_*`` env vars, then defaults.

    A secret setting may also come from a file named by ``HEARTRISK_<NAME>_FILE``
    (a mounted Kubernetes secret, say); the variable itself wins if both are set.

    Raises:
        ConfigError: an environment variable does not parse; the message names it
            (and never echoes a secret's value).
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, spec in SPECS.items():
        raw = env.get(spec.env)
        source = spec.env
        if (raw is None or raw == "") and spec.secret and env.get(spec.env + "_FILE"):
            source = spec.env + "_FILE"
            try:
                raw = Path(env[source]).read_text().strip()
            except OSError as exc:
                msg = f"{source}: cannot read {env[source]!r}: {exc.strerror}"
                raise ConfigError(msg) from exc
        if raw is not None and raw != "":
            try:
                values[name] = spec.parse(raw)
            except (ValueError, ConfigError) as exc:
                if spec.secret:
                    msg = f"{source} is invalid (its value is secret and not shown): expected {spec.metavar}"
                else:
                    msg = f"{source}={raw!r} is invalid: {exc}"
                raise ConfigError(msg) from exc
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name not in SPECS:
            msg = f"unknown setting {name!r}"
            raise ConfigError(msg)
        values[name] = value
    for name in ("kafka_options", "spark_conf"):
        if name in values:
            values[name] = dict(values[name])
    return Settings(**values)


