"""The pieces of the Flower restarts that need no federated run: a process started again
with its very command line, the SuperLink's state file on its command line, the limits,
the run summary's account, ending a node's session when the SuperLink cannot be reached,
a SuperLink with its state in memory given up when it dies, and (slow: it waits out
Flower's 60 s session) a SuperNode restarted on stock Flower, without `node_session`.

The restarts themselves, with real Flower processes, are in tests/test_crash_recovery.py
(one federated run in which a SuperNode and the SuperLink are killed).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from fl_crb.federation.deploy.flower_commands import FlowerCommands
from fl_crb.federation.deploy.flower_supervisor import _exit_reason, flower_supervision
from fl_crb.federation.deploy.launch_config import LaunchConfig, NodeSpec
from fl_crb.federation.deploy.node_session import main as node_session
from fl_crb.federation.deploy.processes import ProcessSet
from fl_crb.federation.deploy.run_config import FederatedRunConfig, federated_parties
from fl_crb.federation.keys import KeyFolder, create_keys, plan_for_topology
from fl_crb.runtime.config import RunTarget
from fl_crb.runtime.placement import Loopback

TINY = str(Path(__file__).parent.parent / "topologies" / "tiny.yaml")


def _exited(processes: ProcessSet, name: str) -> int:
    deadline = time.monotonic() + 10
    while (status := processes.exit_status(name)) is None:
        assert time.monotonic() < deadline, f"{name} did not exit"
        time.sleep(0.01)
    return status


def test_a_process_restarts_with_its_command_folder_and_environment(tmp_path):
    processes = ProcessSet()
    script = "import os, sys; print(os.getcwd(), os.environ['MARK'], sys.argv[1]); sys.exit(3)"
    command = [sys.executable, "-c", script, "first"]
    environment = {**os.environ, "MARK": "kept"}
    first = processes.spawn("p", command, tmp_path, environment, tmp_path / "p.log")
    assert _exited(processes, "p") == 3
    again = processes.restart("p", tmp_path / "p.again.log")
    assert again != first and _exited(processes, "p") == 3
    assert (tmp_path / "p.again.log").read_text() == f"{tmp_path} kept first\n"
    processes.stop(["p"], 1.0)


def test_a_running_process_is_not_restarted(tmp_path):
    processes = ProcessSet()
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    pid = processes.spawn("p", sleeper, tmp_path, dict(os.environ), tmp_path / "p.log")
    with pytest.raises(ValueError, match=rf"'p' \(pid {pid}\) still runs"):
        processes.restart("p", tmp_path / "p.log")
    os.kill(pid, signal.SIGKILL)
    assert _exited(processes, "p") == -signal.SIGKILL
    assert _exit_reason(processes.exit_status("p")) == "was killed by SIGKILL"
    processes.restart("p", tmp_path / "p.log")
    processes.stop(["p"], 1.0)
    assert processes.names() == []


def test_exit_reasons_name_the_signal_or_the_status():
    assert _exit_reason(-signal.SIGTERM) == "was killed by SIGTERM"
    assert _exit_reason(1) == "exited with status 1"


def test_the_superlink_keeps_its_state_in_a_file_only_when_asked(tmp_path):
    commands = FlowerCommands(LaunchConfig(tmp_path, (NodeSpec("t1", "terminal"),)), Loopback())
    assert "--database" not in commands.superlink("127.0.0.1", 9092)
    database = tmp_path / "superlink" / "state.db"
    assert commands.superlink("127.0.0.1", 9092, database)[-2:] == ["--database", str(database)]


def test_negative_restart_limits_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"LaunchConfig.max_restarts -1: expected >= 0"):
        LaunchConfig(tmp_path, (NodeSpec("t1", "terminal"),), max_restarts=-1)
    parties = federated_parties(RunTarget(TINY, 5.0), str(tmp_path / "run"))
    with pytest.raises(ValueError, match=r"max_flower_restarts must be >= 0, got -2"):
        FederatedRunConfig(parties, max_flower_restarts=-2)


def test_a_run_without_flower_counts_no_flower_restarts():
    assert flower_supervision(None) == {
        "superlink_restarts": 0,
        "supernode_restarts": {},
        "flower_given_up": {},
    }


def test_ending_a_session_at_an_unreachable_superlink_is_one_line(tmp_path, capsys):
    from fl_crb.topology import load_topology

    create_keys(tmp_path / "keys", plan_for_topology(load_topology(TINY), []))
    keys = KeyFolder(tmp_path / "keys")
    arguments = ["--superlink", "127.0.0.1:9", "--root-certificates", str(keys.ca_certificate)]
    arguments += ["--auth-supernode-private-key", str(keys.supernode_key("t1")), "--node-id", "7"]
    assert node_session(arguments) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "node_session: the SuperLink at 127.0.0.1:9 is unreachable"
    )


@pytest.mark.parametrize(("told", "runs"), [(b"go\n", True), (b"", False)])
def test_a_standby_flwr_call_runs_only_when_told(told, runs):
    import subprocess

    command = [sys.executable, "-m", "fl_crb.federation.deploy.standby_cli", "--version"]
    done = subprocess.run(command, input=told, capture_output=True, timeout=120)
    assert done.returncode == 0
    assert (b"Flower version" in done.stdout) == runs, done.stdout + done.stderr


def test_a_killed_superlink_whose_state_was_in_memory_is_given_up_not_restarted(tmp_path):
    """Real Flower: without `durable_state` a new SuperLink would refuse every node, so the
    supervisor gives the dead one up at once, saying why. The SuperLink's session got its
    larger CPU share (root) or says it kept the default one."""
    from fl_crb.federation.deploy.flower_supervisor import MEMORY_ONLY
    from fl_crb.federation.deploy.launch_config import SUPERLINK_SESSION_NICE
    from fl_crb.federation.deploy.launcher import LocalFederation

    federation = LocalFederation(
        LaunchConfig(tmp_path, (NodeSpec("t1", "terminal"),), max_restarts=2)
    )
    federation.start()
    try:
        record = json.loads((tmp_path / "superlink.json").read_text())
        if os.geteuid() == 0:
            assert record["session_nice"] == SUPERLINK_SESSION_NICE
            autogroup = Path(f"/proc/{record['pid']}/autogroup").read_text()
            assert autogroup.endswith(f"nice {SUPERLINK_SESSION_NICE}\n")
        else:
            assert record["session_nice"] == 0
        os.kill(federation.processes.pid("superlink"), signal.SIGKILL)
        supervisor = federation.supervisor
        deadline = time.monotonic() + 20
        while "superlink" not in supervisor.given_up:
            assert time.monotonic() < deadline, "the dead SuperLink was not given up"
            time.sleep(0.1)
        assert supervisor.given_up["superlink"] == f"it was killed by SIGKILL; {MEMORY_ONLY}"
        assert supervisor.restarts["superlink"] == 0
        assert f"superlink: given up: it was killed by SIGKILL; {MEMORY_ONLY}" in (
            supervisor.log_path.read_text()
        )
    finally:
        federation.stop()


@pytest.mark.slow
def test_a_killed_supernode_on_stock_flower_is_back_under_its_node_id_once_its_session_ends(
    tmp_path,
):
    """Real Flower as shipped (no accelerators, so no `node_session` to end the dead
    node's session), TLS and node authentication: the SuperLink refuses the node until it
    counts the old session offline (up to 60 s), and the supervisor keeps trying until
    then; the node comes back under its registered node id."""
    from fl_crb.federation.deploy.launch_config import Security
    from fl_crb.federation.deploy.launcher import LocalFederation
    from fl_crb.topology import load_topology

    create_keys(tmp_path / "keys", plan_for_topology(load_topology(TINY), []))
    config = LaunchConfig(
        tmp_path / "run",
        (NodeSpec("t1", "terminal"),),
        security=Security(tmp_path / "keys"),
        accelerators=False,
        max_restarts=1,
    )
    federation = LocalFederation(config)
    federation.start()
    try:
        node_id = federation.node_ids["t1"]
        os.kill(federation.processes.pid("node-t1"), signal.SIGKILL)
        supervisor, log = federation.supervisor, federation.supervisor.log_path
        deadline = time.monotonic() + 150
        while not (log.exists() and "restart 1" in log.read_text()):
            assert not supervisor.given_up, supervisor.given_up
            assert time.monotonic() < deadline, "t1's SuperNode did not come back"
            time.sleep(0.5)
        back = f"t1: restart 1: it was killed by SIGKILL; online again as node {node_id}"
        assert back in log.read_text()
        assert federation.node_ids["t1"] == node_id
    finally:
        federation.stop()
