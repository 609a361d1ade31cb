"""The ``heartrisk`` command line: one entry point, one subcommand per job.

Every option has a default and an environment variable, both shown by ``--help``.
Errors print one line saying what to do; ``--verbose`` adds the stack trace.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from stream import __version__
from stream.config import SPECS, Settings, load_settings
from stream.errors import HeartriskError

logger = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace, Settings], int]

KAFKA = ("bootstrap_servers", "kafka_options")
TOPICS = ("input_topic", "output_topic", "dlq_topic")
REGISTRY = ("schema_registry_url", "schema_registry_user_info")
LOCAL_REGISTRY = ("registry_port", "registry_state_dir", "jvm_dir")
LOCAL_BROKER = (
    "kafka_port", "kafka_controller_port", "kafka_state_dir", "kafka_heap", "jvm_dir", "partitions",
    *TOPICS,
)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults, except on settings, whose help already names env var and default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.dest.startswith("setting_") or action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def add_settings(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    """Add one flag per named setting, documenting its env var and default."""
    group = parser.add_argument_group("settings (flag > environment > default)")
    for name in names:
        spec = SPECS[name]
        default = spec.default
        shown = "" if default in ({}, "") else f", default: {default}"
        group.add_argument(
            spec.flag,
            dest=f"setting_{name}",
            type=spec.parse,
            default=None,
            metavar=spec.metavar or ("N" if isinstance(default, int) else name.split("_")[-1].upper()),
            help=f"{spec.help} [env: {spec.env}{shown}]",
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Resolve the settings once, at the entry point."""
    overrides: dict[str, Any] = {
        k.removeprefix("setting_"): v for k, v in vars(args).items() if k.startswith("setting_")
    }
    return load_settings(overrides)


def _new(sub: Any, name: str, help_: str, handler: Handler, settings: Sequence[str]) -> Any:
    p = sub.add_parser(name, help=help_, description=help_, formatter_class=_Formatter)
    add_settings(p, settings)
    p.set_defaults(handler=handler)
    return p


# ---- kafka ----------------------------------------------------------------
def _kafka_up(args: argparse.Namespace, s: Settings) -> int:
    from stream.broker import LocalBroker, describe_topics

    broker = LocalBroker.from_settings(s)
    started = broker.up(topics=[s.input_topic, s.output_topic, s.dlq_topic])
    print(f"broker {'started' if started else 'already running'} at {broker.bootstrap} (pid {broker.pid()})")
    for t in describe_topics(broker.bootstrap):
        print(f"  topic {t.name}: {t.partitions} partitions, {t.messages} messages")
    return 0


def _kafka_down(args: argparse.Namespace, s: Settings) -> int:
    from stream.broker import LocalBroker

    stopped = LocalBroker.from_settings(s).down()
    print("broker stopped" if stopped else "no local broker was running")
    return 0


def _registry_up(args: argparse.Namespace, s: Settings) -> int:
    from stream.registry_server import LocalRegistry

    reg = LocalRegistry.from_settings(s)
    started = reg.up()
    print(f"schema registry {'started' if started else 'already running'} at {reg.url} (pid {reg.pid()})")
    return 0


def _registry_down(args: argparse.Namespace, s: Settings) -> int:
    from stream.registry_server import LocalRegistry

    stopped = LocalRegistry.from_settings(s).down()
    print("schema registry stopped" if stopped else "no local schema registry was running")
    return 0


def _registry_status(args: argparse.Namespace, s: Settings) -> int:
    from stream.registry_server import LocalRegistry

    reg = LocalRegistry.from_settings(s)
    pid = reg.pid()
    if pid is None:
        print(f"schema registry: not running (state dir {reg.state_dir})")
        return 1
    state = "answering" if reg.answers() else "NOT answering"
    print(f"schema registry: running, pid {pid}, {state} at {reg.url}")
    return 0


def _kafka_status(args: argparse.Namespace, s: Settings) -> int:
    from stream.broker import LocalBroker, describe_topics

    broker = LocalBroker.from_settings(s)
    pid = broker.pid()
    if pid is None:
        print(f"broker: not running (state dir {broker.state_dir})")
        return 1
    print(f"broker: running, pid {pid}, bootstrap {broker.bootstrap}, state {broker.state_dir}")
    for t in describe_topics(broker.bootstrap):
        ends = " ".join(f"p{i}={o}" for i, o in enumerate(t.end_offsets))
        print(f"  {t.name}: {t.partitions} partitions, end offsets {ends} (total {t.messages})")
    return 0


def _kafka_topics(args: argparse.Namespace, s: Settings) -> int:
    from stream.broker import describe_topics, ensure_topics

    bootstrap = s.bootstrap_servers
    created = ensure_topics(
        bootstrap, [s.input_topic, s.output_topic, s.dlq_topic], s.partitions, dict(s.kafka_options)
    )
    for name in created:
        print(f"created {name}")
    for t in describe_topics(bootstrap, dict(s.kafka_options)):
        print(f"{t.name}\t{t.partitions}\t{t.messages}")
    return 0


# ---- data and model -------------------------------------------------------
def _data_convert(args: argparse.Namespace, s: Settings) -> int:
    from pathlib import Path

    from stream.dataset import convert_raw, write_csv

    rows = convert_raw(Path(args.raw))
    out = s.path(s.data_file)
    write_csv(rows, out)
    print(f"wrote {len(rows)} patients to {out}")
    return 0


def _train(args: argparse.Namespace, s: Settings) -> int:
    from datetime import datetime, timezone

    from stream.errors import ModelError
    from stream.session import get_spark
    from stream.train import train

    version = args.version or datetime.now(timezone.utc).strftime("%Y.%m.%d-%H%M%S")
    target = s.path(s.model_dir) / version
    if target.exists():
        msg = f"{target} exists already: choose another --version or delete it"
        raise ModelError(msg)
    spark = get_spark(s, "heartrisk-train", with_connectors=False)
    try:
        meta = train(spark, s.path(s.data_file), s.path(s.model_dir), version, promote=not args.no_promote)
    except FileExistsError as exc:
        raise ModelError(str(exc)) from exc
    finally:
        spark.stop()
    m = meta["metrics"]
    t = meta["risk_thresholds"]
    print(
        f"model {meta['version']}: CV AUC {m['cv_auc']}, out-of-fold AUC {m['oof_auc']}, "
        f"accuracy {m['oof_accuracy']}, Brier {m['oof_brier']}; "
        f"thresholds medium={t['medium']} high={t['high']}"
    )
    print("calibration (out-of-fold):  bin          n   mean predicted  observed")
    for row in m["calibration"]:
        mp = "-" if row["mean_predicted"] is None else f"{row['mean_predicted']:.3f}"
        ob = "-" if row["observed_rate"] is None else f"{row['observed_rate']:.3f}"
        band = f"{row['bin_low']:.1f}-{row['bin_high']:.1f}"
        print(f"{'':28}{band}  {row['n']:5d}   {mp:>14}  {ob:>8}")
    return 0


# ---- the scorer and its companions ----------------------------------------
SPARK = ("spark_master", "spark_driver_memory", "shuffle_partitions", "spark_conf", "jvm_dir", "log_level")
SCORER = (
    *KAFKA, *TOPICS, "model_dir", "query_name", "checkpoint_dir", "trigger",
    "max_offsets_per_trigger", "starting_offsets", "progress_file", "input_format", "output_format",
    *REGISTRY, "registry_unavailable", *SPARK,
)


def _score(args: argparse.Namespace, s: Settings) -> int:
    from stream.query import run_scorer

    return run_scorer(s)


def _score_batch(args: argparse.Namespace, s: Settings) -> int:
    from pathlib import Path

    from stream.batch import score_files
    from stream.model import load_model
    from stream.session import get_spark

    spark = get_spark(s, "heartrisk-score-batch")
    try:
        model = load_model(s.path(s.model_dir))
        r = score_files(spark, s, model, Path(args.input), Path(args.output), args.format)
    finally:
        spark.stop()
    print(
        f"scored {r.inputs} rows: {r.predictions} predictions in {r.output / 'predictions'}, "
        f"{r.rejects} rejects in {r.output / 'rejects'}"
    )
    return 0


def _produce(args: argparse.Namespace, s: Settings) -> int:
    from stream.produce import generate, publish

    count = args.count
    if count is None:
        from stream.dataset import read_csv

        count = len(read_csv(s.path(s.data_file))) if args.source == "dataset" else 1000
    if not 0.0 <= args.bad_fraction <= 1.0:
        from stream.errors import ConfigError

        msg = f"--bad-fraction must be within [0, 1], got {args.bad_fraction}"
        raise ConfigError(msg)
    encoder = None
    if args.format == "avro":
        from stream.produce import avro_encoder

        encoder = avro_encoder(s, args.schema_version)
    elif args.schema_version is not None:
        from stream.errors import ConfigError

        msg = "--schema-version applies to --format avro only"
        raise ConfigError(msg)
    events = generate(count, args.source, s, args.bad_fraction, args.seed, encoder=encoder)
    n = publish(events, count, s, rate=args.rate, progress=not args.quiet)
    print(f"published {n} {args.format} events to {s.input_topic}")
    return 0


def _tail(args: argparse.Namespace, s: Settings) -> int:
    from stream.tail import tail

    levels = {lvl.strip().capitalize() for lvl in args.risk_level.split(",")} if args.risk_level else None
    tail(
        s,
        dead_letters=args.dead_letters,
        risk_levels=levels,
        patient=args.patient,
        raw_json=args.json,
        from_beginning=args.from_beginning,
        max_messages=args.max_messages,
        timeout_s=args.idle_timeout,
    )
    return 0


def _exporter(args: argparse.Namespace, s: Settings) -> int:
    from stream.exporter import ExporterConfig, run_exporter

    cfg = ExporterConfig(
        progress_path=s.progress_path,
        pushgateway=s.pushgateway,
        instance=s.query_name,
        interval_s=s.exporter_interval,
        stale_after_s=s.stale_after,
        port=s.exporter_port,
    )
    return run_exporter(cfg)


def _bench(args: argparse.Namespace, s: Settings) -> int:
    from pathlib import Path

    try:
        from bench.run import run_bench
    except ImportError as exc:
        from stream.errors import SetupError

        msg = f"the benchmark needs the dev extras ({exc.name} missing): run `make setup`"
        raise SetupError(msg) from exc
    if args.formats:
        from bench.formats import PIPELINES, QUICK_PIPELINES, run_formats_bench

        pipelines = QUICK_PIPELINES if args.quick else tuple(PIPELINES)
        events, reps = (5_000, 1) if args.quick else (200_000, 3)
        path = run_formats_bench(s, events, reps, pipelines, Path(args.results_dir))
        print(f"results: {path} (+ .md beside it)")
        return 0
    path = run_bench(s, quick=args.quick, results_dir=Path(args.results_dir))
    print(f"results: {path} (+ .md and .png beside it)")
    return 0


def _run(args: argparse.Namespace, s: Settings) -> int:
    from stream.run import run

    return run(s, replay=not args.no_replay)


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = argparse.ArgumentParser(
        prog="heartrisk",
        description=(
            "Real-time heart-disease risk scoring of patient events on Kafka.\n"
            "Every option can also be set by its HEARTRISK_* environment variable."
        ),
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"heartrisk {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show stack traces and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    kafka = sub.add_parser(
        "kafka",
        help="manage the local single-node KRaft broker",
        description="Manage the local single-node Apache Kafka broker (KRaft, no ZooKeeper).",
        formatter_class=_Formatter,
    )
    ksub = kafka.add_subparsers(dest="kafka_command", metavar="ACTION", required=True)
    _new(ksub, "up", "start the broker (idempotent) and create the default topics", _kafka_up, LOCAL_BROKER)
    _new(ksub, "down", "stop the broker cleanly; no process is left behind", _kafka_down, LOCAL_BROKER)
    _new(ksub, "status", "print broker, topics, partitions and end offsets", _kafka_status, LOCAL_BROKER)
    _new(
        ksub,
        "topics",
        "create the default topics on any broker if missing, then list all topics",
        _kafka_topics,
        (*KAFKA, *TOPICS, "partitions"),
    )

    registry = sub.add_parser(
        "registry",
        help="manage the local schema registry (Apicurio, Confluent-compatible API)",
        description=(
            "Manage the local Confluent-compatible schema registry (Apicurio Registry, H2 file storage).\n"
            "Its API is at http://localhost:<port>/apis/ccompat/v7, the default HEARTRISK_SCHEMA_REGISTRY_URL."
        ),
        formatter_class=_Formatter,
    )
    rsub = registry.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    _new(rsub, "up", "start the registry (idempotent) and wait until it answers", _registry_up, LOCAL_REGISTRY)
    _new(rsub, "down", "stop the registry (its schemas stay in its state dir)", _registry_down, LOCAL_REGISTRY)
    _new(rsub, "status", "whether the registry runs and answers", _registry_status, LOCAL_REGISTRY)

    data = sub.add_parser("data", help="the Cleveland data set", formatter_class=_Formatter)
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    conv = _new(
        dsub, "convert", "convert Orange's raw heart_disease.tab into the event-field CSV", _data_convert,
        ("data_file",),
    )
    conv.add_argument("--raw", default="data/raw/heart_disease.tab", help="the raw Orange table")

    tr = _new(
        sub, "train", "train the risk model by 10-fold CV and save a new version", _train,
        ("data_file", "model_dir", "spark_master", "spark_driver_memory", "log_level"),
    )
    tr.add_argument("--version", default=None, help="version folder name (default: UTC timestamp)")
    tr.add_argument("--no-promote", action="store_true", help="do not point CURRENT at the new version")
    rn = _new(
        sub, "run",
        "the whole product locally: broker, scorer, data-set replay, live predictions until Ctrl-C",
        _run,
        (
            *LOCAL_BROKER, "data_file", "model_dir", "query_name", "checkpoint_dir", "trigger",
            "max_offsets_per_trigger", "starting_offsets",
            *(n for n in SPARK if n not in LOCAL_BROKER),
        ),
    )
    rn.add_argument("--no-replay", action="store_true", help="do not replay the data set; just tail")
    _new(
        sub, "score",
        "run the streaming scorer until SIGINT/SIGTERM (the batch in flight finishes first)",
        _score, SCORER,
    )
    bn = _new(
        sub, "bench",
        "benchmark on the local broker: throughput, latency (micro-batch and real-time), ceiling, baselines",
        _bench, (*LOCAL_BROKER, *LOCAL_REGISTRY[:2], "model_dir", *(n for n in SPARK if n not in LOCAL_BROKER)),
    )
    bn.add_argument("--quick", action="store_true", help="scaled-down run (under 3 minutes), as CI runs it")
    bn.add_argument("--formats", action="store_true",
                    help="instead: JSON vs Avro events/s (4 pipelines x 3 reps of 200,000 events, ~9 min; "
                         "with --quick: 2 pipelines x 1 rep of 5,000); starts the local registry too")
    bn.add_argument("--results-dir", default="bench/results", help="where the JSON, Markdown and PNGs go")
    _new(
        sub, "exporter",
        "sidecar: push the scorer's throughput, latency and lag to a Pushgateway; serve /metrics, /healthz",
        _exporter,
        ("query_name", "checkpoint_dir", "progress_file", "pushgateway", "exporter_port", "exporter_interval",
         "stale_after", "log_level"),
    )
    sb = _new(
        sub, "score-batch",
        "score CSV, JSON-lines or Parquet files with the stream's own code",
        _score_batch, ("model_dir", "output_topic", "dlq_topic", *SPARK),
    )
    sb.add_argument("--input", required=True, help="file or directory to score")
    sb.add_argument("--output", required=True, help="new directory for predictions/ and rejects/")
    sb.add_argument("--format", choices=("csv", "json", "parquet"), default=None,
                    help="input format (default: from the file extension)")

    pr = _new(
        sub, "produce",
        "publish patient events: replay the data set or synthesize patients, with progress",
        _produce, (*KAFKA, "input_topic", "data_file", "model_dir", *REGISTRY, "log_level"),
    )
    pr.add_argument("--format", choices=("json", "avro"), default="json",
                    help="json, or Confluent-framed Avro via confluent-kafka's AvroSerializer "
                         "(registers the schema under <input topic>-value)")
    pr.add_argument("--schema-version", type=int, default=None,
                    help="with --format avro: which schemas/patient_event.v<N>.avsc to write with (default: newest)")
    pr.add_argument("--source", choices=("dataset", "synthetic"), default="dataset",
                    help="replay data/heart_disease.csv, or draw from the model's training distribution")
    pr.add_argument("--count", type=int, default=None,
                    help="events to publish (default: the data set's size, or 1000 synthetic)")
    pr.add_argument("--rate", type=float, default=0.0, help="events per second; 0 = as fast as possible")
    pr.add_argument("--bad-fraction", type=float, default=0.0,
                    help="share of malformed events mixed in, of every rejected kind")
    pr.add_argument("--seed", type=int, default=7, help="random seed for synthetic and bad events")
    pr.add_argument("--quiet", action="store_true", help="no progress lines")

    tl = _new(
        sub, "tail", "follow the predictions (or dead letters): one line per record, coloured by risk",
        _tail, (*KAFKA, "output_topic", "dlq_topic", *REGISTRY, "log_level"),
    )
    tl.add_argument("--dead-letters", action="store_true", help="follow the dead-letter topic instead")
    tl.add_argument("--risk-level", default=None, help="only these levels, e.g. High or High,Medium")
    tl.add_argument("--patient", default=None, help="only this patient_id")
    tl.add_argument("--json", action="store_true", help="print the records unchanged")
    tl.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    tl.add_argument("--max-messages", type=int, default=0, help="stop after this many records; 0 = never")
    tl.add_argument("--idle-timeout", type=float, default=0.0,
                    help="stop after this many seconds without a record; 0 = never")
    return parser


def setup_logging(level: str, verbose: bool) -> None:
    """Configure handlers once, here."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "kafka", "urllib3", "httpx", "httpx2", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``heartrisk``; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
        setup_logging(settings.log_level, args.verbose)
        handler: Handler = args.handler
        return handler(args, settings)
    except HeartriskError as exc:
        if args.verbose:
            logger.exception("failed")
        print(f"heartrisk: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("heartrisk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
