"""The local Kafka as ``heartrisk kafka`` runs it: one node (the default), or N replicated KRaft nodes.

One node keeps today's layout: its files directly in the state directory. A
cluster of N keeps each node in ``<state dir>/cluster-N/node-<id>/`` with a
shared cluster id, every node both broker and controller (a quorum of N), node
``i`` listening on the configured ports plus ``2 * (i - 1)``. The state dir's
``brokers`` file remembers the size last started, so ``down`` and ``status``
need no flag.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from stream.config import Settings
from stream.errors import BrokerError, ConfigError
from stream.local.broker import START_TIMEOUT_S, STOP_TIMEOUT_S, LocalBroker, is_our_broker, new_cluster_id
from stream.local.processes import alive, live_pid
from stream.local.secure import SecurityDir
from stream.local.topics import ensure_topics

logger = logging.getLogger(__name__)

NODE_PORT_STEP = 2
SIZE_FILE = "brokers"


@dataclass(frozen=True)
class LocalKafka:
    """N local nodes: ``ports[i]`` / ``controller_ports[i]`` belong to node ``i + 1``."""

    state_dir: Path
    ports: tuple[int, ...]
    controller_ports: tuple[int, ...]
    jvm_dir: Path
    heap: str = "1g"
    default_partitions: int = 3
    secure: bool = False  # one broker with SASL_SSL and mutual TLS (stream.local.secure)

    @classmethod
    def from_settings(cls, s: Settings, brokers: int | None = None, secure: bool = False) -> LocalKafka:
        """From the settings: ``brokers`` nodes, else as many as were last started, else one.

        A local broker once started ``secure`` stays secure (its storage holds the SCRAM users).

        Raises:
            ConfigError: fewer than 1 broker, secure with more than one, or a plain broker's storage made secure.
        """
        state = s.path(s.kafka_state_dir)
        n = brokers if brokers is not None else recorded_size(state) or 1
        if n < 1:
            msg = "--brokers must be at least 1 (3 for a cluster that survives the loss of a broker)"
            raise ConfigError(msg)
        made_secure = SecurityDir(state).exists
        if secure and not made_secure and (state / "data" / "meta.properties").exists():
            msg = (f"the local broker in {state} was made without --secure: its storage has no SCRAM users. "
                   f"Run `heartrisk kafka down && rm -rf {state}` first (this deletes its topics)")
            raise ConfigError(msg)
        if (secure or made_secure) and n != 1:
            msg = "--secure runs one broker (SASL_SSL and mutual TLS); a secure replicated cluster is not built yet"
            raise ConfigError(msg)
        step = [NODE_PORT_STEP * i for i in range(n)]
        return cls(state, tuple(s.kafka_port + d for d in step), tuple(s.kafka_controller_port + d for d in step),
                   s.path(s.jvm_dir), s.kafka_heap, s.partitions, secure or made_secure)

    @property
    def size(self) -> int:
        """Number of nodes."""
        return len(self.ports)

    @property
    def nodes(self) -> list[LocalBroker]:
        """The nodes, node id 1 first."""
        if self.size == 1:  # a secure broker's mutual-TLS listener: the client port + NODE_PORT_STEP
            return [LocalBroker(self.state_dir, self.ports[0], self.controller_ports[0], self.jvm_dir, self.heap,
                                self.default_partitions, secure=self.secure,
                                tls_port=self.ports[0] + NODE_PORT_STEP if self.secure else 0)]
        voters = tuple((i + 1, p) for i, p in enumerate(self.controller_ports))
        home = self.state_dir / f"cluster-{self.size}"
        return [LocalBroker(home / f"node-{i + 1}", port, cport, self.jvm_dir, self.heap, self.default_partitions,
                            node_id=i + 1, voters=voters)
                for i, (port, cport) in enumerate(zip(self.ports, self.controller_ports, strict=True))]

    def node(self, node_id: int) -> LocalBroker:
        """One node by its id (1-based)."""
        if not 1 <= node_id <= self.size:
            msg = f"no broker {node_id}: this local Kafka has brokers 1..{self.size}"
            raise BrokerError(msg)
        return self.nodes[node_id - 1]

    @property
    def bootstrap(self) -> str:
        """Every node's client address, comma-separated."""
        return ",".join(n.bootstrap for n in self.nodes)

    def pids(self) -> dict[int, int | None]:
        """Node id -> pid of its live process (None when it is down)."""
        return {n.node_id: n.pid() for n in self.nodes}

    # ---- commands -------------------------------------------------------
    def up(self, topics: Iterable[str] = (), timeout_s: float = START_TIMEOUT_S) -> list[int]:
        """Start the nodes that are not running, wait until each answers, create the missing topics.

        Returns:
            The node ids this call started ([] when all were running).

        Raises:
            BrokerError: another size runs from the same state dir, ports collide or are taken,
                or a node did not come up (the nodes this call started are then stopped).
        """
        self._refuse_other_layout()
        ports = [*self.ports, *self.controller_ports]
        if len(set(ports)) != len(ports):
            msg = (f"the {self.size} brokers' ports collide ({sorted(ports)}): node i uses the configured ports "
                   f"+ {NODE_PORT_STEP}*(i-1), so set HEARTRISK_KAFKA_PORT and HEARTRISK_KAFKA_CONTROLLER_PORT "
                   f"at least {NODE_PORT_STEP * self.size} apart")
            raise BrokerError(msg)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / SIZE_FILE).write_text(f"{self.size}\n")
        cluster_id = self._cluster_id()
        spawned = []
        try:
            for node in self.nodes:
                proc = node.spawn(cluster_id)
                if proc is not None:
                    spawned.append((node, proc))
            # a node of a quorum answers only once a majority runs, so start them all before waiting
            for node, proc in spawned:
                node.wait_ready(proc, timeout_s)
        except BrokerError:
            for node, _ in spawned:
                node.down()
            raise
        ensure_topics(self.bootstrap, topics, self.default_partitions, self.admin_conf())
        return [node.node_id for node, _ in spawned]

    def admin_conf(self) -> dict[str, str]:
        """What an admin connection needs beyond the address (the admin user of a secure broker)."""
        return self.nodes[0].admin_conf()

    def _cluster_id(self) -> str | None:
        """The id every node of a cluster is formatted with (kept next to them); None for one node."""
        if self.size == 1:
            return None
        path = self.state_dir / f"cluster-{self.size}" / "cluster.id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id() + "\n")
        return path.read_text().strip()

    def _refuse_other_layout(self) -> None:
        """One local Kafka per state dir: refuse to start N nodes while another size runs from it."""
        mine = {n.pid_file for n in self.nodes}
        pid_files = [self.state_dir / "broker.pid", *self.state_dir.glob("cluster-*/node-*/broker.pid")]
        for pid_file in pid_files:
            if pid_file not in mine and live_pid(pid_file, functools.partial(owns, pid_file)):
                other = pid_file.parent.parent.name.removeprefix("cluster-") if pid_file.parent != self.state_dir else 1
                msg = (f"a {other}-broker local Kafka already runs from {self.state_dir}: stop it with "
                       f"`heartrisk kafka down` first, then `heartrisk kafka up --brokers {self.size}`")
                raise BrokerError(msg)

    def down(self, timeout_s: float = STOP_TIMEOUT_S) -> list[int]:
        """Stop every node cleanly, all at once (a quorum that loses its majority node by node would stall).

        Returns:
            The node ids that were running and are now stopped.
        """
        with ThreadPoolExecutor(max_workers=self.size) as pool:
            stopped = list(pool.map(lambda n: n.down(timeout_s), self.nodes))
        return [n.node_id for n, s in zip(self.nodes, stopped, strict=True) if s]

    def kill(self, node_id: int) -> int:
        """SIGKILL one node (a crash, for fault tests); returns the pid it had.

        Raises:
            BrokerError: that node is not running.
        """
        node = self.node(node_id)
        pid = node.pid()
        if pid is None:
            msg = f"broker {node_id} is not running"
            raise BrokerError(msg)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.05)
        logger.info('event="broker killed" node=%d pid=%d', node_id, pid)
        return pid

    def start(self, node_id: int, timeout_s: float = START_TIMEOUT_S) -> bool:
        """Start one node again (after a kill or a stop) and wait until it answers; False when it ran."""
        node = self.node(node_id)
        proc = node.spawn(self._cluster_id())
        if proc is not None:
            node.wait_ready(proc, timeout_s)
        return proc is not None


def owns(pid_file: Path, pid: int) -> bool:
    """Whether ``pid`` is the broker whose pid file (and server.properties beside it) this is."""
    return is_our_broker(pid, pid_file.with_name("server.properties"))


def recorded_size(state_dir: Path) -> int | None:
    """How many nodes ``kafka up`` last started from this state dir (None when never)."""
    try:
        return int((state_dir / SIZE_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
