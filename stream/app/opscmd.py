"""The operators' commands: ``heartrisk status`` and ``heartrisk checkpoint show | reset``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from stream.config import Settings


def _spark_for(s: Settings, what: str) -> Any:
    """A Spark session only for a checkpoint that is not on the local disk (HDFS, S3 ...)."""
    from stream.app.checkpoint_log import is_local

    if is_local(s.checkpoint_location):
        return None
    from stream.session import get_spark

    return get_spark(s, f"heartrisk-{what}")


def status_command(args: argparse.Namespace, s: Settings) -> int:
    """One scorer at a glance."""
    from stream.app.status import show_status

    spark = _spark_for(s, "status")
    try:
        return show_status(s, as_json=args.json, watch=args.watch, spark=spark)
    finally:
        if spark is not None:
            spark.stop()


def checkpoint_show_command(args: argparse.Namespace, s: Settings) -> int:
    """The committed offsets, the fingerprint, the last batch, the lag and the backups of past resets."""
    from stream.app.checkpoint import fingerprint_of
    from stream.app.checkpoint_log import open_log
    from stream.app.checkpoint_reset import BACKUPS
    from stream.app.status import gather

    spark = _spark_for(s, "checkpoint")
    try:
        files = open_log(s.checkpoint_location, spark)
        st = gather(s, spark)
        fingerprint = fingerprint_of(files)
        backups = files.names(BACKUPS)
    finally:
        if spark is not None:
            spark.stop()
    shown = {"checkpoint": s.checkpoint_location, "fingerprint": fingerprint, "committed": st["committed"],
             "end_offsets": st["end_offsets"], "lag": st["lag"], "last_batch": st["last_batch"],
             "running": st["running"], "reset_backups": backups}
    if args.json:
        print(json.dumps(shown, sort_keys=True))
        return 0
    print(f"checkpoint {s.checkpoint_location}")
    print(f"  fingerprint: {json.dumps(fingerprint) if fingerprint else 'none (never started)'}")
    c = st["committed"]
    if c is None:
        print("  committed: nothing yet (a new query starts from --starting-offsets)")
    else:
        print(f"  committed batch: {c['batch_id'] if c['batch_id'] is not None else '- (start position)'}")
        print("  committed offsets: " + ", ".join(f"p{p} {o:,}" for p, o in c["offsets"].items()))
    if st["lag"] is not None:
        print(f"  lag: {st['lag']['total']:,}")
    print(f"  scorer: {'running' if st['running'] else 'not running'}")
    if backups:
        print("  backups of past resets: " + ", ".join(backups))
    return 0


def checkpoint_reset_command(args: argparse.Namespace, s: Settings) -> int:
    """Move a stopped query to other offsets, with a backup of the position it replaces."""
    from stream.app.checkpoint_log import open_log
    from stream.app.checkpoint_reset import reset, target_offsets
    from stream.app.status import is_running
    from stream.monitor.progress import read_progress

    offsets = target_offsets(s, args.to_offsets, args.to_time, args.to_latest)

    def confirm(question: str) -> bool:
        if args.yes:
            return True
        if not sys.stdin.isatty():
            print("heartrisk: refusing to reset without a terminal to confirm on: add --yes", file=sys.stderr)
            return False
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")

    spark = _spark_for(s, "checkpoint")
    try:
        done = reset(open_log(s.checkpoint_location, spark), s.input_topic, offsets,
                     is_running(read_progress(s.progress_path)), confirm)
    finally:
        if spark is not None:
            spark.stop()
    if done is None:
        print("not reset")
        return 1
    moves = ", ".join(f"p{p} {done.before.get(p, '?')} -> {o}" for p, o in sorted(done.after.items()))
    print(f"reset {s.input_topic} as committed batch {done.batch_id}: {moves}")
    print(f"backup of the replaced position: {s.checkpoint_location}/{done.backup}")
    print("start the scorer: it reads from the new offsets")
    return 0


def _offset_range(text: str | None) -> tuple[int, int] | None:
    from stream.errors import ConfigError

    if text is None:
        return None
    try:
        a, b = (int(x) for x in text.split("-", 1))
    except ValueError as exc:
        msg = f"--offsets {text!r}: give A-B, e.g. 120-480 (inclusive)"
        raise ConfigError(msg) from exc
    return a, b


def replay_command(args: argparse.Namespace, s: Settings) -> int:
    """Send matching dead letters back to the input topic, once each."""
    from stream.app.checkpoint_reset import parse_time
    from stream.app.produce import Progress
    from stream.app.replay import Filters, replay
    from stream.contract.codes import ERROR_CODES
    from stream.errors import ConfigError

    if args.from_input:
        return _replay_input(args, s)
    codes = frozenset(c.strip() for c in ",".join(args.code or []).split(",") if c.strip())
    unknown = sorted(codes - set(ERROR_CODES))
    if unknown:
        msg = f"--code {', '.join(unknown)}: not a dead-letter code (one of {', '.join(sorted(ERROR_CODES))})"
        raise ConfigError(msg)
    filters = Filters(
        codes=codes,
        since_ms=parse_time(args.since) if args.since else None,
        until_ms=parse_time(args.until) if args.until else None,
        partition=args.partition, offsets=_offset_range(args.offsets),
        event_ids=frozenset(args.event_id or []),
    )
    bar = Progress(0, "replayed", enabled=not args.quiet)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done, force=done == total)

    r = replay(s, filters, dry_run=args.dry_run, force=args.force, to_topic=args.to_topic, progress=progress)
    for line in r.listed:
        print(line)
    codes_seen = ", ".join(f"{c} {n}" for c, n in sorted(r.by_code.items())) or "none"
    verb = "would send" if args.dry_run else "sent"
    print(
        f"{r.matched} dead letters matched: {verb} {len(r.listed) if args.dry_run else r.sent} ({codes_seen}), "
        f"{r.already_replayed} already replayed (--force sends them again), {r.not_replayable} not replayable "
        f"(value truncated)", file=sys.stderr,
    )
    return 0


def _replay_input(args: argparse.Namespace, s: Settings) -> int:
    """``replay --from-input``: a range of input records scored again."""
    from stream.app.produce import Progress
    from stream.app.rescore import InputRange, republish_input, rescore_input
    from stream.errors import ConfigError

    rng_ = _offset_range(args.offsets)
    if args.partition is None or rng_ is None or args.code or args.event_id or args.since or args.until:
        msg = "--from-input takes --partition P and --offsets A-B (and no dead-letter filters)"
        raise ConfigError(msg)
    rng = InputRange(args.partition, *rng_)
    if args.dry_run:
        print(f"would score again {s.input_topic}[{rng.partition}] offsets {rng.first}-{rng.last} "
              f"({rng.last - rng.first + 1} records)", file=sys.stderr)
        return 0
    if args.into:
        from stream.model.artifact import load_model
        from stream.session import get_spark

        spark = get_spark(s, "heartrisk-replay")
        try:
            model = load_model(s.path(s.model_dir), engine=s.engine)
            n = rescore_input(spark, s, model, rng, args.into)
        finally:
            spark.stop()
        print(f"scored {n} records of {s.input_topic}[{rng.partition}] {rng.first}-{rng.last} into "
              f"{args.into} (dead letters to {s.dlq_topic})", file=sys.stderr)
        return 0
    bar = Progress(rng.last - rng.first + 1, "republished", enabled=not args.quiet)
    n = republish_input(s, rng, args.to_topic, progress=lambda d, t: bar.update(d, force=d == t))
    print(f"published {n} records of {s.input_topic}[{rng.partition}] {rng.first}-{rng.last} again to "
          f"{args.to_topic or s.input_topic}: the running scorer scores them with the model it serves",
          file=sys.stderr)
    return 0
