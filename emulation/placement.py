"""`MininetPlacement`: each party runs in its own Mininet host, reached at its emulated address.

A Mininet host is a shell process holding a network namespace and a mount namespace of
its own; `Host.popen` is nothing more than `mnexec -da <shell pid>` in front of the
command (`-a`: enter that process's network and mount namespaces, measured: the started
process's `/proc/self/ns/mnt` and `ns/net` are the host shell's; `-d`: a session of its
own). `command` puts `mnexec -a <shell pid>` in front, so a coordinator built on
`asyncio.create_subprocess_exec` (`run_local`, the federated run) needs no change to run
its parties on the emulated network: their traffic then crosses the shaped links. Not
`-d`: the coordinator already starts every party in a session of its own (so a Ctrl-C at
the terminal reaches the coordinator, which stops the parties in order), and `mnexec -d`
in a process that leads its own group forks and exits at once, which the coordinator
would take for the party's death.

Every host has a private state directory (`emulation.host_state`): processes on host h find
it at `state_dir(h)` (one fixed path, the same on every host) and the emulator reads it at
`state_backing_dir(h)` (`RUN/hosts/h`), also after the run. A process started by
`command` runs as root: it sees its own state directory and not the other hosts' backing
folders, but root can get around mounts. A process started by `confined_command` runs as
the host's own unprivileged user, with no capabilities: it reads and writes its host's
state directory and cannot reach another host's, by any path. Given a real-time priority,
it may also take SCHED_FIFO (`realtime_grant`): by an RLIMIT_RTPRIO where the emulator
can raise it, else by CAP_SYS_NICE alone, which changes scheduling and reads no file.

Servers bind to every address of their host (`0.0.0.0` inside the namespace holds only
that host's interfaces): an edge is reached by terminals on the access net and by the
cloud on the core net (`emulation.plan`), and one listening socket serves both.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emulation.network import EmulatedNetwork

ANY_ADDRESS = "0.0.0.0"
"""Bind address of servers: all interfaces of the host's own namespace."""
RLIMIT_RTPRIO, SYS_NICE = "RLIMIT_RTPRIO", "sys_nice"
"""How a confined process is let take SCHED_FIFO (`realtime_grant`)."""
CAP_SYS_RESOURCE_BIT = 24
"""CAP_SYS_RESOURCE's bit in /proc/self/status's CapEff (linux/capability.h)."""


def realtime_grant() -> str:
    """How `confined_command` lets a host's user take SCHED_FIFO: `RLIMIT_RTPRIO` (an
    RLIMIT_RTPRIO raised to the priority, as limits.conf's `rtprio` does on a real
    machine; no capability) when the emulator may raise resource limits
    (CAP_SYS_RESOURCE), else `SYS_NICE`: the one capability CAP_SYS_NICE, ambient, which
    lets the host's processes change any process's scheduling but reads no file. Measured
    in a container without CAP_SYS_RESOURCE: `prlimit --rtprio` fails ("Operation not
    permitted"); with ambient CAP_SYS_NICE a confined process takes SCHED_FIFO 5 and
    still cannot read root's files."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            effective = int(line.split()[1], 16)
            return RLIMIT_RTPRIO if effective >> CAP_SYS_RESOURCE_BIT & 1 else SYS_NICE
    return SYS_NICE


class MininetPlacement:
    """Every topology host is its Mininet host in the running `net`."""

    label = "mininet"

    def __init__(self, net: EmulatedNetwork) -> None:
        self.net = net
        """The running emulated network."""

    def command(self, host: str, argv: list[str]) -> list[str]:
        """`argv` run as root in host `host`'s network and mount namespaces (as
        `Host.popen` runs it)."""
        pid = self.net.host(host).pid
        return ["mnexec", "-a", str(pid), *argv]

    def confined_command(
        self,
        host: str,
        argv: list[str],
        realtime_priority: int | None = None,
        session_nice: int = 0,
    ) -> list[str]:
        """`argv` run in host `host`'s namespaces as the host's own user
        (`net.host_uid`), with no supplementary groups, no capabilities and no way to
        gain any (setuid binaries included), and HOME set to the host's state directory.
        `realtime_priority`: it may also take SCHED_FIFO up to that priority; a negative
        `session_nice`: it may also give its sessions that nice value (the SuperLink's,
        `LaunchConfig.superlink_session_nice`); both by `realtime_grant`'s way (an
        RLIMIT_RTPRIO / RLIMIT_NICE, else CAP_SYS_NICE). `prlimit`, `setpriv` and `env`
        exec in place, so the process keeps the pid the caller sees."""
        uid = self.net.host_uid(host)
        caps = ["--inh-caps=-all", "--bounding-set=-all"]
        limits = (
            [f"--rtprio={realtime_priority}:{realtime_priority}"]
            if realtime_priority is not None
            else []
        )
        if session_nice < 0:  # RLIMIT_NICE's value is 20 minus the lowest nice allowed
            limits.append(f"--nice={20 - session_nice}:{20 - session_nice}")
        prlimit: list[str] = []
        if limits and realtime_grant() == RLIMIT_RTPRIO:
            prlimit = ["prlimit", *limits]
        elif limits:
            caps = [f"--inh-caps=-all,+{SYS_NICE}", f"--ambient-caps=+{SYS_NICE}",
                    f"--bounding-set=-all,+{SYS_NICE}"]  # fmt: skip
        return self.command(host, [
            *prlimit, "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            *caps, "--no-new-privs", "env", f"HOME={self.state_dir(host)}", *argv,
        ])  # fmt: skip

    def state_dir(self, host: str) -> Path:
        """Where processes on `host` keep their state: its private state directory, at
        the same path on every host."""
        return self.net.state_dir(host)

    def state_backing_dir(self, host: str) -> Path:
        """Where the emulator (root namespace) reads `host`'s state directory, during the
        run and after it: `RUN/hosts/<host>`."""
        return self.net.state_backing_dir(host)

    def listen_address(self, host: str) -> str:
        """All of the host's interfaces (peers reach an edge on either of its nets)."""
        self.net.address(host)  # an unknown host name fails here, naming the known ones
        return ANY_ADDRESS

    def address(self, host: str, peer: str | None = None) -> str:
        """The emulated address by which `peer` reaches `host` (the access net for a
        terminal reaching its edge, the core net for the cloud reaching an edge)."""
        return self.net.address(host, peer)
