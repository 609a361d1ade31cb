"""`heartrisk run` (what `make run` calls) end to end, as a new user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_for

pytestmark = pytest.mark.integration

HEARTRISK = str(Path(sys.executable).with_name("heartrisk"))


def test_run_replays_the_data_set_shows_predictions_and_stops_cleanly(tmp_path):
    state = tmp_path / "kafka"
    env = {
        **os.environ,
        "HEARTRISK_KAFKA_PORT": str(free_port()),
        "HEARTRISK_KAFKA_CONTROLLER_PORT": str(free_port()),
        "HEARTRISK_KAFKA_STATE_DIR": str(state),
        "HEARTRISK_KAFKA_HEAP": "512m",
        "HEARTRISK_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "HEARTRISK_SPARK_MASTER": "local[2]",
    }
    proc = subprocess.Popen(
        [HEARTRISK, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    errors: list[str] = []
    readers = [
        threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True),
        threading.Thread(target=lambda: errors.extend(iter(proc.stderr.readline, "")), daemon=True),
    ]
    for t in readers:
        t.start()
    try:
        wait_for(lambda: len(lines) >= 303 or proc.poll() is not None, 300, what="303 prediction lines")
        assert proc.poll() is None, "".join(errors)[-3000:]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(180)
    for t in readers:
        t.join(10)
    assert code == 0, "".join(errors)[-3000:]
    patients = {word.split("=", 1)[1] for line in lines for word in line.split() if word.startswith("patient=")}
    assert patients == {f"cleveland-{i:03d}" for i in range(1, 304)}
    levels = {line.split()[1] for line in lines}
    assert levels <= {"Low", "Medium", "High"} and len(levels) == 3
    err = "".join(errors)
    assert "replayed 303 patients" in err
    assert "scorer stopped (exit 0)" in err
    assert "broker stopped" in err
    left = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True)
    assert left.stdout.strip() == "", "no broker or scorer process is left behind"
