"""Leave nothing behind: ordered teardown of a run, and cleanup after a killed one.

`Teardown` is a stack of undo steps: each resource registers how to undo itself as soon
as it exists, and `run` undoes them newest first (iptables rules before the daemon that
serves them, the daemon and the hosts' processes before the hosts). Every step runs even
if an earlier one failed; the failures are raised together at the end. Ctrl-C and
SIGTERM wait until teardown is over.

`cleanup` handles runs whose process was killed (SIGKILL, a crash, a lost terminal): for
every run slot whose lock is free but which left a state file, chains, bridges or its
hosts' temporary state directories, it kills the processes in the run's host namespaces
and its delay daemon, removes its iptables chains, deletes its bridges and ports,
removes `<state dir>/slot-<n>-hosts` and hands the `RUN/hosts` its state file names back
to root (`emulation.host_state`). It touches only names derived from such free slots, so
live runs of other users are safe. `mn -c` is offered separately (`include_mininet`): it
removes every Mininet network on the machine, not just ours.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from emulation import firewall
from emulation.host_state import clean_after_killed_run, temporary_hosts_dir
from emulation.plan import bridge_names
from emulation.runstate import (
    SLOT_COUNT,
    STATE_DIR,
    RunState,
    load_state,
    queue_range,
    state_path,
    try_lock,
)

log = logging.getLogger(__name__)


class TeardownError(RuntimeError):
    """Some teardown steps failed; the message lists each one."""


class Teardown:
    """Undo steps, run newest first."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], None]]] = []

    def push(self, name: str, undo: Callable[[], None]) -> None:
        """Register how to undo something that now exists."""
        self._steps.append((name, undo))

    def run(self) -> None:
        """Run every step (newest first), with Ctrl-C and SIGTERM held back; raise
        `TeardownError` listing the steps that failed."""
        failures = []
        with _signals_deferred():
            while self._steps:
                name, undo = self._steps.pop()
                started = time.monotonic()
                try:
                    undo()
                    log.debug("teardown: %s took %.2f s", name, time.monotonic() - started)
                except Exception as error:
                    log.error("teardown: %s failed: %s", name, error)
                    failures.append(f"{name}: {error}")
        if failures:
            raise TeardownError("teardown left work undone: " + "; ".join(failures))


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt, so `kill` tears down like Ctrl-C."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def namespace_inode(pid: int) -> int:
    """Inode of the network namespace process `pid` lives in."""
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def namespace_members(inodes: set[int]) -> list[int]:
    """Pids of the processes living in one of the network namespaces `inodes`."""
    return list(namespace_membership(inodes))


def namespace_membership(inodes: set[int]) -> dict[int, int]:
    """pid -> namespace inode of the processes living in one of the namespaces `inodes`."""
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                inode = namespace_inode(int(entry.name))
                if inode in inodes:
                    found[int(entry.name)] = inode
    return found


def kill_namespace_processes(inodes: set[int], spare: set[int], grace_s: float = 2.0) -> int:
    """Stop every process living in one of the network namespaces `inodes`, except the
    pids in `spare`: SIGTERM, then SIGKILL after `grace_s`. Returns how many there were."""

    def members() -> list[int]:
        return [pid for pid in namespace_members(inodes) if pid not in spare]

    pids = members()
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 1.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = members()
        if not pids:
            break
    return len(pids)


def delete_bridges(bridges: list[str]) -> int:
    """Delete the bridges and every `<bridge>-eth<n>` port left in the root namespace;
    returns how many interfaces were deleted."""
    listing = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    names = [line.split(":")[1].strip().split("@")[0] for line in listing.stdout.splitlines()]
    doomed = [n for n in names if any(n == b or n.startswith(f"{b}-eth") for b in bridges)]
    for name in doomed:
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
    return len(doomed)


def cleanup(state_dir: Path = STATE_DIR, include_mininet: bool = False) -> list[str]:
    """Remove what killed runs left behind; returns one line per thing removed."""
    done = []
    daemons = delay_daemons()
    candidates = firewall.slots_with_rules() | _slots_with_bridges() | set(daemons)
    if state_dir.exists():
        candidates |= {s for s in range(SLOT_COUNT) if state_path(state_dir, s).exists()}
        candidates |= {s for s in range(SLOT_COUNT) if temporary_hosts_dir(state_dir, s).exists()}
    for slot in sorted(candidates):
        fd = try_lock(state_dir, slot) if state_dir.exists() else None
        if state_dir.exists() and fd is None:
            continue  # a live run holds this slot
        try:
            state = load_state(state_dir, slot) if fd is not None else None
            done += cleanup_slot(slot, state, daemons.get(slot, []), state_dir)
            if fd is not None:
                state_path(state_dir, slot).unlink(missing_ok=True)
        finally:
            if fd is not None:
                os.close(fd)
    if include_mininet:
        subprocess.run(["mn", "-c"], capture_output=True, check=False)
        done.append("ran `mn -c` (every Mininet network on this machine)")
    return done


def cleanup_slot(
    slot: int, state: RunState | None, daemon_pids: list[int], state_dir: Path
) -> list[str]:
    """Remove everything slot `slot` may hold; `state` is what its run recorded."""
    done = []
    if state is not None and state.host_namespaces:
        killed = kill_namespace_processes(set(state.host_namespaces.values()), {os.getpid()})
        if killed:
            done.append(f"slot {slot}: stopped {killed} processes in its host namespaces")
    for pid in daemon_pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        done.append(f"slot {slot}: killed delay daemon {pid}")
    if firewall.remove(slot):
        done.append(f"slot {slot}: removed its iptables chains")
    deleted = delete_bridges(list(bridge_names(slot)))
    if deleted:
        done.append(f"slot {slot}: deleted {deleted} bridges and ports")
    if state is not None and state.bridge_nf_changed and not other_runs_alive(slot, state_dir):
        Path("/proc/sys/net/bridge/bridge-nf-call-iptables").write_text("0\n")
        done.append("restored net.bridge.bridge-nf-call-iptables = 0")
    # last: no process of the run's hosts may write there any more
    done += clean_after_killed_run(slot, state.hosts_dir if state else None, state_dir)
    return done


def _slots_with_bridges() -> set[int]:
    """Slots whose bridges exist in the root namespace."""
    listing = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    return {int(m) for m in re.findall(r"^\d+: fcrb(\d+)[ac][:@]", listing.stdout, re.M)}


def delay_daemons() -> dict[int, list[int]]:
    """Pids of running delay daemons by the slot whose queues they serve (found by their
    command lines)."""
    found: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not Path(argv[0].decode(errors="replace")).name.startswith("delayd"):
            continue
        for arg in argv:
            if re.fullmatch(rb"\d+:\d+:\d+", arg):
                number = int(arg.split(b":")[0])
                slot = next((s for s in range(SLOT_COUNT) if number in queue_range(s)), None)
                if slot is not None:
                    found.setdefault(slot, []).append(int(entry.name))
                break
    return found


def other_runs_alive(slot: int, state_dir: Path) -> bool:
    """Whether a live run holds any slot other than `slot`."""
    for other in range(SLOT_COUNT):
        if other != slot and state_dir.exists():
            fd = try_lock(state_dir, other)
            if fd is None:
                return True
            os.close(fd)
    return False
