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
LOCAL_BROKER = (
    "kafka_port", "kafka_controller_port", "kafka_state_dir", "kafka_heap", "jvm_dir", "partitions",
    *TOPICS,
)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


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
            metavar=spec.metavar or name.split("_")[-1].upper(),
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

    return parser


def setup_logging(level: str, verbose: bool) -> None:
    """Configure handlers once, here."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "kafka", "urllib3"):
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
