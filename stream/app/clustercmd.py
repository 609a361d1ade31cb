"""``heartrisk cluster up | down | status``: the local Spark standalone cluster (``stream.local.cluster``)."""

from __future__ import annotations

import argparse

from stream.config import Settings
from stream.errors import ConfigError
from stream.local.cluster import LocalCluster


def cluster_up(args: argparse.Namespace, s: Settings) -> int:
    """Start the master and the workers that are not running."""
    if args.workers < 1 or args.worker_cores < 1:
        msg = "--workers and --worker-cores must be at least 1"
        raise ConfigError(msg)
    c = LocalCluster.from_settings(s)
    started = c.up(args.workers, args.worker_cores, args.worker_memory)
    print(f"spark cluster {'started' if started else 'already running'}: {c.url} with "
          f"{c.alive_workers()} alive workers (web UI http://127.0.0.1:{c.webui_port})")
    print(f"run the scorer on it: heartrisk score --spark-master {c.url}")
    return 0


def cluster_down(args: argparse.Namespace, s: Settings) -> int:
    """Stop the workers (and their executors), then the master."""
    stopped = LocalCluster.from_settings(s).down()
    print(f"stopped: {', '.join(stopped)}" if stopped else "no local spark cluster was running")
    return 0


def cluster_status(args: argparse.Namespace, s: Settings) -> int:
    """The master's view; exit 1 when the master is not running."""
    c = LocalCluster.from_settings(s)
    pid = c.pid("master")
    if pid is None:
        print(f"spark cluster: not running (state dir {c.state_dir})")
        return 1
    state = c.master_state() or {}
    print(f"master: pid {pid}, {c.url}, {state.get('status', 'NOT answering')}")
    pids = c.running_workers()
    for w in state.get("workers", []):
        print(f"  worker {w.get('host')}:{w.get('port')}  {w.get('state')}  cores {w.get('coresused')}/"
              f"{w.get('cores')}  memory {w.get('memoryused')}/{w.get('memory')} MiB")
    print(f"  worker processes: {', '.join(f'{n} (pid {p})' for n, p in pids.items()) or 'none'}")
    for app in state.get("activeapps", []):
        print(f"  application {app.get('id')} {app.get('name')}: {app.get('cores')} cores, {app.get('state')}")
    return 0
