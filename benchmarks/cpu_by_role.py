"""CPU use per role of a federated run, sampled from /proc while the run goes on.

`round_breakdown.py` reads what the parties log; CPU is not logged by any of them, so this
sampler runs beside the run (`fl-crb emulate` or `fl-crb federate --local`) and writes one
JSON line per interval to OUT: the machine's busy share (/proc/stat) and, per role, the
CPU seconds its processes used in the interval and how many there were. Roles are told by
command line (`role_of`); a ClientApp forked by the warm executor carries its parent's
command line, so the executor's reaped children (`cutime`+`cstime`) are billed to
"clientapp", as are processes whose parent is an executor.

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
    """The role of a process from its command line ("other" when none matches)."""
    for fragment, role in ROLES:
        if fragment in command:
            return role
    return "other"


def _processes() -> dict[int, tuple[int, str, float, float]]:
    """pid → (ppid, command line, own CPU s, reaped children's CPU s)."""
    found = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        own = (int(stat[11]) + int(stat[12])) * TICK_S  # utime, stime (fields 14, 15)
        reaped = (int(stat[13]) + int(stat[14])) * TICK_S  # cutime, cstime
        if int(stat[16]) >= BACKGROUND_NICE:  # field 19, nice
            command = "[background] " + command
        found[int(entry.name)] = (int(stat[1]), command.strip(), own, reaped)
    return found


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    fields = [int(x) for x in PROC.joinpath("stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def _roles(processes: dict[int, tuple[int, str, float, float]]) -> dict[int, str]:
    """Role per pid; the SuperLink's own SuperExec (which starts the ServerApp) is told
    apart from the SuperNodes' by its parent, and a SuperNode executor's child is a
    ClientApp (a forked one keeps its parent's command line)."""
    roles = {pid: role_of(command) for pid, (_, command, _, _) in processes.items()}
    for pid, (ppid, _, _, _) in processes.items():
        if roles[pid] == "superexec" and roles.get(ppid) == "superlink":
            roles[pid] = "superlink-exec"
    for pid, (ppid, _, _, _) in processes.items():
        if roles.get(ppid) == "superexec" and roles[pid] in ("superexec", "other"):
            roles[pid] = "clientapp"
    return roles


REAPED_CHILDREN = {"superexec": "clientapp", "superlink-exec": "authority"}
"""Role of a process → the role its reaped children's CPU is billed to (others: itself)."""


def sample(out: Path, interval_s: float, duration_s: float) -> None:
    """Write one line per `interval_s` to `out` until `duration_s` passed or a signal."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    before = _processes()
    machine_before = _machine_ticks()
    end = time.monotonic() + duration_s
    with out.open("a", encoding="utf-8") as file:
        while not stopping and time.monotonic() < end:
            time.sleep(interval_s)
            now_unix = time.time()
            after = _processes()
            machine_after = _machine_ticks()
            roles = _roles(after)
            cpu_s: dict[str, float] = {}
            count: dict[str, int] = {}
            busiest: list[tuple[float, int, str, str]] = []
            for pid, (_, command, own, reaped) in after.items():
                role = roles[pid]
                count[role] = count.get(role, 0) + 1
                _, _, own_before, reaped_before = before.get(pid, (0, "", 0.0, reaped))
                used_s = max(own - own_before, 0.0)
                cpu_s[role] = cpu_s.get(role, 0.0) + used_s
                busiest.append((used_s, pid, role, command[:TOP_COMMAND_CHARS]))
                if reaped > reaped_before:
                    child_role = REAPED_CHILDREN.get(role, role)
                    cpu_s[child_role] = cpu_s.get(child_role, 0.0) + reaped - reaped_before
            busy = machine_after[0] - machine_before[0]
            total = machine_after[1] - machine_before[1]
            record = {
                "unix_s": now_unix,
                "interval_s": interval_s,
                "busy_share": busy / total if total else 0.0,
                "cpu_s": {role: round(s, 3) for role, s in sorted(cpu_s.items())},
                "processes": dict(sorted(count.items())),
                "top": [
                    {"pid": pid, "role": role, "cpu_s": round(used_s, 3), "command": command}
                    for used_s, pid, role, command in sorted(busiest, reverse=True)[:TOP_PROCESSES]
                    if used_s > 0
                ],
            }
            file.write(json.dumps(record) + "\n")
            file.flush()
            before, machine_before = after, machine_after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="JSON-lines file to append samples to")
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--duration-s", type=float, default=600.0)
    args = parser.parse_args()
    sample(args.out, args.interval_s, args.duration_s)


if __name__ == "__main__":
    main()
