"""The local services' commands: ``heartrisk kafka up|down|status|topics`` and ``heartrisk registry up|down|status``."""

from __future__ import annotations

import argparse

from stream.config import Settings


def kafka_up(args: argparse.Namespace, s: Settings) -> int:
    """Start the local broker (idempotent) and show its topics."""
    from stream.local.broker import LocalBroker
    from stream.local.topics import describe_topics

    broker = LocalBroker.from_settings(s)
    started = broker.up(topics=[s.input_topic, s.output_topic, s.dlq_topic])
    print(f"broker {'started' if started else 'already running'} at {broker.bootstrap} (pid {broker.pid()})")
    for t in describe_topics(broker.bootstrap):
        print(f"  topic {t.name}: {t.partitions} partitions, {t.messages} messages")
    return 0


def kafka_down(args: argparse.Namespace, s: Settings) -> int:
    """Stop the local broker."""
    from stream.local.broker import LocalBroker

    stopped = LocalBroker.from_settings(s).down()
    print("broker stopped" if stopped else "no local broker was running")
    return 0


def kafka_status(args: argparse.Namespace, s: Settings) -> int:
    """Show the local broker, its topics and end offsets; exit 1 when it is not running."""
    from stream.local.broker import LocalBroker
    from stream.local.topics import describe_topics

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


def kafka_groups(args: argparse.Namespace, s: Settings) -> int:
    """The broker's own consumer-groups tool: list the groups, or describe one (its offsets and lag)."""
    from stream.local.topics import consumer_groups_tool

    extra = ["--describe", "--group", args.group] if args.group else ["--list"]
    code, out = consumer_groups_tool(s.bootstrap_servers, s.path(s.jvm_dir), *extra)
    print(out.rstrip())
    return code


def kafka_topics(args: argparse.Namespace, s: Settings) -> int:
    """Create the default topics on any broker if missing, then list all topics."""
    from stream.local.topics import describe_topics, ensure_topics

    bootstrap = s.bootstrap_servers
    created = ensure_topics(
        bootstrap, [s.input_topic, s.output_topic, s.dlq_topic], s.partitions, dict(s.kafka_options)
    )
    for name in created:
        print(f"created {name}")
    for t in describe_topics(bootstrap, dict(s.kafka_options)):
        print(f"{t.name}\t{t.partitions}\t{t.messages}")
    return 0


def registry_up(args: argparse.Namespace, s: Settings) -> int:
    """Start the local schema registry (idempotent)."""
    from stream.local.registry_server import LocalRegistry

    reg = LocalRegistry.from_settings(s)
    started = reg.up()
    print(f"schema registry {'started' if started else 'already running'} at {reg.url} (pid {reg.pid()})")
    return 0


def registry_down(args: argparse.Namespace, s: Settings) -> int:
    """Stop the local schema registry."""
    from stream.local.registry_server import LocalRegistry

    stopped = LocalRegistry.from_settings(s).down()
    print("schema registry stopped" if stopped else "no local schema registry was running")
    return 0


def registry_status(args: argparse.Namespace, s: Settings) -> int:
    """Whether the local registry runs and answers; exit 1 when it is not running."""
    from stream.local.registry_server import LocalRegistry

    reg = LocalRegistry.from_settings(s)
    pid = reg.pid()
    if pid is None:
        print(f"schema registry: not running (state dir {reg.state_dir})")
        return 1
    state = "answering" if reg.answers() else "NOT answering"
    print(f"schema registry: running, pid {pid}, {state} at {reg.url}")
    return 0
