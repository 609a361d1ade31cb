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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from stream import spec as sp
from stream.contract.codes import DEFAULT_EVENT_TIME_WINDOW
from stream.credentials import KafkaCredentials
from stream.errors import ConfigError
from stream.paths import PROJECT_ROOT, resolve
from stream.spec import GROUPS, Spec, choice, parse_kv, port, positive_float, positive_int, setting, time_window

__all__ = ["PROJECT_ROOT", "Settings"]

InputFormat = Literal["json", "avro", "auto"]
OutputFormat = Literal["json", "avro"]
RegistryUnavailablePolicy = Literal["pause", "dead-letter"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LogFormat = Literal["text", "json"]
Engine = Literal["compiled", "pipeline"]
ProgressTracking = Literal["async", "sync"]
OnOff = Literal["on", "off"]
DeadLetterPayload = Literal["kept", "hashed", "encrypted"]
Delivery = Literal["at-least-once", "exactly-once"]
PROGRESS_FILE = "heartrisk-progress.json"


@dataclass(frozen=True)
class Settings:
    """All settings, resolved once at the entry point and passed down.

    Each field is the one declaration of a setting: its environment variable,
    flag, ``--help`` text and CLI group all derive from it (``SPECS``).
    """

    # Kafka, for every command that talks to a broker.
    bootstrap_servers: str = setting("localhost:9092", "Kafka bootstrap servers (host:port,...)", "kafka")
    kafka_options: Mapping[str, str] = setting({}, "extra Kafka client options, k=v,k2=v2 (e.g. security.protocol="
                                               "SASL_SSL); passed to Spark as kafka.<k> and to confluent-kafka as is",
                                               "kafka", parse_kv, secret=True, metavar="K=V,...")
    kafka_java_options: Mapping[str, str] = setting(
        {}, "Kafka client options for Spark's Java clients only, k=v,... (passed as kafka.<k>)", "kafka", parse_kv,
        secret=True, metavar="K=V,...")
    kafka_librdkafka_options: Mapping[str, str] = setting(
        {}, "Kafka client options for confluent-kafka (librdkafka) only, k=v,...", "kafka", parse_kv, secret=True,
        metavar="K=V,...")
    broker_wait: float = setting(300.0, "seconds the scorer's Kafka clients wait for a broker that does not answer; "
                                 "then the query stops with one line (exit 4), and a restart loses nothing", "kafka",
                                 positive_float)
    kafka_security_file: str = setting("", "credentials file (JSON: security protocol, SASL user, TLS CA and client "
                                       "certificate), turned into each client's options; see README", "kafka")
    input_topic: str = setting("patient-events", "topic the EHR systems publish patient events to", "topics")
    output_topic: str = setting("risk-predictions", "topic the risk predictions are written to", "topics")
    dlq_topic: str = setting("patient-events-dlq", "dead-letter topic for rejected events", "topics")
    shadow_topic: str = setting("risk-predictions-shadow", "topic the challenger model's shadow scores go to "
                                "(never read by alerting)", "topics")
    commit_topic: str = setting("heartrisk-commits", "compacted topic of --delivery exactly-once's commit markers "
                                "(query id -> last batch committed)", "topics")
    partitions: int = setting(3, "partitions per topic when creating topics", "topics", positive_int)
    # Formats and the schema registry (Confluent wire format for Avro).
    input_format: InputFormat = setting("json", "json | avro (Confluent-framed, schema id from the registry) | auto "
                                        "(first byte 0 = Avro, else JSON)", "formats", choice(*get_args(InputFormat)))
    output_format: OutputFormat = setting("json", "predictions as json | avro (Confluent-framed)", "formats",
                                          choice(*get_args(OutputFormat)))
    schema_registry_url: str = setting("http://localhost:8081/apis/ccompat/v7", "Confluent-compatible schema "
                                       "registry URL (the local one: `heartrisk registry up`)", "formats")
    schema_registry_user_info: str = setting("", "registry basic-auth credentials as user:password (better: the "
                                             "env var, or _FILE)", "formats", secret=True, metavar="USER:PASSWORD")
    registry_unavailable: RegistryUnavailablePolicy = setting("pause", "when a writer schema cannot be fetched: pause "
                                                              "(wait, lose nothing) | dead-letter", "formats",
                                                              choice(*get_args(RegistryUnavailablePolicy)))
    # The local services (`heartrisk kafka ...`, `heartrisk registry ...`).
    registry_port: int = setting(8081, "port of the local schema registry", "local_registry", port)
    registry_state_dir: str = setting(".registry-local", "directory for the local registry's pid file, log and "
                                      "schema storage (H2)", "local_registry")
    kafka_port: int = setting(9092, "port of the local broker's client listener", "local_broker", port)
    kafka_controller_port: int = setting(9093, "port of the local broker's KRaft controller", "local_broker", port)
    kafka_state_dir: str = setting(".kafka-local", "directory for the local broker's data and logs", "local_broker")
    kafka_heap: str = setting("1g", "Java heap of the local broker (-Xmx)", "local_broker")
    cluster_port: int = setting(7077, "port of the local Spark cluster's master", "local_cluster", port)
    cluster_webui_port: int = setting(8090, "port of the local Spark master's web UI (and JSON)", "local_cluster", port)
    cluster_state_dir: str = setting(".spark-cluster", "directory for the local Spark cluster's pids, logs, work dirs",
                                     "local_cluster")
    jvm_dir: str = setting(".jvm", "where `make setup` put the Maven-resolved jars", "general")
    # The model.
    model_dir: str = setting("models/heart_lr", "model directory: a version dir, or its parent with a CURRENT "
                             "pointer", "model")
    data_file: str = setting("data/heart_disease.csv", "the Cleveland data set in event field names", "model")
    model_uri: str = setting("", "the model the scorer serves: models:/heart-risk@champion (the MLflow registry, "
                             "followed while running) | models:/heart-risk/N | a path; empty: --model-dir", "model")
    mlflow_tracking_uri: str = setting("", "MLflow tracking/registry server URI; empty: the local store in "
                                       ".mlflow-local/ (SQLite, no server)", "model")
    model_check_interval: float = setting(30.0, "seconds between the scorer's checks of the registry's aliases",
                                          "model", positive_float)
    engine: Engine = setting("compiled", "scoring engine: compiled (the fitted pipeline as column arithmetic) | "
                             "pipeline (PipelineModel.transform)", "scorer", choice(*get_args(Engine)))
    # The scorer.
    query_name: str = setting("heartrisk-scorer", "streaming query name; also its checkpoint folder name", "scorer")
    checkpoint_dir: str = setting("checkpoints", "parent of the checkpoint folders (any Hadoop path)", "scorer")
    trigger: str = setting("processing-time=250ms", "processing-time=<duration> | available-now | "
                           "real-time[=<checkpoint interval>]", "scorer")
    max_offsets_per_trigger: int = setting(200_000, "cap on events read per micro-batch", "scorer", positive_int)
    warm_up: OnOff = setting("on", "run the plan once on an empty read of the input topic before the stream starts "
                             "(JSON input): on | off", "scorer", choice(*get_args(OnOff)), metavar="on|off")
    progress_tracking: ProgressTracking = setting(
        "async", "how the Kafka sink records progress: async (checkpoint writes off each batch's critical path; after"
        " a crash, batches not yet logged are written again) | sync (two checkpoint writes in every batch)", "scorer",
        choice(*get_args(ProgressTracking)), metavar="async|sync")
    delivery: Delivery = setting(
        "at-least-once", "at-least-once (Spark's Kafka sink; after a crash a batch may be written again) | "
        "exactly-once (each batch in one Kafka transaction with a marker on --commit-topic; consumers read "
        "read_committed)", "scorer", choice(*get_args(Delivery)), metavar="at-least-once|exactly-once")
    starting_offsets: str = setting("earliest", "where a new query starts: earliest | latest | JSON", "scorer")
    field_ranges: Mapping[str, str] = setting({}, "widen or narrow a numeric clinical field's allowed range, "
                                              "Field=lo:hi,... (the event contract's ranges otherwise; e.g. "
                                              "Cholesterol=100:700)", "scorer", parse_kv, metavar="FIELD=LO:HI,...")
    event_time_window: str = setting(DEFAULT_EVENT_TIME_WINDOW, "the plausible event_time: PAST:FUTURE around the "
                                     "time an event is scored (units s, m, h, d), or off; outside it, the dead letter "
                                     "EVENT_TIME_OUT_OF_WINDOW", "scorer", time_window, metavar="PAST:FUTURE")
    lag_group: str = setting("auto", "Kafka consumer group the scorer mirrors its committed offsets to after each "
                             "batch, so Kafka's own tools see its lag (the checkpoint stays the truth): auto (the "
                             "query name) | a group name | off", "scorer")
    progress_file: str = setting("", "progress file the scorer writes and the exporter reads "
                                 "(default: <checkpoint>/heartrisk-progress.json, or .run/ for a remote checkpoint)",
                                 "scorer")
    dead_letter_payload: DeadLetterPayload = setting(
        "kept", "what a dead letter keeps of the original key and value: kept (base64, for replay) | hashed (sha256 "
        "and sizes only) | encrypted (Fernet tokens, for replay with the keys)", "scorer",
        choice(*get_args(DeadLetterPayload)))
    dead_letter_key_file: str = setting("", "Fernet keys for encrypted dead letters, KEY_ID=KEY a line (the first "
                                        "seals, all open); every executor reads it at this path", "scorer")
    drift: OnOff = setting("on", "count each batch's valid events per training bin, for the drift metrics: on | off",
                           "scorer", choice(*get_args(OnOff)), metavar="on|off")
    drift_window: float = setting(3600.0, "seconds of events the drift metrics (PSI, level mix, missing) cover",
                                  "scorer", positive_float)
    spark_master: str = setting("local[*]", "Spark master URL", "spark")
    spark_driver_memory: str = setting("1g", "Spark driver memory", "spark")
    shuffle_partitions: int = setting(4, "spark.sql.shuffle.partitions", "spark", positive_int)
    spark_conf: Mapping[str, str] = setting({}, "extra Spark configuration, k=v,k2=v2 (e.g. "
                                            "spark.executor.instances=3)", "spark", parse_kv, metavar="K=V,...")
    log_level: LogLevel = setting("INFO", "log level: DEBUG | INFO | WARNING | ERROR", "general",
                                  choice(*get_args(LogLevel), upper=True))
    log_format: LogFormat = setting("text", "text | json (one JSON object per line, audit events marked, for a "
                                    "SIEM)", "general", choice(*get_args(LogFormat)), metavar="text|json")
    # The sidecar exporter.
    pushgateway: str = setting("localhost:9091", "Prometheus Pushgateway address (host:port or URL; https:// for "
                               "TLS)", "exporter")
    pushgateway_user_info: str = setting("", "Pushgateway basic-auth credentials as user:password (better: the env "
                                         "var, or _FILE)", "exporter", secret=True, metavar="USER:PASSWORD")
    tls_ca_file: str = setting("", "PEM CA file trusted for https:// registry and Pushgateway URLs (default: the "
                               "system's)", "exporter")
    exporter_port: int = setting(9108, "port of the exporter's /metrics and /healthz", "exporter", port)
    exporter_interval: float = setting(5.0, "seconds between pushes", "exporter", positive_float)
    stale_after: float = setting(60.0, "seconds without query progress after which the scorer counts as down",
                                 "exporter", positive_float)

    # Outcome feedback (`heartrisk feedback`).
    outcomes_topic: str = setting("patient-outcomes", "topic clinicians' confirmed outcomes arrive on", "feedback")
    quality_topic: str = setting("model-quality", "topic the feedback query writes the model's figures to", "feedback")
    feedback_bound: float = setting(7 * 86400.0, "seconds a prediction waits for its outcome (the join's state "
                                    "bound); an outcome later than this is counted as unmatched", "feedback",
                                    positive_float)
    feedback_window: float = setting(86400.0, "seconds of outcomes the reported accuracy, AUC and Brier cover",
                                     "feedback", positive_float)

    # The HTTP service.
    serve_host: str = setting("127.0.0.1", "address `heartrisk serve` listens on (0.0.0.0: all)", "serve")
    serve_port: int = setting(8000, "port `heartrisk serve` listens on", "serve", port)
    serve_batch_max: int = setting(100, "most events in one POST /v1/predict/batch", "serve", positive_int)
    serve_workers: int = setting(1, "server processes (rate limits are per process)", "serve", positive_int)
    serve_auth: Literal["jwt", "off"] = setting("jwt", "jwt | off (laptop only: --dev)", "serve", choice("jwt", "off"))
    serve_max_body: int = setting(4 << 20, "largest request body, bytes (413 above; an event: 1 MiB)", "serve",
                                  positive_int)
    serve_rate: float = setting(200.0, "requests/s each client may make (429 above)", "serve", positive_float)
    serve_burst: int = setting(400, "requests a client may make at once, then its rate", "serve", positive_int)
    serve_reload_interval: float = setting(30.0, "seconds between checks of the model dir's CURRENT pointer",
                                           "serve", positive_float)
    serve_tls_cert: str = setting("", "PEM certificate file: serve HTTPS (with --serve-tls-key)", "serve")
    serve_tls_key: str = setting("", "PEM private key file of --serve-tls-cert", "serve")
    serve_access_log: OnOff = setting("on", "one access-log line per request (method, path, status; never a body): "
                                      "on | off", "serve", choice(*get_args(OnOff)), metavar="on|off")
    jwt_secret_file: str = setting("", "file holding the HS256 secret tokens are signed with", "auth")
    jwt_public_key_file: str = setting("", "PEM file with the RS256 public key tokens are signed with", "auth")
    jwt_jwks_file: str = setting("", "JWKS file (RS256 keys chosen by the token's kid)", "auth")
    jwt_audience: str = setting("heartrisk", "the audience (aud) a token must name", "auth")
    jwt_issuer: str = setting("", "the issuer (iss) a token must name; empty: any", "auth")
    jwt_scope: str = setting("predict", "the scope a token must grant (space-separated scope or scp claim)", "auth")

    # ---- derived values -------------------------------------------------
    def path(self, value: str) -> Path:
        """Resolve a relative path setting (against the repository, or for a wheel: ``stream.paths``)."""
        return resolve(value)

    @property
    def lag_group_id(self) -> str | None:
        """The consumer group that mirrors the committed offsets, or None when off."""
        if self.lag_group == "off":
            return None
        return self.query_name if self.lag_group == "auto" else self.lag_group

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

    def feedback(self) -> Settings:
        """The feedback query's settings: its own name, checkpoint and progress file."""
        return dataclasses.replace(self, query_name=self.query_name + "-feedback", progress_file="")

    @property
    def local_bootstrap(self) -> str:
        """Bootstrap address of the local broker."""
        return f"localhost:{self.kafka_port}"

    def credentials(self) -> KafkaCredentials | None:
        """The credentials file's content, or None."""
        return KafkaCredentials.load(self.path(self.kafka_security_file)) if self.kafka_security_file else None

    def kafka_client_config(self, **extra: Any) -> dict[str, Any]:
        """Options for a confluent-kafka client: the credentials in librdkafka's dialect, then the raw options."""
        creds = self.credentials()
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, **(creds.librdkafka() if creds else {})}
        return {**conf, **self.kafka_options, **self.kafka_librdkafka_options, **extra}

    def spark_kafka_options(self) -> dict[str, str]:
        """``kafka.*`` options for Spark's Kafka source and sink: the credentials in Java's dialect, then the raw."""
        creds = self.credentials()
        wait_ms = int(self.broker_wait * 1000)
        waits = {  # each client call waits at most --broker-wait for a broker that does not answer
            "default.api.timeout.ms": wait_ms, "delivery.timeout.ms": wait_ms,
            "request.timeout.ms": min(30_000, wait_ms // 2),  # the producer needs delivery > linger + request
        }
        opts = {"bootstrap.servers": self.bootstrap_servers, **(creds.java() if creds else {}), **waits,
                **self.kafka_options, **self.kafka_java_options}
        return {f"kafka.{k}": str(v) for k, v in opts.items()}

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
                value = {k: (sp.REDACTED if sp.is_secret(k) else v) for k, v in value.items()}
            elif SPECS[f.name].secret and value:
                value = sp.REDACTED
            elif isinstance(value, str) and "://" in value:
                value = sp.redact_url(value)
            out[f.name] = value
        return out

    def __repr__(self) -> str:
        return f"Settings({json.dumps(self.redacted(), sort_keys=True)})"

    __str__ = __repr__


def _spec(f: dataclasses.Field[Any]) -> Spec:
    default = {} if f.default is dataclasses.MISSING else f.default
    return Spec(name=f.name, default=default, **f.metadata)


SPECS: dict[str, Spec] = {f.name: _spec(f) for f in dataclasses.fields(Settings)}


def settings_in(*groups_or_names: str) -> tuple[str, ...]:
    """Setting names, in declaration order, of the given groups and single settings (no repeats).

    Raises:
        ConfigError: a name is neither a group nor a setting.
    """
    unknown = [g for g in groups_or_names if g not in GROUPS and g not in SPECS]
    if unknown:
        msg = f"unknown settings or groups: {unknown}"
        raise ConfigError(msg)
    return tuple(n for n, s in SPECS.items() if n in groups_or_names or s.group in groups_or_names)


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
        value = spec.from_env(env)
        if value is not None:
            values[name] = value
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name not in SPECS:
            msg = f"unknown setting {name!r}"
            raise ConfigError(msg)
        values[name] = value
    for name, spec in SPECS.items():  # a mapping setting gets its own copy (a caller's dict stays theirs)
        if name in values and isinstance(spec.default, dict):
            values[name] = dict(values[name])
    return Settings(**values)


