"""The model's commands: ``heartrisk data convert`` and ``heartrisk train`` (with its report)."""

from __future__ import annotations

import argparse

from stream.config import Settings


def data_convert(args: argparse.Namespace, s: Settings) -> int:
    """Convert Orange's raw table into the event-field CSV."""
    from pathlib import Path

    from stream.model.dataset import convert_raw, write_csv

    rows = convert_raw(Path(args.raw))
    out = s.path(s.data_file)
    write_csv(rows, out)
    print(f"wrote {len(rows)} patients to {out}")
    return 0


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
