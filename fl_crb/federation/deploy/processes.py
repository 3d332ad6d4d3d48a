"""Child processes that can be stopped completely, and the loopback ports they use.

Each process is started in its own session (its own process group) with its output in
a log file, and stopped with SIGTERM to its group, then SIGKILL after a grace period. A
command that makes its own session (`mnexec -d` calls setsid, and forks away from its
caller when already a group leader) is started with `new_session=False`; it is then
signalled through its group if it leads one by the time it is stopped, else alone.
Flower detaches some of its children (the SuperLink's SuperExec starts a new session and
only watches its parent's pid), so before stopping, every descendant is noted from /proc,
and any still alive 2 s after its ancestors are gone is killed by pid. Only processes
this object started, and their descendants, are ever signalled. A process that exited
can be started again with the very same command (`ProcessSet.restart`), as a supervisor
does. One-shot commands (the `flwr` CLI) run through `run_once`, which likewise kills
their whole group on timeout.
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
        self._new_session: dict[str, bool] = {}
        self._started_as: dict[str, tuple[list[str], Path, dict[str, str]]] = {}
        """Each process's command, working folder and environment, for `restart`."""

    def spawn(
        self,
        name: str,
        command: list[str],
        cwd: Path,
        env: dict[str, str],
        log_path: Path,
        new_session: bool = True,
    ) -> int:
        """Start `command` as `name` (unique) with stdout and stderr in `log_path`; its pid.

        `new_session=False` leaves making a session to the command itself."""
        if name in self._processes:
            raise ValueError(f"a process named {name!r} is already running")
        self._processes[name] = _popen(command, cwd, env, log_path, new_session)
        self._new_session[name] = new_session
        self._started_as[name] = (command, cwd, env)
        return self._processes[name].pid

    def restart(self, name: str, log_path: Path) -> int:
        """Start `name`, which has exited, again with the same command, folder and
        environment, its output now in `log_path`; its new pid."""
        process = self._processes[name]
        if process.poll() is None:
            raise ValueError(
                f"{name!r} (pid {process.pid}) still runs; only an exited one restarts"
            )
        command, cwd, env = self._started_as[name]
        # replaced in one step: other threads may ask for its status meanwhile
        self._processes[name] = _popen(command, cwd, env, log_path, self._new_session[name])
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

    def kill(self, name: str) -> None:
        """SIGKILL `name` (its group, when it leads one) and reap it; it stays known, so
        that it can `restart`."""
        process = self._processes[name]
        with contextlib.suppress(ProcessLookupError):
            leads = self._new_session[name] or os.getpgid(process.pid) == process.pid
            (os.killpg if leads else os.kill)(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self, names: list[str], timeout_s: float) -> None:
        """SIGTERM the groups of `names`, SIGKILL them after `timeout_s`, reap descendants."""
        running = {name: self._processes.pop(name) for name in names if name in self._processes}
        below = {child for process in running.values() for child in descendants(process.pid)}
        leads = {name: self._new_session.pop(name) for name in running}
        for name in running:
            self._started_as.pop(name, None)
        for name, process in running.items():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    leads[name] = leads[name] or os.getpgid(process.pid) == process.pid
                    (os.killpg if leads[name] else os.kill)(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for name, process in running.items():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            with contextlib.suppress(ProcessLookupError):  # itself, or members left in its group
                (os.killpg if leads[name] else os.kill)(process.pid, signal.SIGKILL)
            process.wait()
        deadline = time.monotonic() + 2.0  # Flower's children watch their parent every 0.2 s
        while (left := [pid for pid in below if alive(pid)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def set_session_share(pid: int, nice: int) -> str | None:
    """Give the session of process `pid` the CPU weight of nice value `nice`; None if it
    took, else why not (one line).

    Linux's autogroups (`kernel.sched_autogroup_enabled`, on in Debian's and Raspberry Pi
    OS's kernels) share the CPU between sessions first and between a session's processes
    only second, and every process here runs in a session of its own: a process's own
    nice value then matters only against its own session. `/proc/PID/autogroup` sets the
    whole session's nice value; a negative one needs root (CAP_SYS_NICE)."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")
    except FileNotFoundError:
        return "this kernel has no autogroups (or the process is gone)"
    except OSError as error:  # EACCES, EPERM: no CAP_SYS_NICE for a negative value
        return f"not permitted ({error.strerror})"
    return None


def _popen(
    command: list[str], cwd: Path, env: dict[str, str], log_path: Path, new_session: bool
) -> subprocess.Popen:
    """Start `command` with stdout and stderr in `log_path` (truncated), no stdin."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )


def run_once(
    command: list[str],
    env: dict[str, str],
    timeout_s: float,
    log_path: Path | None = None,
    new_session: bool = True,
) -> subprocess.CompletedProcess:
    """Run `command` to its end in its own session and return its status and output.

    With `log_path`, stdout and stderr go to that file; otherwise both are captured as
    text. On timeout the command's whole process group is killed and
    `subprocess.TimeoutExpired` raised, so no child of a stuck command outlives the call.
    `new_session=False` leaves making a session to the command (as `ProcessSet.spawn`).
    """
    with contextlib.ExitStack() as files:
        if log_path is None:
            streams: dict = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        else:
            log = files.enter_context(open(log_path, "wb"))
            streams = {"stdout": log, "stderr": subprocess.STDOUT}
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, start_new_session=new_session, **streams
        )
        return finish_once(process, timeout_s, new_session)


def finish_once(
    process: subprocess.Popen,
    timeout_s: float,
    new_session: bool = True,
    stdin_data: bytes | None = None,
) -> subprocess.CompletedProcess:
    """Wait for a one-shot `process` (sending it `stdin_data`) and return its status and
    output; on timeout kill its whole process group (as `run_once`)."""
    try:
        stdout, stderr = process.communicate(stdin_data, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        group = descendants(process.pid)
        leads = False
        with contextlib.suppress(ProcessLookupError):
            leads = new_session or os.getpgid(process.pid) == process.pid
            (os.killpg if leads else os.kill)(process.pid, signal.SIGKILL)
        process.communicate()
        if leads:
            _wait_until_gone(group, GROUP_EXIT_WAIT_S)
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


GROUP_EXIT_WAIT_S = 5.0
"""How long `run_once` waits for a killed command's other processes to be gone."""


def _wait_until_gone(pids: set[int], timeout_s: float) -> None:
    """Wait, at most `timeout_s`, until none of `pids` is alive. SIGKILL is delivered
    asynchronously: killpg returns while the group's members may still be running until
    the kernel schedules their exit, which a loaded machine can delay."""
    deadline = time.monotonic() + timeout_s
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.01)


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
