"""One local Apache Kafka node (KRaft: broker and controller in one JVM).

Alone it is the default local broker; ``stream.local.kafka_cluster`` runs N of
them as one replicated cluster. ``heartrisk kafka up | down | status | topics``
drive it. It runs from the jars that ``make setup`` resolved into ``.jvm/kafka/``
and keeps its data, logs and pid file in its state directory (``.kafka-local/``
by default, git-ignored).
"""

from __future__ import annotations

import base64
import logging
import subprocess
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from stream.config import Settings
from stream.errors import BrokerError
from stream.local.jvm import classpath_jars, java_major_version
from stream.local.processes import live_pid, port_in_use, stop_recorded, tail
from stream.local.secure import SecurityDir
from stream.local.topics import ensure_topics

__all__ = ["LocalBroker", "port_in_use", "tail"]

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRefs = stdout
rootLogger.appenderRef.stdout.ref = STDOUT
logger.server.name = kafka.server.BrokerServer
logger.server.level = info
logger.ctrl.name = kafka.server.ControllerServer
logger.ctrl.level = info
"""


@dataclass(frozen=True)
class LocalBroker:
    """Paths and ports of one local broker (a node of a cluster when ``voters`` names others)."""

    state_dir: Path
    port: int
    controller_port: int
    jvm_dir: Path
    heap: str = "1g"
    default_partitions: int = 3
    node_id: int = 1
    # every controller of the quorum as (node id, controller port); () = this node alone
    voters: tuple[tuple[int, int], ...] = ()
    # `kafka up --secure`: SASL_SSL on ``port``, mutual TLS on ``tls_port`` (stream.local.secure)
    secure: bool = False
    tls_port: int = 0

    @classmethod
    def from_settings(cls, s: Settings) -> LocalBroker:
        """Build from the settings object."""
        return cls(
            state_dir=s.path(s.kafka_state_dir),
            port=s.kafka_port,
            controller_port=s.kafka_controller_port,
            jvm_dir=s.path(s.jvm_dir),
            heap=s.kafka_heap,
            default_partitions=s.partitions,
        )

    @property
    def bootstrap(self) -> str:
        """Client address."""
        return f"localhost:{self.port}"

    @property
    def pid_file(self) -> Path:
        """Where the running broker's pid is kept."""
        return self.state_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        """The broker's console output."""
        return self.state_dir / "broker.log"

    @property
    def data_dir(self) -> Path:
        """KRaft metadata and topic data."""
        return self.state_dir / "data"

    @property
    def config_file(self) -> Path:
        """Generated server.properties."""
        return self.state_dir / "server.properties"

    # ---- process state -------------------------------------------------
    def pid(self) -> int | None:
        """Pid of our broker if it is alive, else None (a stale pid file is removed)."""
        return live_pid(self.pid_file, self._is_ours)

    def _is_ours(self, pid: int) -> bool:
        return is_our_broker(pid, self.config_file)

    @property
    def replication(self) -> int:
        """Replicas of the internal and default topics: 3 on a cluster of 3 or more, else one per node."""
        return min(3, len(self.voters) or 1)

    def server_properties(self) -> str:
        """The node's configuration: KRaft combined mode, loopback only, replicated as the quorum allows."""
        rf = self.replication
        min_isr = 2 if rf >= 3 else 1
        voters = ",".join(f"{n}@localhost:{p}" for n, p in self.voters or ((self.node_id, self.controller_port),))
        listeners = SecurityDir(self.state_dir).server_properties(self.port, self.tls_port, self.controller_port) \
            if self.secure else [
                f"listeners=PLAINTEXT://localhost:{self.port},CONTROLLER://localhost:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://localhost:{self.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            ]
        return "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={self.node_id}",
                f"controller.quorum.voters={voters}",
                *listeners,
                f"log.dirs={self.data_dir}",
                f"num.partitions={self.default_partitions}",
                f"default.replication.factor={rf}",
                f"min.insync.replicas={min_isr}",
                f"offsets.topic.replication.factor={rf}",
                "offsets.topic.num.partitions=3",
                f"transaction.state.log.replication.factor={rf}",
                f"transaction.state.log.min.isr={min_isr}",
                f"share.coordinator.state.topic.replication.factor={rf}",
                f"share.coordinator.state.topic.min.isr={min_isr}",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                "message.max.bytes=4194304",
                "log.retention.hours=168",
                "log.segment.bytes=268435456",
                "",
            ]
        )

    def _java_cmd(self, main: str, *args: str) -> list[str]:
        cp = ":".join(str(j) for j in classpath_jars("kafka", self.jvm_dir))
        return [
            "java",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.state_dir / 'log4j2.properties'}",
            "-cp",
            cp,
            main,
            *args,
        ]

    def _format_storage(self, cluster_id: str | None = None) -> None:
        """Format the KRaft storage once, on first use (every node of a cluster with the same id)."""
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = cluster_id or new_cluster_id()
        # "--cluster-id=<id>": a base64 id may start with "-", which argparse would read as a flag
        scram = SecurityDir(self.state_dir).scram_arguments() if self.secure else []
        cmd = self._java_cmd(
            "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(self.config_file), *scram
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            said = (proc.stderr or proc.stdout).strip()[-400:]
            for arg in scram:  # never print a SCRAM password
                said = said.replace(arg, "--add-scram ***")
            msg = f"formatting Kafka storage in {self.data_dir} failed: {said}"
            raise BrokerError(msg)
        logger.info('event="storage formatted" dir="%s" cluster_id="%s"', self.data_dir, cluster_id)

    # ---- commands -------------------------------------------------------
    def up(self, topics: Iterable[str] = (), timeout_s: float = START_TIMEOUT_S) -> bool:
        """Start the broker unless it runs, wait until it answers, create topics.

        Returns:
            True when this call started it, False when it was already running.

        Raises:
            BrokerError: a port is taken by another process, or the broker did not come up.
        """
        proc = self.spawn()
        if proc is not None:
            self.wait_ready(proc, timeout_s)
        ensure_topics(self.bootstrap, topics, self.default_partitions, self.admin_conf())
        return proc is not None

    def admin_conf(self) -> dict[str, str]:
        """What the broker's own admin connections need beyond the address (the admin user when secure)."""
        if not self.secure:
            return {}
        from stream.credentials import KafkaCredentials

        return KafkaCredentials.load(SecurityDir(self.state_dir).credentials_file("admin")).librdkafka()

    def spawn(self, cluster_id: str | None = None) -> subprocess.Popen[bytes] | None:
        """Start the node's JVM unless it runs (no wait); None when it was already running.

        Raises:
            BrokerError: a port is taken by another process, or formatting the storage failed.
        """
        if self.pid() is not None:
            return None
        java_major_version()
        if self.secure:
            SecurityDir(self.state_dir).create()
        for port in (self.port, self.controller_port, *((self.tls_port,) if self.secure else ())):
            if port_in_use(port):
                msg = (
                    f"port {port} is already in use by another process: stop it, or choose "
                    "other ports with HEARTRISK_KAFKA_PORT / HEARTRISK_KAFKA_CONTROLLER_PORT"
                )
                raise BrokerError(msg)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.server_properties())
        self.config_file.chmod(0o600)  # a secure broker's holds its key password
        (self.state_dir / "log4j2.properties").write_text(LOG4J2)
        self._format_storage(cluster_id)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                self._java_cmd("kafka.Kafka", str(self.config_file)),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        logger.info('event="broker starting" node=%d pid=%d bootstrap="%s"', self.node_id, proc.pid, self.bootstrap)
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes], timeout_s: float = START_TIMEOUT_S) -> None:
        """Wait until the started node answers and its cluster's metadata lists it.

        Raises:
            BrokerError: the process exited, or it did not answer in time (it is then stopped).
        """
        deadline = time.monotonic() + timeout_s
        admin: AdminClient | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                msg = (
                    f"the Kafka broker exited with code {proc.returncode} during start-up; "
                    f"last log lines:\n{tail(self.log_file, 15)}"
                )
                raise BrokerError(msg)
            if admin is None and port_in_use(self.port):
                # Only talk Kafka once the port listens, so librdkafka does not log refusals.
                admin = AdminClient({"bootstrap.servers": self.bootstrap, **self.admin_conf()})
            try:
                if admin is not None and self.node_id in admin.list_topics(timeout=2).brokers:
                    return
            except KafkaException:
                pass
            time.sleep(0.3)
        self.down()
        msg = f"the Kafka broker did not answer within {timeout_s:.0f}s; see {self.log_file}"
        raise BrokerError(msg)

    def down(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after the timeout).

        Returns:
            True when a broker was stopped, False when none was running.
        """
        return stop_recorded(self.pid_file, self._is_ours, timeout_s, "broker")


def new_cluster_id() -> str:
    """A fresh KRaft cluster id (base64 of a uuid, as Kafka's own tool makes them)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def is_our_broker(pid: int, config_file: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and str(config_file).encode() in cmdline
