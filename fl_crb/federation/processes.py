"""Child processes that can be stopped completely, and the loopback ports they use.

Each process is started in its own session (its own process group) with its output in
a log file, and stopped with SIGTERM to its group, then SIGKILL after a grace period.
Flower detaches some of its children (the SuperLink's SuperExec starts a new session and
only watches its parent's pid), so before stopping, every descendant is noted from /proc,
and any still alive 2 s after its ancestors are gone is killed by pid. Only processes
this object started, and their descendants, are ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


class ProcessSet:
    """Named child processes, each in its own session with a log file."""

    def __init__(self) -> None:
        self._processes: dict[str, subprocess.Popen] = {}

    def spawn(
        self, name: str, command: list[str], cwd: Path, env: dict[str, str], log_path: Path
    ) -> int:
        """Start `command` as `name` (unique) with stdout and stderr in `log_path`; its pid."""
        if name in self._processes:
            raise ValueError(f"a process named {name!r} is already running")
        with open(log_path, "wb") as log:
            self._processes[name] = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self._processes[name].pid

    def names(self) -> list[str]:
        """Names of the processes started and not yet stopped, in start order."""
        return list(self._processes)

    def pid(self, name: str) -> int:
        """Process id of `name`."""
        return self._processes[name].pid

    def exit_status(self, name: str) -> int | None:
        """`name`'s exit status, or None while it runs."""
        return self._processes[name].poll()

    def stop(self, names: list[str], timeout_s: float) -> None:
        """SIGTERM the groups of `names`, SIGKILL them after `timeout_s`, reap descendants."""
        running = {name: self._processes.pop(name) for name in names if name in self._processes}
        below = {child for process in running.values() for child in descendants(process.pid)}
        for process in running.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in running.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            with contextlib.suppress(ProcessLookupError):  # members left in the group
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        deadline = time.monotonic() + 2.0  # Flower's children watch their parent every 0.2 s
        while (left := [pid for pid in below if alive(pid)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def descendants(pid: int) -> set[int]:
    """Process ids below `pid` (children, grandchildren...), read from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def free_port(host: str) -> int:
    """A TCP port free on `host` right now (the OS's pick)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def accepts(host: str, port: int) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
