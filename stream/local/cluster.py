"""A local Spark standalone cluster: one master and N workers, from the jars pyspark ships.

``heartrisk cluster up [--workers N] [--worker-cores C] [--worker-memory M] | down |
status`` drive it; ``heartrisk score --spark-master spark://127.0.0.1:<port>`` runs the
scorer on it. Each daemon is ``spark-class org.apache.spark.deploy.{master.Master,
worker.Worker}`` in its own process group, with its pid file and log in the state dir
(``.spark-cluster/`` by default, git-ignored) and each worker's own work dir there, as on
separate machines. Executors get the connectors and the project's function through
``spark.jars`` from the driver, as on a real cluster; the plan runs no Python on them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream.config import Settings
from stream.errors import SetupError
from stream.local.jvm import java_major_version, pyspark_jars_dir
from stream.local.processes import live_pid, port_in_use, stop_recorded, tail

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"


@dataclass(frozen=True)
class LocalCluster:
    """Paths and ports of one local standalone cluster."""

    state_dir: Path
    port: int
    webui_port: int
    daemon_memory: str = "256m"

    @classmethod
    def from_settings(cls, s: Settings) -> LocalCluster:
        """Build from the settings object."""
        return cls(state_dir=s.path(s.cluster_state_dir), port=s.cluster_port, webui_port=s.cluster_webui_port)

    @property
    def url(self) -> str:
        """The master URL for ``--spark-master``."""
        return f"spark://127.0.0.1:{self.port}"

    def pid_file(self, name: str) -> Path:
        """Where a daemon's pid is kept: ``master``, ``worker-1``, ..."""
        return self.state_dir / f"{name}.pid"

    def _is_ours(self, name: str) -> Callable[[int], bool]:
        marker = [MASTER, "--port", str(self.port)] if name == "master" else [WORKER, str(self.state_dir / name)]

        def check(pid: int) -> bool:
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                return False
            return all(m in args for m in marker)

        return check

    def pid(self, name: str) -> int | None:
        """Pid of a daemon of ours if it is alive (a stale pid file is removed)."""
        return live_pid(self.pid_file(name), self._is_ours(name))

    def running_workers(self) -> dict[str, int]:
        """The workers whose processes are alive, name -> pid, in order."""
        pids = {n: self.pid(n) for n in self._worker_names()}
        return {n: p for n, p in pids.items() if p is not None}

    def master_state(self, timeout_s: float = 2.0) -> dict[str, Any] | None:
        """The master's own view (its web UI's JSON): workers, cores, applications; None when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.webui_port}/json/", timeout=timeout_s) as r:
                return dict(json.loads(r.read()))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def alive_workers(self) -> int:
        """Workers the master counts as ALIVE."""
        state = self.master_state() or {}
        return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")

    def _start(self, name: str, cls: str, args: list[str]) -> int:
        spark_home = pyspark_jars_dir().parent
        env = {**os.environ, "SPARK_HOME": str(spark_home), "SPARK_DAEMON_MEMORY": self.daemon_memory,
               "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(self.state_dir)}
        with open(self.state_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [str(spark_home / "bin" / "spark-class"), cls, *args], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.state_dir, env=env,
            )
        self.pid_file(name).write_text(f"{proc.pid}\n")
        logger.info('event="spark daemon starting" daemon="%s" pid=%d', name, proc.pid)
        return proc.pid

    def up(self, workers: int = 2, cores: int = 1, memory: str = "1g", timeout_s: float = START_TIMEOUT_S) -> bool:
        """Start the master and workers 1..N that are not running, and wait until the master counts N alive.

        Returns:
            True when this call started a daemon, False when all were running.

        Raises:
            SetupError: a port is taken by another process, or the cluster did not come up.
        """
        java_major_version()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        started = False
        if self.pid("master") is None:
            for p in (self.port, self.webui_port):
                if port_in_use(p):
                    msg = f"port {p} is already in use by another process: stop it, or choose another with " \
                          "HEARTRISK_CLUSTER_PORT / HEARTRISK_CLUSTER_WEBUI_PORT"
                    raise SetupError(msg)
            self._start("master", MASTER, ["--host", "127.0.0.1", "--port", str(self.port),
                                           "--webui-port", str(self.webui_port)])
            started = True
            self._wait(lambda: self.master_state() is not None, timeout_s, "master")
        for i in range(1, workers + 1):
            name = f"worker-{i}"
            if self.pid(name) is None:
                (self.state_dir / name).mkdir(exist_ok=True)
                self._start(name, WORKER, [self.url, "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory,
                                           "--webui-port", "0", "--work-dir", str(self.state_dir / name)])
                started = True
        self._wait(lambda: self.alive_workers() >= workers, timeout_s, f"{workers} workers")
        return started

    def _wait(self, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [n for n in ("master", *self._worker_names()) if self.pid_file(n).exists() and self.pid(n) is None]
            if dead:
                msg = f"the Spark {dead[0]} exited during start-up; last log lines:\n" \
                      f"{tail(self.state_dir / f'{dead[0]}.log', 15)}"
                raise SetupError(msg)
            time.sleep(0.3)
        msg = f"the local Spark cluster's {what} did not come up within {timeout_s:.0f}s; see {self.state_dir}/*.log"
        raise SetupError(msg)

    def _worker_names(self) -> list[str]:
        """Workers with a pid file, in number order (worker-2 before worker-10)."""
        return sorted((p.stem for p in self.state_dir.glob("worker-*.pid")), key=lambda n: int(n.split("-")[1]))

    def kill_worker(self, name: str) -> int:
        """Kill -9 one worker and its executors (its whole process group), as a machine that fails; returns its pid.

        Raises:
            SetupError: that worker is not running.
        """
        pid = self.pid(name)
        if pid is None:
            msg = f"{name} is not running"
            raise SetupError(msg)
        os.killpg(pid, signal.SIGKILL)
        return pid

    def down(self) -> list[str]:
        """Stop the workers, then the master; returns the names of the daemons stopped."""
        stopped = [n for n in self._worker_names()
                   if stop_recorded(self.pid_file(n), self._is_ours(n), STOP_TIMEOUT_S, n)]
        if stop_recorded(self.pid_file("master"), self._is_ours("master"), STOP_TIMEOUT_S, "master"):
            stopped.append("master")
        return stopped
