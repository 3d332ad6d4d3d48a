"""A killed run's host state directories are cleaned up, like the rest of what it left.

Each test kills (SIGKILL) a real emulator run on `topologies/tiny.yaml` after two of its
hosts wrote files as their own users, so the hosts' state directories hold files that
root does not own, and checks the two ways cleanup reaches them: `fl-crb netcheck
--cleanup`, and the next run that claims the killed run's slot. A slot's temporary folder
(`<state dir>/slot-<n>-hosts`) is removed; a kept `RUN/hosts` stays, handed back to root.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulation.host_state import HOST_UID_BASE, temporary_hosts_dir
from emulation.runstate import STATE_DIR, load_state
from tests.test_emulation_network import TOPOLOGIES, leftovers, real_network

TINY = TOPOLOGIES / "tiny.yaml"
KILLED_RUN = r"""
import subprocess, sys, time
from pathlib import Path
from emulation.network import EmulatedNetwork
from emulation.placement import MininetPlacement
from fl_crb.topology import load_topology
hosts_dir = Path(sys.argv[2]) if sys.argv[2] else None
net = EmulatedNetwork(load_topology(sys.argv[1]), hosts_dir=hosts_dir).start()
placement = MininetPlacement(net)
for host in ("cloud", "t1"):
    state = placement.state_dir(host)
    write = f"mkdir {state}/sub; echo {host} > {state}/sub/file"
    subprocess.run(placement.confined_command(host, ["sh", "-ec", write]), check=True)
print(net.plan.slot, flush=True)
time.sleep(600)
"""


@dataclass
class KilledRun:
    """What a killed run left: its slot, host namespaces and hosts' folder."""

    slot: int
    namespaces: set[int]
    hosts_dir: Path


@pytest.fixture
def killed_runs() -> Iterator:
    """Start one emulator run per entry of `hosts_dirs` (its hosts' state kept there, or
    in the slot's temporary folder for None), all at once so that no run takes another's
    freed slot; SIGKILL them once their hosts wrote their files, and return what each
    left. Every slot used is cleaned up after the test."""
    from emulation.teardown import cleanup

    def start_and_kill(*hosts_dirs: Path | None) -> list[KilledRun]:
        runs, killed = [], []
        try:
            for hosts_dir in hosts_dirs:
                argv = [sys.executable, "-c", KILLED_RUN, str(TINY), str(hosts_dir or "")]
                runs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
                line = runs[-1].stdout.readline()
                assert line, "the run to be killed did not start"
                killed.append(_what_it_left(int(line), hosts_dir))
        finally:
            for run in runs:
                run.send_signal(signal.SIGKILL)
                run.wait()
        return killed

    try:
        yield start_and_kill
    finally:
        cleanup()


def _what_it_left(slot: int, hosts_dir: Path | None) -> KilledRun:
    """The live run in `slot`, as its state file records it; its hosts wrote files."""
    state = load_state(STATE_DIR, slot)
    expected = hosts_dir or temporary_hosts_dir(STATE_DIR, slot)
    assert state is not None and state.hosts_dir == str(expected)
    owners = {p.stat().st_uid for p in expected.rglob("*")}
    assert owners and min(owners) >= HOST_UID_BASE, "host files belong to host users"
    assert (expected / "t1" / "sub" / "file").read_text() == "t1\n"
    return KilledRun(slot, set(state.host_namespaces.values()), expected)


@real_network
def test_netcheck_cleanup_removes_temporary_and_hands_back_kept_host_state(
    killed_runs, tmp_path: Path
) -> None:
    kept, temporary = killed_runs(tmp_path / "run" / "hosts", None)
    entries = len(list(kept.hosts_dir.rglob("*")))
    assert entries == 7 + 2 + 2  # tiny.yaml's host folders, two sub-folders, two files

    cleanup = subprocess.run(
        [sys.executable, "-m", "fl_crb.cli", "netcheck", "--cleanup"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert cleanup.returncode == 0, cleanup.stderr
    lines = cleanup.stdout.splitlines()
    assert f"slot {kept.slot}: handed {entries} files in {kept.hosts_dir} back to root" in lines
    removed = (
        f"slot {temporary.slot}: removed the hosts' state directories in {temporary.hosts_dir}"
    )
    assert removed in lines
    assert not temporary.hosts_dir.exists()
    assert (kept.hosts_dir / "cloud" / "sub" / "file").read_text() == "cloud\n"
    assert {p.stat().st_uid for p in kept.hosts_dir.rglob("*")} == {0}
    assert {p.stat().st_gid for p in kept.hosts_dir.rglob("*")} == {0}
    for run in (kept, temporary):
        assert leftovers(run.slot, run.namespaces) == []


@real_network
def test_the_next_run_on_a_killed_runs_slot_starts_with_fresh_host_state(killed_runs) -> None:
    from emulation.network import EmulatedNetwork
    from fl_crb.topology import load_topology

    (killed,) = killed_runs(None)
    with EmulatedNetwork(load_topology(TINY)) as net:
        assert net.plan.slot == killed.slot, "another run took the freed slot meanwhile"
        assert net.hosts_dir == killed.hosts_dir
        assert os.listdir(net.state_backing_dir("t1")) == []  # not the killed run's files
        assert net.state_backing_dir("t1").stat().st_uid == net.host_uid("t1")
    assert not killed.hosts_dir.exists()
    assert leftovers(killed.slot, killed.namespaces) == []
