"""The model's commands: ``heartrisk data convert`` and ``heartrisk train`` (with its report)."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from stream.config import Settings

if TYPE_CHECKING:
    from stream.model.registry import ModelRegistry


Command = Callable[[argparse.Namespace, Settings], int]


def registry_command(command: Command) -> Command:
    """A model command whose MLflow errors (a server down, say) end as one clear line, not a traceback."""
    @functools.wraps(command)
    def run(args: argparse.Namespace, s: Settings) -> int:
        from stream.model.registry import answered, tracking_uri

        with answered(tracking_uri(s)):
            return command(args, s)

    return run


def data_convert(args: argparse.Namespace, s: Settings) -> int:
    """Convert Orange's raw table into the event-field CSV."""
    from pathlib import Path

    from stream.model.dataset import convert_raw, write_csv

    rows = convert_raw(Path(args.raw))
    out = s.path(s.data_file)
    write_csv(rows, out)
    print(f"wrote {len(rows)} patients to {out}")
    return 0


@registry_command
def train_command(args: argparse.Namespace, s: Settings) -> int:
    """Train a new model version and print its metrics and calibration."""
    from datetime import datetime, timezone

    from stream.errors import ModelError
    from stream.model.train import train
    from stream.session import get_spark

    version = args.version or datetime.now(timezone.utc).strftime("%Y.%m.%d-%H%M%S")
    target = s.path(s.model_dir) / version
    if target.exists():
        msg = f"{target} exists already: choose another --version or delete it"
        raise ModelError(msg)
    spark = get_spark(s, "heartrisk-train", with_connectors=False)
    number: int | None = None
    try:
        try:
            meta = train(spark, s.path(s.data_file), s.path(s.model_dir), version, promote=not args.no_promote)
        except FileExistsError as exc:
            raise ModelError(str(exc)) from exc
        if not args.no_register:
            from stream.model.registry import ModelRegistry

            number, _ = ModelRegistry.from_settings(s).register(target, spark)
    finally:
        spark.stop()
    if number is not None:
        print(f"registered as heart-risk version {number} (promote it: heartrisk model promote {number})")
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


def _registry(s: Settings) -> ModelRegistry:
    from stream.model.registry import ModelRegistry

    return ModelRegistry.from_settings(s)




def _when(ts: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@registry_command
def model_import(args: argparse.Namespace, s: Settings) -> int:
    """Register a model directory (default: --model-dir's CURRENT version) in the MLflow registry."""
    from pathlib import Path

    from stream.model.artifact import resolve_model_dir
    from stream.session import get_spark

    path = resolve_model_dir(Path(args.path) if args.path else s.path(s.model_dir))
    registry = _registry(s)
    spark = get_spark(s, "heartrisk-model-import", with_connectors=False)  # for MLflow's Spark flavour
    try:
        number, new = registry.register(path, spark)
    finally:
        spark.stop()
    print(f"{'registered' if new else 'already registered:'} {path} as {registry.name} version {number}")
    if args.champion_if_unset and registry.holder("champion") is None:
        registry.promote(number, "champion")
        print(f"{registry.name} version {number} is now champion")
    return 0


@registry_command
def model_list(args: argparse.Namespace, s: Settings) -> int:
    """Print every registered version with its metrics, aliases and who registered it when."""
    registry = _registry(s)
    versions = registry.versions()
    if not versions:
        print(f"no version of {registry.name} is registered in {registry.uri}: run `heartrisk model import`")
        return 0
    print(f"{'VERSION':>7}  {'MODEL':<20} {'ALIASES':<22} {'CV AUC':>6} {'OOF AUC':>7} {'BRIER':>6}  REGISTERED")
    for v in versions:
        m = v.metrics
        print(f"{v.number:>7}  {v.model_version:<20} {','.join(v.aliases) or '-':<22} {m.get('cv_auc', '-'):>6} "
              f"{m.get('oof_auc', '-'):>7} {m.get('oof_brier', '-'):>6}  {_when(v.created_at)} by {v.registered_by}")
    for alias in ("champion", "challenger"):
        moves = registry.history(alias)
        if moves:
            last = moves[-1]
            print(f"{alias}: last {last['action']} to {last['number']} at {_when(last['at'])} by {last['by']}")
    return 0


@registry_command
def model_show(args: argparse.Namespace, s: Settings) -> int:
    """Print one version: its model.json version, run, metrics, aliases and alias history."""
    import json

    from stream.errors import ModelError

    registry = _registry(s)
    found = [v for v in registry.versions() if v.number == args.number]
    if not found:
        msg = f"{registry.name} has no version {args.number}: see `heartrisk model list`"
        raise ModelError(msg)
    v = found[0]
    print(json.dumps({
        "name": registry.name, "version": v.number, "model_version": v.model_version, "aliases": list(v.aliases),
        "registered_at": _when(v.created_at), "registered_by": v.registered_by, "run_id": v.run_id,
        "metrics": v.metrics, "tracking_uri": registry.uri,
        "history": {a: [e for e in registry.history(a) if e["number"] == v.number] for a in ("champion", "challenger")},
    }, indent=2))
    return 0


@registry_command
def model_promote(args: argparse.Namespace, s: Settings) -> int:
    """Point an alias (champion by default) at a version; the running scorer follows within its check interval."""
    registry = _registry(s)
    previous = registry.promote(args.number, args.alias)
    if previous == args.number:
        print(f"{registry.name} version {args.number} is already {args.alias}")
    else:
        print(f"{registry.name} {args.alias}: {previous if previous is not None else '(unset)'} -> {args.number}")
    return 0


@registry_command
def model_rollback(args: argparse.Namespace, s: Settings) -> int:
    """Move an alias back to the version that held it before."""
    registry = _registry(s)
    was, now = registry.rollback(args.alias)
    print(f"{registry.name} {args.alias}: {was} -> {now} (rolled back)")
    return 0


@registry_command
def model_unalias(args: argparse.Namespace, s: Settings) -> int:
    """Remove an alias (e.g. challenger, to end shadow scoring)."""
    registry = _registry(s)
    held = registry.unset(args.alias)
    print(f"{registry.name} {args.alias}: {'removed from version ' + str(held) if held else 'was not set'}")
    return 0
