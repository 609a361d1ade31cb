"""``heartrisk run`` (what ``make run`` calls): the whole product on one laptop.

It starts the local broker, starts the scorer as a child process, replays the
data set, and tails the predictions until Ctrl-C. Then it stops the scorer
gracefully, and stops the broker if this command started it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stream.app.produce import generate, publish
from stream.app.tail import tail
from stream.config import Settings
from stream.errors import HeartriskError
from stream.local.broker import tail as tail_file
from stream.local.kafka_cluster import LocalKafka
from stream.local.topics import end_offsets

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 120.0


def say(msg: str) -> None:
    """A status line on stderr that never raises: the terminal or pipe may be gone by cleanup time."""
    try:
        print(msg, file=sys.stderr, flush=True)
    except OSError:
        pass


def wait_until_started(proc: subprocess.Popen[bytes], log: Path, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Wait for the scorer's start-up line.

    Raises:
        HeartriskError: the scorer exited or did not start in time.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"the scorer exited with code {proc.returncode} during start-up:\n{tail_file(log, 5)}"
            raise HeartriskError(msg)
        if 'event="scorer started"' in log.read_text(errors="replace"):
            return
        time.sleep(0.5)
    msg = f"the scorer did not start within {timeout_s:.0f}s; see {log}"
    raise HeartriskError(msg)


def stop_child(proc: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM, wait for the graceful stop, SIGKILL as a last resort."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def last_error(log: Path, code: int | None) -> str:
    """One line on why the scorer ended: the signal that killed it, else its last error line."""
    if code is not None and code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    lines = log.read_text(errors="replace").splitlines()
    for marks in (("heartrisk: error:",), (" ERROR ", "Error:")):
        for line in reversed(lines):
            if any(m in line for m in marks):
                return line.strip()[:300]
    return lines[-1].strip()[:300] if lines else "no output"


def run(settings: Settings, replay: bool = True, log_dir: Path | None = None) -> int:
    """Broker up, scorer up, replay, tail until Ctrl-C, then stop everything we started."""
    broker = LocalKafka.from_settings(settings)
    topics = [settings.input_topic, settings.output_topic, settings.dlq_topic, settings.shadow_topic]
    started_broker = bool(broker.up(topics=topics))
    say(f"broker {'started' if started_broker else 'already running'} at {broker.bootstrap}")
    log_dir = log_dir or settings.path(".run")
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "scorer.log"
    log.write_text("")
    settings = dataclasses.replace(settings, bootstrap_servers=broker.bootstrap)
    env = {**os.environ, **settings.to_env()}
    scorer = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "score"],
        env=env,
        stdout=open(log, "ab"),  # noqa: SIM115 - the child owns it
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    say(f"scorer starting (pid {scorer.pid}, log {log}) ...")
    interrupted = died = False
    try:
        wait_until_started(scorer, log)
        say("scorer running; press Ctrl-C to stop")
        offsets = end_offsets(settings.kafka_client_config(), settings.output_topic)
        if replay:
            count = 303
            n = publish(generate(count, "dataset", settings), count, settings, progress=False)
            say(f"replayed {n} patients from {settings.data_file} into {settings.input_topic}")
        tail(settings, start_offsets=offsets, until=lambda: scorer.poll() is not None)
        if scorer.poll() is not None:
            died = True
            say(f"the scorer exited (code {scorer.returncode}): {last_error(log, scorer.returncode)}")
            say(f"its log: {log}")
    except (KeyboardInterrupt, BrokenPipeError):
        # Ctrl-C, or the reader of our output (e.g. `| tee`) went away: either way, clean up
        interrupted = True
    finally:
        # a second Ctrl-C must not abandon the scorer and the broker half-way
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if scorer.poll() is None:
                say("\nstopping the scorer (the batch in flight finishes first) ...")
            code = stop_child(scorer)
            if not died:
                say(f"scorer stopped (exit {code})")
            if started_broker:
                broker.down()
                say("broker stopped")
        finally:
            signal.signal(signal.SIGINT, previous)
    return 1 if died or (code != 0 and not interrupted) else 0
