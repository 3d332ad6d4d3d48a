"""CPU use per role of a federated run, sampled from /proc while the run goes on.

`round_breakdown.py` reads what the parties log; CPU is not logged by any of them, so this
sampler runs beside the run (`fl-crb emulate` or `fl-crb federate --local`) and writes one
JSON line per interval to OUT: the machine's busy share (/proc/stat) and, per role, the
CPU seconds its processes used in the interval and how many there were. Roles are told by
command line (`role_of`); a ClientApp forked by the warm executor carries its parent's
command line, so the executor's reaped children (`cutime`+`cstime`) are billed to
"clientapp", as are processes whose parent is an executor. Reaped children's CPU counts only
the part the sampler did not see while they lived (a party that exits was sampled up to its
last interval; the coordinator that reaps it would otherwise count it twice). Kernel threads
(softirq network processing among them) are "kernel", the sampler itself "sampler". Each
line carries the wall time it covers (`elapsed_s`: a sampler starved on a saturated machine
wakes late) and, per role, the part of its CPU spent in the kernel (`system_s`).

    .venv/bin/python benchmarks/cpu_by_role.py OUT.jsonl [--interval-s 1] [--duration-s 600]

It stops after --duration-s, or at SIGTERM/SIGINT. `round_breakdown.py RUN --cpu OUT.jsonl`
lines the samples up with the authority's rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")

TOP_PROCESSES = 8
"""The busiest processes of each interval listed by pid (`top`), to check the roles."""
TOP_COMMAND_CHARS = 120
BACKGROUND_NICE = 10
"""Processes at this niceness or above are billed to "background" (another job sharing
the machine, not the run)."""
ROLES = (
    ("[sampler]", "sampler"),
    ("[background]", "background"),
    ("flock ", "waiting-for-lock"),
    ("edge_learner_service", "edge-learner"),
    ("fl_crb.federation.terminal", "terminal-party"),
    ("fl_crb.federation.edge", "edge-party"),
    ("warm_executor", "superexec"),
    ("flower-superexec", "superexec"),
    ("flwr-clientapp", "clientapp"),
    ("fast_supernode", "supernode"),
    ("flower-supernode", "supernode"),
    ("flwr-serverapp", "authority"),
    ("flower-superlink", "superlink"),
    ("wire_meter", "wire-meter"),
    ("delayd", "delay-daemon"),
    ("flwr run", "flwr-cli"),
    ("fl-crb", "coordinator"),
)
"""(command-line fragment, role), first match wins."""


def role_of(command: str) -> str:
    """The role of a process from its command line ("other" when none matches; "kernel"
    for a kernel thread, which has none)."""
    if not command:
        return "kernel"
    for fragment, role in ROLES:
        if fragment in command:
            return role
    return "other"


@dataclass(frozen=True, slots=True)
class ProcessCpu:
    """One process's CPU counters at a sample."""

    ppid: int
    command: str
    own_s: float
    """Its user + system CPU seconds."""
    system_s: float
    """The system (kernel) part of `own_s`."""
    reaped_s: float
    """CPU seconds of its children it waited for (cutime + cstime)."""


def _processes() -> dict[int, ProcessCpu]:
    """pid → its CPU counters, for every process now."""
    found = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        system = int(stat[12]) * TICK_S  # stime (field 15)
        own = int(stat[11]) * TICK_S + system  # + utime (field 14)
        reaped = (int(stat[13]) + int(stat[14])) * TICK_S  # cutime, cstime
        pid = int(entry.name)
        if pid == os.getpid():
            command = "[sampler]"
        elif command and int(stat[16]) >= BACKGROUND_NICE:  # field 19, nice
            command = "[background] " + command
        found[pid] = ProcessCpu(int(stat[1]), command.strip(), own, system, reaped)
    return found


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(x) for x in PROC.joinpath("stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def _roles(processes: dict[int, ProcessCpu]) -> dict[int, str]:
    """Role per pid; the SuperLink's own SuperExec (which starts the ServerApp) is told
    apart from the SuperNodes' by its parent, and a SuperNode executor's child is a
    ClientApp (a forked one keeps its parent's command line)."""
    roles = {pid: role_of(p.command) for pid, p in processes.items()}
    for pid, p in processes.items():
        if roles[pid] == "superexec" and roles.get(p.ppid) == "superlink":
            roles[pid] = "superlink-exec"
    for pid, p in processes.items():
        if roles.get(p.ppid) == "superexec" and roles[pid] in ("superexec", "other"):
            roles[pid] = "clientapp"
    return roles


def _seen_of_gone(before: dict[int, ProcessCpu], after: dict[int, ProcessCpu]) -> dict[int, float]:
    """Per parent pid, the CPU seconds (own and reaped) already sampled of its children
    that ended in the interval: the part of its reaped growth not to count again."""
    seen: dict[int, float] = {}
    for pid, p in before.items():
        if pid not in after:
            seen[p.ppid] = seen.get(p.ppid, 0.0) + p.own_s + p.reaped_s
    return seen


REAPED_CHILDREN = {"superexec": "clientapp", "superlink-exec": "authority"}
"""Role of a process → the role its reaped children's CPU is billed to (others: itself)."""


def sample(out: Path, interval_s: float, duration_s: float) -> None:
    """Write one line per `interval_s` to `out` until `duration_s` passed or a signal."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    before = _processes()
    machine_before = _machine_ticks()
    last_unix = time.time()
    end = time.monotonic() + duration_s
    with out.open("a", encoding="utf-8") as file:
        while not stopping and time.monotonic() < end:
            time.sleep(interval_s)
            now_unix = time.time()
            after = _processes()
            machine_after = _machine_ticks()
            roles = _roles(after)
            seen_of_gone = _seen_of_gone(before, after)
            cpu_s: dict[str, float] = {}
            system_s: dict[str, float] = {}
            count: dict[str, int] = {}
            busiest: list[tuple[float, int, str, str]] = []
            for pid, p in after.items():
                role = roles[pid]
                count[role] = count.get(role, 0) + 1
                earlier = before.get(pid)
                used_s = max(p.own_s - (earlier.own_s if earlier else 0.0), 0.0)
                used_system_s = max(p.system_s - (earlier.system_s if earlier else 0.0), 0.0)
                cpu_s[role] = cpu_s.get(role, 0.0) + used_s
                system_s[role] = system_s.get(role, 0.0) + used_system_s
                busiest.append((used_s, pid, role, p.command[:TOP_COMMAND_CHARS]))
                reaped_s = p.reaped_s - (earlier.reaped_s if earlier else p.reaped_s)
                unseen_s = reaped_s - seen_of_gone.get(pid, 0.0)
                if unseen_s > 0:
                    child_role = REAPED_CHILDREN.get(role, role)
                    cpu_s[child_role] = cpu_s.get(child_role, 0.0) + unseen_s
            busy = machine_after[0] - machine_before[0]
            total = machine_after[1] - machine_before[1]
            record = {
                "unix_s": now_unix,
                "interval_s": interval_s,
                "elapsed_s": round(now_unix - last_unix, 3),
                "busy_share": busy / total if total else 0.0,
                "cpu_s": {role: round(s, 3) for role, s in sorted(cpu_s.items())},
                "system_s": {role: round(s, 3) for role, s in sorted(system_s.items())},
                "processes": dict(sorted(count.items())),
                "top": [
                    {"pid": pid, "role": role, "cpu_s": round(used_s, 3), "command": command}
                    for used_s, pid, role, command in sorted(busiest, reverse=True)[:TOP_PROCESSES]
                    if used_s > 0
                ],
            }
            file.write(json.dumps(record) + "\n")
            file.flush()
            before, machine_before, last_unix = after, machine_after, now_unix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="JSON-lines file to append samples to")
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--duration-s", type=float, default=600.0)
    args = parser.parse_args()
    sample(args.out, args.interval_s, args.duration_s)


if __name__ == "__main__":
    main()
