"""Run slots: which emulator runs live on this machine, and what each one created.

Several emulations may run on one machine at once (engineers share machines, CI runs
tests beside them), and everything an emulation creates in the root namespace is named
after its run slot: the bridges `fcrb<slot>a` / `fcrb<slot>c` and their ports, the
iptables chains `FLCRB<slot>-UP` / `FLCRB<slot>-DOWN`, and the NFQUEUE numbers
`QUEUE_BASE + slot * QUEUES_PER_SLOT` onwards, and the hosts' temporary state directories
`<state dir>/slot-<n>-hosts` (`emulation.host_state`). A run claims its slot by holding an
exclusive `flock` on `<state dir>/slot-<n>.lock` for as long as its process lives, and
records what it created in `<state dir>/slot-<n>.json` as it goes. The kernel drops the
lock when the process dies, however it dies, so a slot whose lock is free but whose
state file remains marks leftovers of a killed run, which `teardown.cleanup` removes.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_DIR = Path("/run/fl-crb")
"""Where slot locks and state files live: /run is cleared on reboot, like the network."""
SLOT_COUNT = 32
"""How many emulations may run on one machine at once."""
QUEUE_BASE = 20000
"""NFQUEUE number of slot 0's first queue; far from the low numbers tools use by default."""
QUEUES_PER_SLOT = 1000
"""NFQUEUE numbers reserved per slot: two per shaped link, so up to 500 shaped links."""


def chain_names(slot: int) -> tuple[str, str]:
    """(up, down) iptables chains of `slot`: packets entering / leaving the bridges."""
    return f"FLCRB{slot}-UP", f"FLCRB{slot}-DOWN"


def queue_range(slot: int) -> range:
    """The NFQUEUE numbers reserved for `slot`."""
    start = QUEUE_BASE + slot * QUEUES_PER_SLOT
    return range(start, start + QUEUES_PER_SLOT)


@dataclass
class RunState:
    """What one run created, saved as it is created so a killed run can be cleaned."""

    slot: int
    """The run slot."""
    owner_pid: int
    """Process that claimed the slot."""
    bridges: list[str] = field(default_factory=list)
    """Bridges (and so their `<bridge>-eth<n>` ports) in the root namespace."""
    host_namespaces: dict[str, int] = field(default_factory=dict)
    """Network-namespace inode of each emulated host: every process found in one of
    these namespaces belongs to the run."""
    delayd_pid: int | None = None
    """Process id of the delay daemon, if one runs."""
    bridge_nf_changed: bool = False
    """Whether the run switched `net.bridge.bridge-nf-call-iptables` on."""
    hosts_dir: str | None = None
    """Backing folder of the hosts' private state directories, recorded before any of
    them exists: cleanup hands a kept `RUN/hosts` back to root from the hosts' users."""


class RunSlot:
    """An exclusive claim on one run slot, held until `release` or process exit."""

    def __init__(self, slot: int, lock_fd: int, state_dir: Path) -> None:
        self.slot = slot
        """The slot number."""
        self.state = RunState(slot=slot, owner_pid=os.getpid())
        """What the run has created so far; `save` writes it out."""
        self._lock_fd: int | None = lock_fd
        self._state_dir = state_dir

    @property
    def state_path(self) -> Path:
        """The slot's state file."""
        return state_path(self._state_dir, self.slot)

    @classmethod
    def claim(cls, state_dir: Path = STATE_DIR) -> tuple[RunSlot, RunState | None]:
        """Claim the lowest free slot; also return the state a killed run left in it (the
        caller cleans that up before building anything)."""
        state_dir.mkdir(parents=True, exist_ok=True)
        for slot in range(SLOT_COUNT):
            fd = try_lock(state_dir, slot)
            if fd is None:
                continue
            return cls(slot, fd, state_dir), load_state(state_dir, slot)
        raise RuntimeError(
            f"all {SLOT_COUNT} emulator run slots in {state_dir} are in use by live "
            "processes; stop an emulation or wait for one to finish"
        )

    def save(self) -> None:
        """Write the state file (atomically: a crash leaves the old or the new one)."""
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self.state), indent=1))
        os.replace(temporary, self.state_path)

    def release(self) -> None:
        """Forget the state and free the slot; call only once everything is torn down."""
        self.state_path.unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None


def state_path(state_dir: Path, slot: int) -> Path:
    """Where slot `slot` keeps its state."""
    return state_dir / f"slot-{slot}.json"


def try_lock(state_dir: Path, slot: int) -> int | None:
    """A descriptor holding `slot`'s lock, or None if a live process holds it."""
    fd = os.open(state_dir / f"slot-{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def load_state(state_dir: Path, slot: int) -> RunState | None:
    """The state a run left in `slot`, or None if there is none (or it is unreadable,
    in which case cleanup falls back to the names that derive from the slot)."""
    path = state_path(state_dir, slot)
    try:
        data = json.loads(path.read_text())
        return RunState(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        return RunState(slot=slot, owner_pid=0)
