"""The thin commands: each turns its arguments into a call, and prints the outcome.

``heartrisk score``, ``score-batch``, ``produce``, ``tail``, ``exporter``,
``bench`` and ``run``. Their work lives in the module named after each.
"""

from __future__ import annotations

import argparse

from stream.config import Settings


def score_command(args: argparse.Namespace, s: Settings) -> int:
    """Run the streaming scorer until a signal or a failure."""
    from stream.app.lifecycle import run_scorer

    return run_scorer(s)


def score_batch_command(args: argparse.Namespace, s: Settings) -> int:
    """Score files with the stream's own code."""
    from pathlib import Path

    from stream.app.batch import score_files
    from stream.model.artifact import load_model
    from stream.session import get_spark

    spark = get_spark(s, "heartrisk-score-batch")
    try:
        model = load_model(s.path(s.model_dir), engine=s.engine)
        r = score_files(spark, s, model, Path(args.input), Path(args.output), args.format)
    finally:
        spark.stop()
    print(
        f"scored {r.inputs} rows: {r.predictions} predictions in {r.output / 'predictions'}, "
        f"{r.rejects} rejects in {r.output / 'rejects'}"
    )
    return 0


def produce_command(args: argparse.Namespace, s: Settings) -> int:
    """Publish patient events, with progress."""
    from stream.app.produce import generate, publish
    from stream.local.topics import usable_broker_topics

    usable_broker_topics(s.bootstrap_servers, s.kafka_client_config())  # one clear line, not a timeout

    count = args.count
    if count is None:
        from stream.model.dataset import read_csv

        count = len(read_csv(s.path(s.data_file))) if args.source == "dataset" else 1000
    if not 0.0 <= args.bad_fraction <= 1.0:
        from stream.errors import ConfigError

        msg = f"--bad-fraction must be within [0, 1], got {args.bad_fraction}"
        raise ConfigError(msg)
    encoder = None
    if args.format == "avro":
        from stream.app.produce import avro_encoder

        encoder = avro_encoder(s, args.schema_version)
    elif args.schema_version is not None:
        from stream.errors import ConfigError

        msg = "--schema-version applies to --format avro only"
        raise ConfigError(msg)
    shift = None
    if args.shift is not None:
        from stream.errors import ConfigError
        from stream.spec import parse_kv

        if args.source != "drifted":
            msg = "--shift applies to --source drifted only"
            raise ConfigError(msg)
        try:
            shift = {k: float(v) for k, v in parse_kv(args.shift).items()}
        except ValueError as exc:
            msg = f"--shift {args.shift!r}: expected FIELD=DELTA,... with numbers, e.g. Blood_Pressure=25"
            raise ConfigError(msg) from exc
    events = generate(count, args.source, s, args.bad_fraction, args.seed, encoder=encoder, shift=shift)
    n = publish(events, count, s, rate=args.rate, progress=not args.quiet)
    print(f"published {n} {args.format} events to {s.input_topic}")
    return 0


def tail_command(args: argparse.Namespace, s: Settings) -> int:
    """Follow the predictions or dead letters."""
    from stream.app.tail import tail
    from stream.local.topics import usable_broker_topics

    usable_broker_topics(s.bootstrap_servers, s.kafka_client_config())  # one clear line, not a silent wait

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
        show_payload=args.show_payload,
        read_committed=not args.read_uncommitted,
    )
    return 0


def exporter_command(args: argparse.Namespace, s: Settings) -> int:
    """Run the sidecar exporter."""
    from stream.monitor.exporter import ExporterConfig, run_exporter

    cfg = ExporterConfig(
        progress_path=s.progress_path,
        pushgateway=s.pushgateway,
        instance=s.query_name,
        interval_s=s.exporter_interval,
        stale_after_s=s.stale_after,
        port=s.exporter_port,
        feedback_path=s.feedback().progress_path,
        user_info=s.pushgateway_user_info,
        ca_file=str(s.path(s.tls_ca_file)) if s.tls_ca_file else "",
    )
    return run_exporter(cfg)


def bench_command(args: argparse.Namespace, s: Settings) -> int:
    """Run the benchmark (or the formats benchmark)."""
    from pathlib import Path

    try:
        from stream.bench.run import run_bench
    except ImportError as exc:
        from stream.errors import SetupError

        msg = f"the benchmark needs the dev extras ({exc.name} missing): run `make setup`"
        raise SetupError(msg) from exc
    if args.feedback_state:
        import tempfile

        from stream.bench.feedback_state import run_feedback_state_bench

        work = Path(tempfile.mkdtemp(prefix="heartrisk-bench-feedback-"))
        path = run_feedback_state_bench(s, 20_000 if args.quick else 1_000_000, Path(args.results_dir), work)
        print(f"results: {path} (+ .md beside it)")
        return 0
    if args.exactly_once:
        from stream.bench.exactly_once import run_exactly_once_bench

        events, rate = (10_000, 1_000) if args.quick else (300_000, 2_000)
        path = run_exactly_once_bench(s, events, rate, Path(args.results_dir), args.quick)
        print(f"results: {path} (+ .md beside it)")
        return 0
    if args.cluster:
        from stream.bench.cluster import run_cluster_bench

        n, reps, max_offsets = (20_000, 1, 5_000) if args.quick else (200_000, 3, 20_000)
        path = run_cluster_bench(s, n, reps, max_offsets, Path(args.results_dir))
        print(f"results: {path} (+ .md beside it)")
        return 0
    if args.drift:
        from stream.bench.drift import run_drift_bench

        events, reps = (20_000, 2) if args.quick else (200_000, 7)
        kafka_events, kafka_reps = (0, 0) if args.quick else (500_000, 3)
        path = run_drift_bench(s, events, reps, Path(args.results_dir), kafka_events, kafka_reps)
        print(f"results: {path} (+ .md beside it)")
        return 0
    if args.plan:
        from stream.bench.plan import run_plan_bench

        events, reps = (20_000, 1) if args.quick else (200_000, 3)
        path = run_plan_bench(s, events, reps, Path(args.results_dir))
        print(f"results: {path} (+ .md beside it)")
        return 0
    if args.serve:
        from stream.bench.serve import run_serve_bench

        path = run_serve_bench(s, args.quick, 1 if args.quick else 3, Path(args.results_dir))
        print(f"results: {path} (+ .md beside it)")
        return 0
    if args.formats:
        from stream.bench.formats import PIPELINES, QUICK_PIPELINES, run_formats_bench

        pipelines = QUICK_PIPELINES if args.quick else tuple(PIPELINES)
        events, reps = (5_000, 1) if args.quick else (200_000, 3)
        path = run_formats_bench(s, events, reps, pipelines, Path(args.results_dir))
        print(f"results: {path} (+ .md beside it)")
        return 0
    path = run_bench(s, quick=args.quick, results_dir=Path(args.results_dir))
    print(f"results: {path} (+ .md and .png beside it)")
    return 0


def run_command(args: argparse.Namespace, s: Settings) -> int:
    """The whole product locally until Ctrl-C."""
    from stream.app.run import run

    return run(s, replay=not args.no_replay)


def feedback_command(args: argparse.Namespace, s: Settings) -> int:
    """Run the feedback query: outcomes joined to predictions, the model's figures out."""
    from stream.app.feedback import run_feedback

    return run_feedback(s)


def outcomes_command(args: argparse.Namespace, s: Settings) -> int:
    """Publish outcomes for the predictions on the output topic."""
    from stream.app.outcomes import publish_outcomes
    from stream.errors import ConfigError

    if not 0.0 <= args.share <= 1.0 or args.unknown < 0 or args.late < 0:
        msg = "--share must be within [0, 1]; --unknown and --late at least 0"
        raise ConfigError(msg)
    seen, n = publish_outcomes(s, share=args.share, unknown=args.unknown, late=args.late, seed=args.seed)
    print(f"published {n} outcomes to {s.outcomes_topic} for {seen} predictions on {s.output_topic}")
    return 0
