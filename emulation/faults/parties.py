"""Faults of the parties: find a party's process on its host, kill, stop or restart it.

The coordinators (`run_local`, the federated run) keep their processes' handles to
themselves, so a party is found the way an operator would find it: among the processes
in its Mininet host's network namespace (each host of a run has its own, so no other run
and no other host can match), by its command line:

- `terminal`: `python -m fl_crb.runtime.terminal` (local run) or `-m
  fl_crb.federation.terminal` (federated run), with its config from the run folder;
- `edge-server`: `-m fl_crb.runtime.edge_server` (local run) or `-m fl_crb.federation.edge`
  (federated run: the runtime's edge server handing out its learner's weights);
- `edge-learner`: `-m fl_crb.federation.edge_learner_service`;
- `supernode`: `flower-supernode`, or the accelerated `-m
  fl_crb.federation.accelerators.fast_supernode` that runs it;
- `superlink`: `flower-superlink`;
- `authority`: the ServerApp process whose pid the authority records in the run folder's
  `authority/ready.json` each time it (re)starts.

`kill` is SIGKILL; `stop` is SIGSTOP, undone by SIGCONT; `restart` is SIGKILL followed by
a watch for the party's new process, which its supervisor starts (the authority's
supervisor, the learner supervisor, or for a terminal or edge server the data plane's
coordinator, `fl_crb.runtime.party_supervisor`: the same command line, so it is found the
same way).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

from emulation.faults.links import Applied
from emulation.network import EmulatedNetwork
from emulation.teardown import namespace_inode
from fl_crb.federation.edge import MODULE as FEDERATED_EDGE_MODULE
from fl_crb.federation.terminal import MODULE as FEDERATED_TERMINAL_MODULE
from fl_crb.runtime.local_run import EDGE_SERVER_MODULE, TERMINAL_MODULE

LEARNER_MODULE = "fl_crb.federation.edge_learner_service"
FAST_SUPERNODE_MODULE = "fl_crb.federation.accelerators.fast_supernode"
AUTHORITY_READY = Path("authority") / "ready.json"
"""Where, in the run folder, the authority records its ServerApp's pid once serving."""


def _module(*names: str) -> Callable[[list[str]], bool]:
    return lambda argv: any(a == "-m" and b in names for a, b in itertools.pairwise(argv))


def _program(name: str, module: str | None = None) -> Callable[[list[str]], bool]:
    def matches(argv: list[str]) -> bool:
        if argv and os.path.basename(argv[0]) == name:
            return True
        if len(argv) > 1 and os.path.basename(argv[1]) == name:  # `python .../flower-x`
            return True
        return module is not None and _module(module)(argv)

    return matches


COMMAND_LINES: dict[str, Callable[[list[str]], bool]] = {
    "terminal": _module(TERMINAL_MODULE, FEDERATED_TERMINAL_MODULE),
    "edge-server": _module(EDGE_SERVER_MODULE, FEDERATED_EDGE_MODULE),
    "edge-learner": _module(LEARNER_MODULE),
    "supernode": _program("flower-supernode", FAST_SUPERNODE_MODULE),
    "superlink": _program("flower-superlink"),
}
"""How each party's process is recognised by its command line (the authority by pid)."""


def party_pids(net: EmulatedNetwork, run_dir: Path, party: str, host: str) -> list[int]:
    """The live processes of `party` on `host` (none if it has exited or not started)."""
    namespace = namespace_inode(net.host(host).pid)
    if party == "authority":
        pid = authority_pid(run_dir)
        return [pid] if pid is not None and _in_namespace(pid, namespace) else []
    matches = COMMAND_LINES[party]
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        argv = _argv(pid)
        if argv and matches(argv) and _in_namespace(pid, namespace):
            found.append(pid)
    return sorted(found)


def authority_pid(run_dir: Path) -> int | None:
    """The authority's ServerApp pid from its ready.json, if that process lives."""
    try:
        pid = int(json.loads((run_dir / AUTHORITY_READY).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if _alive(pid) else None


def send(pids: list[int], signum: signal.Signals) -> list[int]:
    """Send `signum` to each of `pids`; the pids it reached."""
    reached = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
            reached.append(pid)
    return reached


def kill(pids: list[int], what: str) -> Applied:
    """SIGKILL the party's processes."""
    reached = send(pids, signal.SIGKILL)
    return Applied(f"SIGKILL to {what} (pid {_pids(reached)})", lambda: "")


def stop(pids: list[int], what: str) -> Applied:
    """SIGSTOP the party's processes; undoing sends SIGCONT."""
    reached = send(pids, signal.SIGSTOP)

    def undo() -> str:
        resumed = send(reached, signal.SIGCONT)
        gone = sorted(set(reached) - set(resumed))
        tail = f"; pid {_pids(gone)} had gone meanwhile" if gone else ""
        return f"SIGCONT to {what} (pid {_pids(resumed)}){tail}"

    return Applied(f"SIGSTOP to {what} (pid {_pids(reached)})", undo)


def _pids(pids: list[int]) -> str:
    return ", ".join(map(str, pids)) or "none"


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _in_namespace(pid: int, namespace: int) -> bool:
    try:
        return namespace_inode(pid) == namespace and not _zombie(pid)
    except OSError:
        return False


def _zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
