"""The local services' commands: ``heartrisk kafka up|down|status|topics`` and ``heartrisk registry up|down|status``."""

from __future__ import annotations

import argparse

from stream.config import Settings
from stream.errors import ConfigError


def kafka_up(args: argparse.Namespace, s: Settings) -> int:
    """Start the local Kafka (idempotent): one broker, or ``--brokers N`` replicated ones; show its topics."""
    from stream.local.kafka_cluster import LocalKafka
    from stream.local.topics import describe_topics

    kafka = LocalKafka.from_settings(s, args.brokers, secure=args.secure)
    started = kafka.up(topics=[s.input_topic, s.output_topic, s.dlq_topic, s.shadow_topic])
    pids = kafka.pids()
    what = "secure broker" if kafka.secure else "broker" if kafka.size == 1 else f"{kafka.size}-broker cluster"
    state = "started" if len(started) == kafka.size else "already running" if not started else (
        f"running (started broker {', '.join(map(str, started))})")
    print(f"{what} {state} at {kafka.bootstrap} (pid {', '.join(str(p) for p in pids.values())})")
    if kafka.secure:
        from stream.local.secure import USERS, SecurityDir, create_acls

        node = kafka.nodes[0]
        acls = create_acls({"bootstrap.servers": kafka.bootstrap, **kafka.admin_conf()}, s)
        sec = SecurityDir(kafka.state_dir)
        print(f"  SASL_SSL (SCRAM-SHA-512) on localhost:{node.port}, mutual TLS on localhost:{node.tls_port}; "
              f"{acls} ACLs; credentials files (HEARTRISK_KAFKA_SECURITY_FILE):")
        for user in USERS:
            print(f"    {user}: {sec.credentials_file(user)} (mutual TLS: {sec.credentials_file(user, True)})")
    for t in describe_topics(kafka.bootstrap, kafka.admin_conf()):
        print(f"  topic {t.name}: {t.partitions} partitions, {t.messages} messages")
    return 0


def kafka_down(args: argparse.Namespace, s: Settings) -> int:
    """Stop the local Kafka: every broker it runs."""
    from stream.local.kafka_cluster import LocalKafka

    kafka = LocalKafka.from_settings(s)
    stopped = kafka.down()
    if not stopped:
        print("no local broker was running")
    elif kafka.size == 1:
        print("broker stopped")
    else:
        print(f"brokers stopped: {', '.join(map(str, stopped))}")
    return 0


def kafka_status(args: argparse.Namespace, s: Settings) -> int:
    """Each local broker and its pid, then topics with end offsets, leaders and in-sync replicas.

    Exits 1 unless every broker runs (the lines say which are down).
    """
    from stream.local.kafka_cluster import LocalKafka
    from stream.local.topics import describe_topics

    kafka = LocalKafka.from_settings(s)
    pids = kafka.pids()
    if not any(pids.values()):
        print(f"broker: not running (state dir {kafka.state_dir})")
        return 1
    for node in kafka.nodes:
        pid = pids[node.node_id]
        state = f"running, pid {pid}" if pid else "DOWN"
        print(f"broker {node.node_id}: {state}, {node.bootstrap}, state {node.state_dir}")
    for t in describe_topics(kafka.bootstrap, kafka.admin_conf()):
        ends = " ".join(f"p{i}={o}" for i, o in enumerate(t.end_offsets))
        print(f"  {t.name}: {t.partitions} partitions, end offsets {ends} (total {t.messages})")
        leaders = " ".join(f"p{i}={'none' if b < 0 else b}" for i, b in enumerate(t.leaders))
        isr = " ".join(f"p{i}={','.join(map(str, r))}" for i, r in enumerate(t.in_sync))
        print(f"    leaders {leaders}; in sync {isr}")
    return 0 if all(pids.values()) else 1


def kafka_groups(args: argparse.Namespace, s: Settings) -> int:
    """The broker's own consumer-groups tool: list the groups, describe one (its offsets and lag), or delete one."""
    from stream.local.topics import consumer_groups_tool

    if args.delete and not args.group:
        msg = "--delete needs --group G (the scorer's group is named after its query)"
        raise ConfigError(msg)
    extra = [("--delete" if args.delete else "--describe"), "--group", args.group] if args.group else ["--list"]
    creds = s.credentials()
    java = {**(creds.java() if creds else {}), **s.kafka_options}
    props = "".join(f"{k}={v}\n" for k, v in java.items())
    code, out = consumer_groups_tool(s.bootstrap_servers, s.path(s.jvm_dir), *extra, client_properties=props)
    print(out.rstrip())
    return code


def kafka_topics(args: argparse.Namespace, s: Settings) -> int:
    """Create the default topics on any broker if missing, then list all topics."""
    from stream.local.topics import COMMIT_TOPIC_CONFIG, describe_topics, ensure_topics

    bootstrap = s.bootstrap_servers
    conf = {k: str(v) for k, v in s.kafka_client_config().items() if k != "bootstrap.servers"}
    created = ensure_topics(bootstrap, [s.input_topic, s.output_topic, s.dlq_topic, s.shadow_topic], s.partitions, conf)
    # --delivery exactly-once's commit markers: a few bytes per query, compacted to the last one
    created += ensure_topics(bootstrap, [s.commit_topic], 1, conf, topic_config=COMMIT_TOPIC_CONFIG)
    for name in created:
        print(f"created {name}")
    for t in describe_topics(bootstrap, conf):
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
