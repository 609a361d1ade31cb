"""The local schema registry: Apicurio Registry, which serves the Confluent Schema Registry API.

``heartrisk registry up | down | status`` drive it. It runs from the distribution
``make setup`` unpacked into ``.jvm/registry/`` (Apicurio 3.0.9, the newest that
runs on Java 17). Its storage is an H2 database file in the state directory
(``.registry-local/`` by default, git-ignored), beside its pid file and log, so
schema ids survive a restart of the registry, as a real registry's do. The Confluent API is at
``http://localhost:<port>/apis/ccompat/v7``.
"""

from __future__ import annotations

import logging
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from stream.config import Settings
from stream.errors import RegistryError, SetupError
from stream.local.jvm import java_major_version
from stream.local.processes import live_pid, port_in_use, stop_recorded, tail

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
CCOMPAT_PATH = "/apis/ccompat/v7"


@dataclass(frozen=True)
class LocalRegistry:
    """Paths and port of one local registry."""

    state_dir: Path
    port: int
    jvm_dir: Path
    heap: str = "384m"
    java_options: tuple[str, ...] = ()  # more -D options for Apicurio/Quarkus (an https port, basic auth: tests)

    @classmethod
    def from_settings(cls, s: Settings) -> LocalRegistry:
        """Build from the settings object."""
        return cls(state_dir=s.path(s.registry_state_dir), port=s.registry_port, jvm_dir=s.path(s.jvm_dir))

    @property
    def url(self) -> str:
        """The Confluent-compatible API."""
        return f"http://localhost:{self.port}{CCOMPAT_PATH}"

    @property
    def pid_file(self) -> Path:
        """Where the running registry's pid is kept."""
        return self.state_dir / "registry.pid"

    @property
    def log_file(self) -> Path:
        """The registry's console output."""
        return self.state_dir / "registry.log"

    def runner_jar(self) -> Path:
        """The Quarkus runner jar of the unpacked distribution.

        Raises:
            SetupError: `make setup` has not unpacked it.
        """
        jars = sorted((self.jvm_dir / "registry").glob("apicurio-registry-app-*-runner.jar"))
        if not jars:
            msg = f"no Apicurio Registry in {self.jvm_dir / 'registry'}: run `make setup` first"
            raise SetupError(msg)
        return jars[-1]

    def pid(self) -> int | None:
        """Pid of our registry if it is alive, else None (a stale pid file is removed)."""
        return live_pid(self.pid_file, self._is_ours)

    def _is_ours(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        port_flag = f"-Dquarkus.http.port={self.port}".encode()
        return any(b"apicurio-registry-app" in a for a in cmdline) and port_flag in cmdline

    def answers(self, timeout_s: float = 2.0) -> bool:
        """Whether the Confluent API answers (asking for credentials counts)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}/subjects", timeout=timeout_s) as r:
                return bool(r.status == 200)
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        except (urllib.error.URLError, OSError):
            return False

    def up(self, timeout_s: float = START_TIMEOUT_S) -> bool:
        """Start the registry unless it runs, and wait until its API answers.

        Returns:
            True when this call started it, False when it was already running.

        Raises:
            RegistryError: the port is taken by another process, or the registry did not come up.
        """
        if self.pid() is not None:
            return False
        java_major_version()
        jar = self.runner_jar()
        if port_in_use(self.port):
            msg = (
                f"port {self.port} is already in use by another process: stop it, or choose another "
                "port with HEARTRISK_REGISTRY_PORT (and point HEARTRISK_SCHEMA_REGISTRY_URL at it)"
            )
            raise RegistryError(msg)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            "java", f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            f"-Dquarkus.http.port={self.port}", "-Dquarkus.http.host=127.0.0.1",
            f"-Dapicurio.datasource.url=jdbc:h2:file:{self.state_dir / 'registry-db'}",
            "-Dquarkus.log.level=WARN", "-Dquarkus.log.category.\"io.apicurio\".level=WARN",
            *self.java_options, "-jar", str(jar),
        ]
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=self.state_dir,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        logger.info('event="registry starting" pid=%d url="%s"', proc.pid, self.url)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                msg = (
                    f"the schema registry exited with code {proc.returncode} during start-up; "
                    f"last log lines:\n{tail(self.log_file, 15)}"
                )
                raise RegistryError(msg)
            if self.answers():
                return True
            time.sleep(0.3)
        self.down()
        msg = f"the schema registry did not answer within {timeout_s:.0f}s; see {self.log_file}"
        raise RegistryError(msg)

    def down(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop the registry (SIGTERM, then SIGKILL after the timeout).

        Returns:
            True when a registry was stopped, False when none was running.
        """
        return stop_recorded(self.pid_file, self._is_ours, timeout_s, "registry")
