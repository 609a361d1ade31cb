"""The ``heartrisk`` command line: one entry point, one subcommand per job; argument wiring only.

Every option has a default and an environment variable, both shown by ``--help``.
Each command names the settings it takes by group or by name (``stream.config``
declares them), and its handler as ``module:function``, imported only when the
command runs, so ``--help`` starts fast and imports no Spark. Errors print one
line saying what to do; ``--verbose`` adds the stack trace.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from stream import __version__
from stream.app.ends import jvm_death
from stream.config import Settings, settings_in
from stream.credentials import librdkafka_refusal
from stream.errors import HeartriskError
from stream.flags import Formatter, add_settings, settings_from_args
from stream.logs import setup_logging

logger = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace, Settings], int]
Option = tuple[tuple[str, ...], dict[str, Any]]

LOCAL_BROKER = ("local_broker", "topics", "jvm_dir")
LOCAL_REGISTRY = ("local_registry", "jvm_dir")
SPARK = ("spark", "jvm_dir", "log_level")
STREAM = ("query_name", "checkpoint_dir", "trigger", "max_offsets_per_trigger", "starting_offsets", "engine",
          "progress_tracking", "delivery", "warm_up", "lag_group", "field_ranges", "event_time_window",
          "dead_letter_payload", "dead_letter_key_file", "drift", "drift_window")


def _new(sub: Any, name: str, help_: str, handler: str, settings: Sequence[str], *options: Option) -> Any:
    """A subcommand: its settings (groups or names), its handler ``module:function``, its own options."""
    p = sub.add_parser(name, help=help_, description=help_, formatter_class=Formatter)
    names = settings_in(*settings)
    names += tuple(extra for has, extra in (("log_level", "log_format"), ("schema_registry_url", "tls_ca_file"))
                   if has in names and extra not in names)
    add_settings(p, names)
    for flags, kwargs in options:
        p.add_argument(*flags, **kwargs)
    p.set_defaults(handler=handler)
    return p


def _group(sub: Any, name: str, help_: str, description: str | None = None) -> Any:
    p = sub.add_parser(name, help=help_, description=description or help_, formatter_class=Formatter)
    return p.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


def _opt(*flags: str, **kwargs: Any) -> Option:
    return flags, kwargs


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = argparse.ArgumentParser(
        prog="heartrisk",
        description=(
            "Real-time heart-disease risk scoring of patient events on Kafka.\n"
            "Every option can also be set by its HEARTRISK_* environment variable."
        ),
        formatter_class=Formatter,
    )
    parser.add_argument("--version", action="version", version=f"heartrisk {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show stack traces and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    svc = "stream.app.services"
    kafka = _group(sub, "kafka", "manage the local KRaft Kafka: one broker, or a replicated cluster",
                   "Manage the local Apache Kafka (KRaft, no ZooKeeper): one broker by default, or\n"
                   "`up --brokers 3` for three replicated ones (topics with 3 replicas, min.insync.replicas=2).")
    _new(kafka, "up", "start the brokers (idempotent) and create the default topics", f"{svc}:kafka_up", LOCAL_BROKER,
         _opt("--brokers", type=int, default=None, metavar="N",
              help="how many brokers (each also a KRaft controller); broker i listens on the ports + 2*(i-1) "
                   "(default: as many as last started here, else 1)"),
         _opt("--secure", action="store_true",
              help="one broker with SASL_SSL (SCRAM-SHA-512) on the port and mutual TLS on the port + 2, a local CA, "
                   "users admin/scorer/producer/operator with ACLs; prints their credentials files"))
    _new(kafka, "down", "stop every local broker cleanly; no process is left behind", f"{svc}:kafka_down",
         LOCAL_BROKER)
    _new(kafka, "status", "print each broker and its pid, then topics: end offsets, leaders, in-sync replicas",
         f"{svc}:kafka_status", LOCAL_BROKER)
    _new(kafka, "topics", "create the default topics on any broker if missing, then list all topics",
         f"{svc}:kafka_topics", ("kafka", "topics"))
    _new(kafka, "groups", "the broker's own kafka-consumer-groups tool: list groups, or --group G for offsets and lag",
         f"{svc}:kafka_groups", ("kafka", "jvm_dir"),
         _opt("--group", default=None,
              help="describe this group (the scorer's is named after its query): offsets and lag"),
         _opt("--delete", action="store_true",
              help="delete --group instead (its members must be gone): a scorer whose checkpoint was deleted on "
                   "purpose then starts over from --starting-offsets"))

    registry = _group(
        sub, "registry", "manage the local schema registry (Apicurio, Confluent-compatible API)",
        "Manage the local Confluent-compatible schema registry (Apicurio Registry, H2 file storage).\n"
        "Its API is at http://localhost:<port>/apis/ccompat/v7, the default HEARTRISK_SCHEMA_REGISTRY_URL.",
    )
    _new(registry, "up", "start the registry (idempotent) and wait until it answers", f"{svc}:registry_up",
         LOCAL_REGISTRY)
    _new(registry, "down", "stop the registry (its schemas stay in its state dir)", f"{svc}:registry_down",
         LOCAL_REGISTRY)
    _new(registry, "status", "whether the registry runs and answers", f"{svc}:registry_status", LOCAL_REGISTRY)

    cluster = _group(sub, "cluster", "manage a local Spark standalone cluster (master + workers)",
                     "Manage a local Spark standalone cluster from pyspark's own jars; then\n"
                     "heartrisk score --spark-master spark://127.0.0.1:<port> runs the scorer on it.")
    _new(cluster, "up", "start the master and workers 1..N (idempotent); wait until the master counts them",
         "stream.app.clustercmd:cluster_up", ("local_cluster", "log_level"),
         _opt("--workers", type=int, default=2, help="workers to run"),
         _opt("--worker-cores", type=int, default=1, help="cores each worker offers"),
         _opt("--worker-memory", default="1g", help="memory each worker offers (its executors' total)"))
    ccmd = "stream.app.clustercmd"
    _new(cluster, "down", "stop the workers (and their executors), then the master", f"{ccmd}:cluster_down",
         ("local_cluster", "log_level"))
    _new(cluster, "status", "the master's view: workers, cores, memory, applications", f"{ccmd}:cluster_status",
         ("local_cluster", "log_level"))

    data = _group(sub, "data", "the Cleveland data set")
    _new(data, "convert", "convert Orange's raw heart_disease.tab into the event-field CSV",
         "stream.app.modelcmd:data_convert", ("data_file",),
         _opt("--raw", default="data/raw/heart_disease.tab", help="the raw Orange table"))
    _new(sub, "train", "train the risk model by 10-fold CV and save a new version", "stream.app.modelcmd:train_command",
         ("model", "spark_master", "spark_driver_memory", "log_level"),
         _opt("--version", default=None, help="version folder name (default: UTC timestamp)"),
         _opt("--no-promote", action="store_true", help="do not point CURRENT at the new version"),
         _opt("--no-register", action="store_true", help="do not register it in the MLflow registry"))
    mcmd, reg = "stream.app.modelcmd", ("mlflow_tracking_uri", "model_dir", "log_level")
    model = _group(sub, "model", "the MLflow model registry: list, show, import, promote, roll back",
                   "The MLflow model registry of heart-risk (local SQLite store in .mlflow-local/, or\n"
                   "HEARTRISK_MLFLOW_TRACKING_URI). A scorer run with --model-uri models:/heart-risk@champion\n"
                   "follows the champion alias, and shadow-scores with the challenger.")
    number = _opt("number", type=int, metavar="VERSION", help="registry version number")
    alias = _opt("--alias", default="champion", choices=("champion", "challenger"), help="which role")
    _new(model, "list", "every version: model.json version, aliases, metrics, who/when", f"{mcmd}:model_list", reg)
    _new(model, "show", "one version as JSON: run, metrics, aliases, its alias history", f"{mcmd}:model_show", reg,
         number)
    _new(model, "import", "register a model directory (default: --model-dir's CURRENT version)",
         f"{mcmd}:model_import", (*reg, "spark_master", "spark_driver_memory"),
         _opt("path", nargs="?", default=None, help="a version directory, or its parent with CURRENT"),
         _opt("--champion-if-unset", action="store_true", help="also make it champion when none is set"))
    _new(model, "promote", "point an alias at a version (a running scorer follows at a batch boundary)",
         f"{mcmd}:model_promote", reg, number, alias)
    _new(model, "rollback", "move an alias back to its previous holder", f"{mcmd}:model_rollback", reg, alias)
    _new(model, "unalias", "remove an alias (challenger: shadow scoring stops)", f"{mcmd}:model_unalias", reg,
         _opt("alias", choices=("champion", "challenger"), help="which role"))

    cmd = "stream.app.commands"
    _new(sub, "run", "the whole product locally: broker, scorer, data-set replay, live predictions until Ctrl-C",
         f"{cmd}:run_command", (*LOCAL_BROKER, "model", *STREAM, *SPARK),
         _opt("--no-replay", action="store_true", help="do not replay the data set; just tail"))
    _new(sub, "score", "run the streaming scorer until SIGINT/SIGTERM (the batch in flight finishes first)",
         f"{cmd}:score_command", ("kafka", "input_topic", "output_topic", "dlq_topic", "shadow_topic", "commit_topic",
                                  "formats", "model_dir", "model_uri", "mlflow_tracking_uri", "model_check_interval",
                                  *STREAM, "progress_file", *SPARK))
    _new(sub, "bench",
         "benchmark on the local broker: throughput, latency (micro-batch and real-time), ceiling, baselines",
         f"{cmd}:bench_command", (*LOCAL_BROKER, "local_registry", "model_dir", "engine", *SPARK, "auth"),
         _opt("--quick", action="store_true", help="scaled-down run (under 3 minutes), as CI runs it"),
         _opt("--formats", action="store_true",
              help="instead: JSON vs Avro events/s (4 pipelines x 3 reps of 200,000 events, ~9 min; "
                   "with --quick: 2 pipelines x 1 rep of 5,000); starts the local registry too"),
         _opt("--serve", action="store_true",
              help="instead: heartrisk serve under Debian's hey (fixed rates, unthrottled, batch) against the "
                   "guide's per-request Spark scoring (~4 min; with --quick: ~1 min)"),
         _opt("--plan", action="store_true",
              help="instead: the scoring plan in memory, step by step and engine by engine, no Kafka "
                   "(200,000 events x 3 reps; with --quick: 20,000 x 1)"),
         _opt("--drift", action="store_true",
              help="instead: the cost of the drift counts, the whole plan with them on and off, in memory "
                   "(200,000 events x 7 alternating reps), then the scorer end to end on the local broker "
                   "(500,000 events x 3; ~8 min in all; with --quick: in memory only, 20,000 x 2)"),
         _opt("--feedback-state", action="store_true",
              help="instead: the feedback join's state (rows, memory, disk) after 1,000,000 predictions with the "
                   "7-day bound, default and RocksDB state stores (~10 min; with --quick: 20,000)"),
         _opt("--cluster", action="store_true",
              help="instead: the scorer on a local Spark cluster of 1 and 2 workers against a Kafka of 1 and 3 "
                   "brokers, all on free ports: events/s, micro-batch p99, CPU per event (200,000 events x 3 "
                   "reps each, ~15 min; with --quick: 20,000 x 1)"),
         _opt("--exactly-once", action="store_true", help="instead: --delivery exactly-once beside at-least-once: "
              "drain 300,000 events, then 2,000 events/s (~5 min; with --quick: 10,000 and 1,000/s)"),
         _opt("--results-dir", default="bench/results", help="where the JSON, Markdown and PNGs go"))
    _new(sub, "serve",
         "the HTTP service: POST /v1/predict gives one event's prediction, the same as the stream's",
         "stream.app.servecmd:serve_command",
         ("serve", "auth", "model_dir", "field_ranges", "event_time_window", "log_level"),
         _opt("--dev", action="store_true",
              help="no authentication (a laptop only; production needs HEARTRISK_JWT_* keys)"))
    _new(sub, "feedback",
         "the feedback query: join clinicians' outcomes to predictions; accuracy, AUC, Brier to model-quality",
         f"{cmd}:feedback_command", ("kafka", "output_topic", "formats", "feedback", "query_name", "checkpoint_dir",
                                     "partitions", *SPARK))
    _new(sub, "outcomes", "publish outcomes for the predictions on the output topic (true labels of the data set)",
         f"{cmd}:outcomes_command", ("kafka", "output_topic", "feedback", "data_file", "schema_registry_url",
                                     "schema_registry_user_info", "log_level"),
         _opt("--share", type=float, default=1.0, help="share of predictions that get an outcome"),
         _opt("--unknown", type=int, default=0, help="also send N outcomes for event ids never scored"),
         _opt("--late", type=int, default=0, help="confirm N outcomes twice the feedback bound in the past"),
         _opt("--seed", type=int, default=7, help="random seed"))
    _new(sub, "exporter",
         "sidecar: push the scorer's throughput, latency and lag to a Pushgateway; serve /metrics, /healthz",
         f"{cmd}:exporter_command", ("query_name", "checkpoint_dir", "progress_file", "exporter", "log_level"))
    _new(sub, "score-batch", "score CSV, JSON-lines or Parquet files with the stream's own code",
         f"{cmd}:score_batch_command", ("model_dir", "engine", "output_topic", "dlq_topic", *SPARK),
         _opt("--input", required=True, help="file or directory to score"),
         _opt("--output", required=True, help="new directory for predictions/ and rejects/"),
         _opt("--format", choices=("csv", "json", "parquet"), default=None,
              help="input format (default: from the file extension)"))
    _new(sub, "produce", "publish patient events: replay the data set or synthesize patients, with progress",
         f"{cmd}:produce_command",
         ("kafka", "input_topic", "model", "schema_registry_url", "schema_registry_user_info", "log_level"),
         _opt("--format", choices=("json", "avro"), default="json",
              help="json, or Confluent-framed Avro via confluent-kafka's AvroSerializer "
                   "(registers the schema under <input topic>-value)"),
         _opt("--schema-version", type=int, default=None,
              help="with --format avro: which schemas/patient_event.v<N>.avsc to write with (default: newest)"),
         _opt("--source", choices=("dataset", "synthetic", "drifted"), default="dataset",
              help="replay data/heart_disease.csv, draw from the model's training distribution (synthetic), "
                   "or draw and shift fields (drifted: see --shift)"),
         _opt("--shift", default=None, metavar="FIELD=DELTA,...",
              help="with --source drifted: add DELTA to these numeric fields (default Blood_Pressure=25)"),
         _opt("--count", type=int, default=None,
              help="events to publish (default: the data set's size, or 1000 synthetic)"),
         _opt("--rate", type=float, default=0.0, help="events per second; 0 = as fast as possible"),
         _opt("--bad-fraction", type=float, default=0.0, help="share of malformed events mixed in, of every kind"),
         _opt("--seed", type=int, default=7, help="random seed for synthetic and bad events"),
         _opt("--quiet", action="store_true", help="no progress lines"))
    _new(sub, "tail", "follow the predictions (or dead letters): one line per record, coloured by risk",
         f"{cmd}:tail_command",
         ("kafka", "output_topic", "dlq_topic", "schema_registry_url", "schema_registry_user_info", "log_level"),
         _opt("--dead-letters", action="store_true", help="follow the dead-letter topic instead"),
         _opt("--risk-level", default=None, help="only these levels, e.g. High or High,Medium"),
         _opt("--patient", default=None, help="only this patient_id"),
         _opt("--json", action="store_true", help="print the records as JSON (control characters escaped; "
              "a dead letter's copy of the original bytes hidden unless --show-payload)"),
         _opt("--show-payload", action="store_true",
              help="with --dead-letters --json: show key_base64/value_base64, the original (patient) data"),
         _opt("--from-beginning", action="store_true", help="start at the oldest record"),
         _opt("--read-uncommitted", action="store_true", help="also show the records of open and aborted "
              "transactions (--delivery exactly-once); default: committed records only"),
         _opt("--max-messages", type=int, default=0, help="stop after this many records; 0 = never"),
         _opt("--idle-timeout", type=float, default=0.0,
              help="stop after this many seconds without a record; 0 = never"))
    ops = "stream.app.opscmd"
    where = ("kafka", "input_topic", "output_topic", "dlq_topic", "query_name", "checkpoint_dir", "progress_file",
             *SPARK)
    _new(sub, "status", "one scorer at a glance: running, last batch, events/s, lag per partition, dead letters",
         f"{ops}:status_command", where,
         _opt("--json", action="store_true", help="one JSON object per refresh"),
         _opt("--watch", type=float, default=0.0, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C"))
    ckpt = _group(sub, "checkpoint", "show or move a query's committed position (its checkpoint)",
                  "Show a query's checkpoint, or move a stopped query to other offsets (with a backup).")
    _new(ckpt, "show", "committed offsets, fingerprint, lag and backups of past resets",
         f"{ops}:checkpoint_show_command", where, _opt("--json", action="store_true", help="print JSON"))
    _new(ckpt, "reset", "move a stopped query to other offsets; the replaced position is backed up",
         f"{ops}:checkpoint_reset_command", where,
         _opt("--to-offsets", default=None, metavar="JSON", help='next offset per partition: {"0": 120, "1": 98}'),
         _opt("--to-time", default=None, metavar="T",
              help="the first offsets at or after T (ISO 8601, e.g. 2026-11-27T10:00:00Z, or epoch ms)"),
         _opt("--to-latest", action="store_true", help="the end of the topic: skip everything not yet read"),
         _opt("--yes", action="store_true", help="do not ask for confirmation"))
    _new(sub, "replay", "send dead letters back to the input topic after the cause is fixed, once each; or "
         "(--from-input) score a range of input records again",
         f"{ops}:replay_command", ("kafka", "input_topic", "dlq_topic", "formats", "model_dir", "engine",
                                  "field_ranges", "event_time_window", "dead_letter_key_file", *SPARK),
         _opt("--code", action="append", metavar="CODE", help="only these error codes (repeat, or comma-separate)"),
         _opt("--since", default=None, metavar="T", help="only letters dead-lettered at or after T (ISO 8601 or ms)"),
         _opt("--until", default=None, metavar="T", help="only letters dead-lettered at or before T"),
         _opt("--partition", type=int, default=None, help="only events from this input partition"),
         _opt("--offsets", default=None, metavar="A-B", help="only events from these input offsets (inclusive)"),
         _opt("--event-id", action="append", metavar="ID", help="only this event id (repeat for more)"),
         _opt("--to-topic", default=None, metavar="TOPIC", help="publish there instead of the input topic"),
         _opt("--dry-run", action="store_true", help="list what would be sent; send nothing"),
         _opt("--force", action="store_true", help="send letters again that were replayed before"),
         _opt("--quiet", action="store_true", help="no progress lines"),
         _opt("--from-input", action="store_true",
              help="instead: input records --partition P --offsets A-B, published again for the running scorer"),
         _opt("--into", default=None, metavar="TOPIC",
              help="with --from-input: score them now (a Spark batch job) into this topic instead"))
    return parser


def resolve_handler(target: str) -> Handler:
    """``module:function`` -> the function (the module is imported now, not at start-up)."""
    module, _, name = target.partition(":")
    handler: Handler = getattr(importlib.import_module(module), name)
    return handler


def _client_options(settings: Settings | None) -> dict[str, Any]:
    """The confluent-kafka options whose secrets an error message must not repeat."""
    try:
        return settings.kafka_client_config() if settings is not None else {}
    except HeartriskError:
        return dict(settings.kafka_options) if settings is not None else {}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``heartrisk``; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = " ".join(str(v) for k, v in sorted(vars(args).items()) if k == "command" or k.endswith("_command"))
    code, audit = 1, logging.DEBUG
    started = time.monotonic()
    settings: Settings | None = None
    try:
        settings = settings_from_args(args)
        setup_logging(settings.log_level, args.verbose, settings.log_format)
        audit = logging.INFO if settings.log_format == "json" else logging.DEBUG  # text: only with --verbose
        logger.log(audit, 'event="command started" command="%s" pid=%d settings=%s', command, os.getpid(),
                   json.dumps(settings.redacted(), default=str, sort_keys=True))
        code = resolve_handler(args.handler)(args, settings)
        return code
    except HeartriskError as exc:
        if args.verbose:
            logger.exception("failed")
        print(f"heartrisk: error: {exc}", file=sys.stderr)
        code = exc.exit_code
        return code
    except Exception as exc:
        refused = librdkafka_refusal(exc, _client_options(settings))
        said = refused or jvm_death(exc)
        if said is None:
            raise
        if args.verbose:
            logger.exception('event="failed" error="%s"', said)  # --verbose: the trace too
        print(f"heartrisk: error: {said}", file=sys.stderr)
        code = 2 if refused else 1
        return code
    except KeyboardInterrupt:
        print("heartrisk: interrupted", file=sys.stderr)
        code = 130
        return code
    finally:
        logger.log(audit, 'event="command finished" command="%s" exit_code=%d seconds=%.1f', command, code,
                   time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())
