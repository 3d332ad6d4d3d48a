"""The emulator deploys the role commands: each host runs its own, from its own bundle.

The fast test checks that the authority's command line `run_roles` builds carries the
run's settings: parsed by `fl-crb`'s own parser, it gives back the same target, method
and round settings. The root test builds tests/roles-topology.yaml (cloud, edge1, t1,
t2) on Mininet with private host state directories and runs `run_roles` with TLS and
node authentication for 8 s of arrivals. While it runs, it looks at every process in
the hosts' network namespaces (each must run as its host's user) and has a process on
t1 try to read the cloud's private keys by every route there is (the run folder's key
copy, the hosts' backing folder, the cloud's state path through `/proc/<pid>/root`).
After it: uploads accepted, weights signed by the edge and loaded by the terminals,
security true/true, every role exited 0, and every path on every command line and in
every config a host recorded lies in that host's own state directory or the code.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from emulation.collect import federation_rounds
from emulation.data_plane import emulated_federation, emulation_parties
from emulation.role_deployment import authority_arguments, not_carried
from fl_crb.commands.federation_args import method_from_arguments, round_settings
from fl_crb.commands.roles import authority_run_config
from fl_crb.federation.deploy.run_config import FederatedRunConfig, Quorum, federated_parties
from fl_crb.learn.method_config import MethodConfig
from fl_crb.policies.spec import Federated
from fl_crb.runtime.compare import compare_run
from fl_crb.runtime.config import RunTarget
from tests.host_records import recorded_strings
from tests.test_emulation_network import real_network

TOPOLOGY = Path(__file__).resolve().parent / "roles-topology.yaml"
"""One edge (edge1) and two terminals (t1, t2); the cloud host is "cloud"."""
CODE_ROOTS = (Path(__file__).resolve().parents[1], Path(sys.prefix), Path(sys.base_prefix))
"""What every host may read besides its own state: the code and the Python it runs on."""

needs_mnexec = pytest.mark.skipif(
    shutil.which("mnexec") is None, reason="needs mnexec (apt-get install mininet)"
)


def test_the_authority_command_line_carries_the_run_settings(tmp_path: Path) -> None:
    from fl_crb.cli import build_parser
    from fl_crb.commands.common import run_target_arguments

    method = MethodConfig()
    method = replace(
        method,
        min_pool_trajectories=7,
        pool_alpha=0.75,
        learner=replace(method.learner, lr=3e-4, hidden=48),
    )
    target = RunTarget(str(TOPOLOGY), 6.5, terminals_override=2, arrival_rate_override_bps=3e6)
    state = str(tmp_path / "s")
    parties = federated_parties(
        target, state, start_lead_s=2.5, pace_uplink=False, pace_ticks_per_slot=6,
        realtime_priority=5,
    )  # fmt: skip
    config = FederatedRunConfig(
        parties,
        method=method,
        round_period_s=1.5,
        round_deadline_s=25.0,
        quorum=Quorum(share=0.5),
        epsilon=0.2,
        batches_per_round=3,
        accelerators=False,
        supernode_idle_poll_s=1.0,
        superexec_poll_s=0.5,
    )
    flags = authority_arguments(config, topology=str(TOPOLOGY), start=None)
    args = build_parser().parse_args(
        ["authority", "--bundle", str(tmp_path), "--state", state, *flags]
    )
    assert authority_run_config(args) == config  # the whole run, as the authority takes it
    assert not_carried(config) == []
    assert run_target_arguments(args) == target
    assert method_from_arguments(args, None) == method
    assert round_settings(args) == {
        "round_period_s": 1.5,
        "round_deadline_s": 25.0,
        "quorum": Quorum(share=0.5),
        "epsilon": 0.2,
        "batches_per_round": 3,
    }
    assert args.start_lead == 2.5 and args.no_accelerators and not args.insecure
    assert args.policy is None


def test_the_authority_refuses_the_relay_uplink_its_terminals_would_not_use(
    tmp_path: Path, capsys
) -> None:
    from fl_crb.cli import main

    command = ["authority", "--bundle", str(tmp_path), "--state", str(tmp_path / "s")]
    assert (
        main([*command, "--topology", str(TOPOLOGY), "--duration", "30s", "--uplink", "relay"]) == 2
    )
    err = capsys.readouterr().err
    assert "--uplink relay is not in the role commands yet" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_settings_the_authority_has_no_flag_for_are_named() -> None:
    parties = federated_parties(
        RunTarget(str(TOPOLOGY), 2.0), "out", overrun_threshold_fraction=0.5
    )
    config = FederatedRunConfig(parties, max_authority_restarts=1)
    assert not_carried(config) == [
        "max_authority_restarts=1",
        "parties.overrun_threshold_fraction=0.5",
    ]
    assert (
        not_carried(FederatedRunConfig(federated_parties(RunTarget(str(TOPOLOGY), 2.0), "out")))
        == []
    )


def test_test_faults_are_refused_naming_them(tmp_path: Path) -> None:
    import asyncio

    from emulation.role_deployment import run_roles

    config = FederatedRunConfig(
        federated_parties(RunTarget(str(TOPOLOGY), 2.0), str(tmp_path)),
        upload_faults=(("t1", "tamper@1"),),
    )
    with pytest.raises(ValueError, match="upload_faults and test_transit_faults"):
        asyncio.run(run_roles(config, None))  # type: ignore[arg-type]


# -- the role commands on Mininet ------------------------------------------------------------


@pytest.fixture
def run_folder() -> Iterator[Path]:
    """A folder every user may traverse (pytest's tmp_path is root-only, which would fence
    the hosts off for the wrong reason)."""
    folder = Path(tempfile.mkdtemp(prefix="fl-crb-roles-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


PROBE = r"""
import json, os, sys
targets = sys.argv[1:]
def readable(path):
    try:
        with open(path, "rb") as file:
            file.read(1)
        return True
    except OSError:
        return False
print(json.dumps({"uid": os.getuid(), "readable": [t for t in targets if readable(t)],
                  "tried": len(targets)}))
"""


class HostProcesses:
    """Samples the processes of every host's network namespace while the run goes on."""

    def __init__(self, net) -> None:
        from emulation.teardown import namespace_inode

        self.net = net
        self.shells = {net.host(h.name).pid for h in net.hosts()}
        self.host_of = {namespace_inode(net.host(h.name).pid): h.name for h in net.hosts()}
        self.seen: dict[int, tuple[str, int, str]] = {}
        """pid → (host, uid, command line)."""
        self.realtime: set[int] = set()
        """pids seen running with SCHED_FIFO."""

    def sample(self) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in self.shells:
                continue
            try:
                host = self.host_of.get(os.stat(entry / "ns" / "net").st_ino)
                uid = entry.stat().st_uid
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if host is None or not argv[0]:
                continue
            if Path(argv[0].decode()).name in ("mnexec", "prlimit", "setpriv", "env"):
                continue  # the exec chain of `confined_command`, before its user switch
            self.seen[int(entry.name)] = (host, uid, b" ".join(argv).decode(errors="replace"))
            with contextlib.suppress(OSError):
                if os.sched_getscheduler(int(entry.name)) == os.SCHED_FIFO:
                    self.realtime.add(int(entry.name))

    def pid_on(self, host: str, needle: str) -> int | None:
        return next(
            (pid for pid, (h, _, line) in self.seen.items() if h == host and needle in line), None
        )


@needs_mnexec
@real_network
def test_the_emulator_runs_each_role_confined_from_its_own_bundle(run_folder: Path) -> None:
    import asyncio

    from emulation.network import EmulatedNetwork
    from emulation.placement import MininetPlacement, realtime_grant
    from emulation.role_deployment import RUN_DIR, run_roles
    from fl_crb.federation.deploy.launch_config import SUPERLINK_SESSION_NICE
    from fl_crb.topology import load_topology

    out = run_folder / "run"
    parties = replace(
        emulation_parties(RunTarget(str(TOPOLOGY), 8.0), Federated(), str(out)), start_lead_s=3.0
    )
    config = emulated_federation(
        parties, method=replace(MethodConfig(), min_pool_trajectories=4), round_period_s=1.0
    )
    started = time.monotonic()
    net = EmulatedNetwork(load_topology(TOPOLOGY), hosts_dir=out / "hosts")
    with net:
        placement = MininetPlacement(net)
        outcome: dict = {}

        def data_plane() -> None:
            try:
                outcome["summary"] = asyncio.run(run_roles(config, placement))
            except BaseException as error:  # reported by the main thread
                outcome["error"] = error

        runner = threading.Thread(target=data_plane)
        runner.start()
        processes = HostProcesses(net)
        probe = None
        run_record_during_run = False  # the emulator's progress lines count slots from it
        while runner.is_alive():
            processes.sample()
            run_record_during_run |= (out / "run.json").exists()
            cloud_pid = processes.pid_on("cloud", "flower-superlink")
            if probe is None and cloud_pid is not None:
                probe = _probe_from_t1(placement, out, cloud_pid)
            runner.join(0.5)
        state = {h.name: net.state_backing_dir(h.name) / RUN_DIR for h in net.hosts()}
        uids = {h.name: net.host_uid(h.name) for h in net.hosts()}
        recorded = {host: recorded_strings(folder) for host, folder in state.items()}
    wall_s = time.monotonic() - started
    if "error" in outcome:
        raise outcome["error"]
    summary = outcome["summary"]
    logs = {h: (out / "logs" / f"{h}.role.log").read_text()[-3000:] for h in uids}

    roles = summary["role_commands"]
    assert {h: roles[h]["exit"] for h in uids} == dict.fromkeys(uids, 0), logs
    assert roles["not_carried"] == []  # the emulation's polls, pacing and priority reached all
    assert roles["realtime"] == realtime_grant()
    assert roles["leftovers_killed"] == []  # each command stopped its own processes
    assert summary["security"] == {"tls": True, "node_auth": True}
    federation = summary["federation"]
    assert federation["roles"]["missing_reports"] == [], federation["roles"]
    assert federation["rounds"] >= 2 and federation["uploads_accepted"] > 0, federation
    assert federation["uploads_accepted"] == federation["uploads_posted"] - sum(
        federation["uploads_rejected"].values()
    )
    assert summary["tasks"] > 0 and summary["failed_parties"] == [], summary
    for host in ("t1", "t2"):  # the edge's signed weights, checked and acted with
        terminal = federation["terminals"][host]
        assert terminal["weights_versions_loaded"], terminal
        assert any(label.startswith("crb-drqn@") for label in terminal["tasks_by_decider"])
    # the run folder is what the emulator's collect and report read
    assert len(federation_rounds(out)) == federation["rounds"]
    assert compare_run(out)["tasks"] == summary["tasks"]
    assert run_record_during_run

    # every process in every host ran as that host's user
    assert processes.pid_on("cloud", "flower-superlink"), processes.seen
    assert processes.pid_on("t1", "--auth-supernode-private-key"), processes.seen
    foreign = [(pid, h, u, line) for pid, (h, u, line) in processes.seen.items() if u != uids[h]]
    assert foreign == []
    # the authority, confined as it is, gave its SuperLink's session the larger CPU share
    superlink = json.loads((state["cloud"] / "flower" / "superlink.json").read_text())
    assert superlink["session_nice"] == SUPERLINK_SESSION_NICE
    # the runtime parties, and only they, took the emulation's real-time priority
    fifo = {processes.seen[pid][2].split(" -m ")[-1].split()[0] for pid in processes.realtime}
    assert fifo == {"fl_crb.federation.edge", "fl_crb.federation.terminal"}, fifo
    # and no host reached the cloud's private keys
    assert probe is not None, "the SuperLink was never seen running"
    assert probe["uid"] == uids["t1"] and probe["tried"] >= 3
    assert probe["readable"] == []
    # every path a host was given lies in its own state directory, or the code
    inside = net.config.host_state_dir
    for host, strings in recorded.items():
        assert strings, f"{host} recorded no configs or command lines"
        paths = [s for s in strings if s.startswith("/")]
        elsewhere = [
            p for p in paths if not any(Path(p).is_relative_to(r) for r in (inside, *CODE_ROOTS))
        ]
        assert elsewhere == [], f"{host} was given paths outside its state: {elsewhere}"
    print(f"role deployment on Mininet: wall time {wall_s:.1f} s")


def _probe_from_t1(placement, out: Path, cloud_pid: int) -> dict:
    """What a process on t1, as t1's user, can read of the cloud's private keys."""
    keys = out / "keys" / "cloud"
    private = [
        p.relative_to(keys)
        for p in keys.rglob("*")
        if p.is_file() and p.stat().st_mode & 0o077 == 0
    ]
    inside = placement.state_dir("cloud") / "bundle"
    targets = []
    for name in private:
        targets += [
            str(keys / name),
            str(out / "hosts" / "cloud" / "bundle" / name),
            str(inside / name),
            f"/proc/{cloud_pid}/root{inside / name}",
        ]
    probe = subprocess.run(
        placement.confined_command("t1", [sys.executable, "-c", PROBE, *targets]),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    return json.loads(probe.stdout)
