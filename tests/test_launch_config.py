"""LaunchConfig: NodeSpec node config (what Flower's --node-config carries, and clear errors
otherwise), and which Flower path runs: the accelerators, or stock Flower."""

import sys
from pathlib import Path

import pytest
from flwr.common.config import parse_config_args

from fl_crb.federation import accelerators
from fl_crb.federation.deploy.flower_commands import FlowerCommands
from fl_crb.federation.deploy.launch_config import LaunchConfig, NodeSpec
from fl_crb.runtime.placement import Loopback


def test_node_config_round_trips_through_flowers_parser():
    node = NodeSpec(
        "t1",
        "terminal",
        node_config={"mailbox": "/srv/a b/it's", "limit": 3, "rate-hz": 2.5, "on": True},
    )
    parsed = parse_config_args([node.node_config_argument()])
    assert parsed == {
        "role": "terminal",
        "name": "t1",
        "mailbox": "/srv/a b/it's",
        "limit": 3,
        "rate-hz": 2.5,
        "on": True,
    }
    assert hash(node) == hash(NodeSpec("t1", "terminal", node_config=dict(node.node_config)))


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"mail box": "/x"}, r"node 't1' node config key 'mail box': expected letters"),
        ({"mailbox": '/x"y'}, r"node 't1' node config 'mailbox' = .*double quote"),
        ({"mailbox": "/x\\y"}, r"'mailbox' = .*backslash"),
        ({"mailbox": "/x\ny"}, r"'mailbox' = .*control character"),
        ({"limit": float("nan")}, r"'limit' = nan: expected a finite number"),
        ({"limit": [1]}, r"'limit' = \[1\]: expected bool, int, float or str"),
        ({"role": "edge"}, r"'role': set by the launcher from NodeSpec.role"),
    ],
)
def test_bad_node_config_is_refused_naming_node_key_and_value(entries, message):
    with pytest.raises(ValueError, match=message):
        NodeSpec("t1", "terminal", node_config=entries)


def test_bad_name_is_refused():
    with pytest.raises(ValueError, match=r"node 'a\"b' node config 'name'"):
        NodeSpec('a"b', "terminal")


# -- which Flower path runs ------------------------------------------------------------------

TINY = str(Path(__file__).parent.parent / "topologies" / "tiny.yaml")
ASKED = {"supernode_idle_poll_s": 0.05, "warm_clientapps": True}
"""What `run_federated` asks for: both accelerators."""


def _commands(tmp_path, **settings) -> FlowerCommands:
    config = LaunchConfig(tmp_path, (NodeSpec("t1", "terminal"),), **settings)
    return FlowerCommands(config, Loopback())


def _supernode(commands: FlowerCommands) -> list[str]:
    return commands.supernode(NodeSpec("t1", "terminal"), "127.0.0.1:8000", 9094)


def test_accelerators_run_with_the_flower_they_patch(tmp_path):
    assert accelerators.installed_flower() == accelerators.SUPPORTED_FLOWER == "1.42.0"
    commands = _commands(tmp_path, **ASKED)
    assert commands.accelerators == ("fast_supernode", "warm_executor")
    assert commands.off_notice == ""
    command = _supernode(commands)
    assert command[:3] == [sys.executable, "-m", "fl_crb.federation.accelerators.fast_supernode"]
    assert command[3:5] == ["--idle-poll-s", "0.05"]
    assert command[-2:] == ["--isolation", "process"]
    assert commands.flower_record() == {
        "version": "1.42.0",
        "accelerators": ["fast_supernode", "warm_executor"],
        "accelerators_off": "",
        "supernode_idle_poll_s": 0.05,
        "superexec_poll_s": 0.25,
    }


def _assert_stock(commands: FlowerCommands) -> None:
    command = _supernode(commands)
    assert command[0].endswith("/flower-supernode")
    assert "--isolation" not in command
    record = commands.flower_record()
    assert record["accelerators"] == [] and record["supernode_idle_poll_s"] == 3.0


def test_another_flower_version_turns_the_accelerators_off_with_a_notice(tmp_path, monkeypatch):
    monkeypatch.setattr(accelerators, "installed_flower", lambda: "1.43.0")
    assert not accelerators.available()
    commands = _commands(tmp_path, **ASKED)
    assert commands.accelerators == ()
    _assert_stock(commands)
    assert commands.off_notice == (
        "Flower accelerators off (fast_supernode, warm_executor): flwr 1.43.0 is installed; "
        "they patch flwr 1.42.0 internals only; running stock Flower (flower-supernode's 3 s "
        "idle poll, a fresh flwr-clientapp per message)"
    )
    assert commands.flower_record()["version"] == "1.43.0"
    with pytest.raises(RuntimeError, match=r"fast_supernode: flwr 1\.43\.0 is installed"):
        accelerators.require_supported(accelerators.FAST_SUPERNODE)


def test_accelerators_false_runs_stock_flower_and_says_so(tmp_path):
    commands = _commands(tmp_path, accelerators=False, **ASKED)
    _assert_stock(commands)
    assert commands.off_notice.startswith(
        "Flower accelerators off (fast_supernode, warm_executor): turned off (--no-accelerators"
    )


def test_no_notice_when_no_accelerator_is_asked_for(tmp_path, monkeypatch):
    monkeypatch.setattr(accelerators, "installed_flower", lambda: "1.43.0")
    commands = _commands(tmp_path, warm_clientapps=False)
    _assert_stock(commands)
    assert commands.off_notice == ""


@pytest.mark.parametrize("command", ["federate", "emulate"])
def test_no_accelerators_flag_reaches_the_federated_run(tmp_path, command):
    from fl_crb.cli import build_parser
    from fl_crb.commands import emulate, federate

    argv = [command, "--topology", TINY, "--duration", "5s", "--out", str(tmp_path / "run")]
    argv += ["--local"] if command == "federate" else ["--policy", "crb-drqn-federated"]
    module = federate if command == "federate" else emulate
    on = module.configure(build_parser().parse_args(argv))
    off = module.configure(build_parser().parse_args([*argv, "--no-accelerators"]))
    federated = (on, off) if command == "federate" else (on.run, off.run)
    assert [config.accelerators for config in federated] == [True, False]
    if command == "emulate":
        fixed = [*argv[:-2], "--policy", "round-robin", "--no-accelerators"]
        with pytest.raises(ValueError, match=r"--no-accelerators: no federation runs with"):
            emulate.configure(build_parser().parse_args(fixed))
