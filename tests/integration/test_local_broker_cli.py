"""`heartrisk kafka up | down | status | topics` against a broker of its own."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))
TOPICS = ("patient-events", "risk-predictions", "patient-events-dlq")


def _run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HEARTRISK, "kafka", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _broker_pids(state_dir: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"kafka.Kafka {state_dir}"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.fixture
def broker_env(tmp_path: Path):
    env = dict(os.environ)
    env.update(
        HEARTRISK_KAFKA_PORT=str(free_port()),
        HEARTRISK_KAFKA_CONTROLLER_PORT=str(free_port()),
        HEARTRISK_KAFKA_STATE_DIR=str(tmp_path / "state"),
        HEARTRISK_KAFKA_HEAP="512m",
    )
    yield env
    _run(env, "down")


def test_up_is_idempotent_kcat_sees_topics_and_down_leaves_nothing(broker_env):
    state = Path(broker_env["HEARTRISK_KAFKA_STATE_DIR"])
    port = broker_env["HEARTRISK_KAFKA_PORT"]

    first = _run(broker_env, "up")
    assert first.returncode == 0, first.stderr
    assert "broker started" in first.stdout
    pids = _broker_pids(state)
    assert len(pids) == 1

    second = _run(broker_env, "up")
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stdout
    assert _broker_pids(state) == pids, "a second `up` starts no second broker"

    kcat = shutil.which("kcat")
    assert kcat, "kcat is installed by `make setup`"
    listing = subprocess.run(
        [kcat, "-b", f"localhost:{port}", "-L", "-m", "10"], capture_output=True, text=True, timeout=30
    )
    assert listing.returncode == 0, listing.stderr
    assert f"localhost:{port}" in listing.stdout
    for topic in TOPICS:
        assert f'topic "{topic}" with 3 partitions' in listing.stdout

    status = _run(broker_env, "status")
    assert status.returncode == 0
    for topic in TOPICS:
        assert f"{topic}: 3 partitions" in status.stdout

    down = _run(broker_env, "down")
    assert down.returncode == 0
    assert "broker stopped" in down.stdout
    assert _broker_pids(state) == []
    assert not (state / "broker.pid").exists()
    again = _run(broker_env, "status")
    assert again.returncode == 1 and "not running" in again.stdout


def test_port_taken_by_another_process_is_a_clear_error(broker_env):
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", int(broker_env["HEARTRISK_KAFKA_PORT"])))
        squatter.listen()
        result = _run(broker_env, "up")
    assert result.returncode == 4
    assert f"port {broker_env['HEARTRISK_KAFKA_PORT']} is already in use" in result.stderr
    assert "HEARTRISK_KAFKA_PORT" in result.stderr
    assert "Traceback" not in result.stderr
    assert _broker_pids(Path(broker_env["HEARTRISK_KAFKA_STATE_DIR"])) == []
