"""Child processes the CLI starts and stops (the local broker and registry): liveness, ports, logs."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def stop_group(pid: int, timeout_s: float, what: str) -> None:
    """SIGTERM the process group led by ``pid``; SIGKILL it if it outlives the timeout."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.2)
    if alive(pid):
        logger.warning('event="%s did not stop in time, killing" pid=%d', what, pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.1)


def live_pid(pid_file: Path, is_ours: Callable[[int], bool]) -> int | None:
    """The pid recorded in ``pid_file`` if that process is alive and ours; a stale file is removed."""
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if alive(pid) and is_ours(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def stop_recorded(pid_file: Path, is_ours: Callable[[int], bool], timeout_s: float, what: str) -> bool:
    """Stop the live process recorded in ``pid_file``; False when none was running."""
    pid = live_pid(pid_file, is_ours)
    if pid is None:
        return False
    stop_group(pid, timeout_s, what)
    pid_file.unlink(missing_ok=True)
    return True


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on the port.

    A connection to a free port in the ephemeral range can, rarely, get that very
    port as its own source port and "connect" to itself (TCP simultaneous open);
    that is not a listener, so it does not count.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        if s.connect_ex((host, port)) != 0:
            return False
        return bool(s.getsockname()[1] != port)


def tail(path: Path, lines: int) -> str:
    """The last lines of a text file ('' when missing)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
