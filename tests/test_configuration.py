"""Configuration by composition: what a run targets is described once, bigger configs embed
smaller ones, and each default has one source.

Guards issue 18 item 1: `RunTarget` is embedded by the local run (and through it by the
federated run and the emulation); the federated run embeds the `MethodConfig` simulated
training extends; the emulation embeds the data plane's whole config; every learning
setting of the federated face is reachable from `fl-crb federate` and `fl-crb emulate`.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from emulation.data_plane import (
    EMULATION_POLL_S,
    EMULATION_REALTIME_PRIORITY,
    emulated_federation,
    emulation_parties,
)
from emulation.run import EmulationConfig, _record_emulation
from fl_crb.cli import build_parser
from fl_crb.commands import emulate, federate
from fl_crb.federation.deploy.run_config import FederatedRunConfig, federated_parties
from fl_crb.federation.edge_learner_service import EdgeServiceConfig
from fl_crb.learn.learner_config import LearnerConfig
from fl_crb.learn.method_config import TARGET_UPDATE_STEPS, MethodConfig, TerminalAgentConfig
from fl_crb.learn.numpy_qnetwork import weight_shapes
from fl_crb.learn.weights_file import save_weights_file
from fl_crb.policies.spec import Baseline, Federated, WeightsFile
from fl_crb.runtime.config import RunSpec, RunTarget
from fl_crb.runtime.local_run import LocalRunConfig
from fl_crb.training.config import TrainConfig

TINY = str(Path(__file__).parent.parent / "topologies" / "tiny.yaml")

RUN_JSON_KEYS = [
    "algo", "seed", "arrival_slots", "learner", "trajectory_length", "refresh_slots",
    "pool_capacity", "pool_alpha", "min_pool_trajectories", "train_interval_slots",
    "epsilon_start", "epsilon_end", "epsilon_decay_episodes", "validation_every_episodes",
    "validation_episodes",
]  # fmt: skip
"""`fl-crb train`'s run.json "config" keys, in the order runs have always recorded them."""


def _weights(path: Path, hidden: int = 64, lstm_hidden: int = 32) -> Path:
    shapes = weight_shapes(edges=2, hidden=hidden, lstm_hidden=lstm_hidden)
    save_weights_file(path, {k: np.zeros(s, np.float32) for k, s in shapes.items()}, 3)
    return path


# -- one default per setting -------------------------------------------------------------------


def test_the_target_period_has_one_default_that_training_and_the_federation_share():
    federated = FederatedRunConfig(federated_parties(RunTarget(TINY, 5.0), "out"))
    assert federated.method.learner.target_update_steps == TARGET_UPDATE_STEPS
    assert TrainConfig().learner.target_update_steps == TARGET_UPDATE_STEPS
    assert federated.method == MethodConfig() == TrainConfig().method()
    # The edge learner service embeds the method's LearnerConfig instead of restating it.
    service = {f.name: f for f in fields(EdgeServiceConfig)}
    assert "target_update_steps" not in service and service["learner"].type == "LearnerConfig"


def test_training_extends_the_method_and_the_terminals_take_its_part():
    method_fields = [f.name for f in fields(MethodConfig)]
    assert [f.name for f in fields(TrainConfig)][: len(method_fields)] == method_fields
    assert TerminalAgentConfig() == MethodConfig().agent_config()
    narrow = TrainConfig(learner=LearnerConfig(hidden=24, lstm_hidden=8))
    assert narrow.agent_config() == TerminalAgentConfig(hidden=24, lstm_hidden=8)
    with pytest.raises(ValueError, match=r"MethodConfig.min_pool_trajectories \(2\) must be at"):
        MethodConfig(min_pool_trajectories=2)
    with pytest.raises(ValueError, match=r"TrainConfig.pool_alpha must be >= 0, got -1"):
        TrainConfig(pool_alpha=-1)


def test_train_run_json_keeps_its_flat_layout_and_order():
    data = TrainConfig(seed=7).to_dict()
    assert list(data) == RUN_JSON_KEYS
    assert data["learner"]["target_update_steps"] == TARGET_UPDATE_STEPS
    assert TrainConfig.from_dict(json.loads(json.dumps(data))) == TrainConfig(seed=7)


# -- the target, described once -----------------------------------------------------------------


def test_the_target_is_embedded_by_the_local_run_the_party_spec_and_the_emulation(tmp_path):
    target = RunTarget(TINY, 5.0, terminals_override=3, arrival_rate_override_bps=3e6, seed=4)
    local = LocalRunConfig(target, Baseline("round-robin"), str(tmp_path / "run"))
    for config in (LocalRunConfig, RunSpec, EmulationConfig, FederatedRunConfig):
        names = {f.name for f in fields(config)}
        assert not names & {"topology_path", "terminals_override", "duration_s", "seed"}, config
    emulation = EmulationConfig(emulation_parties(target, Baseline("round-robin"), "out"))
    assert emulation.parties.target is target and local.target is target
    with pytest.raises(ValueError, match=r"duration must be > 0 seconds, got 0"):
        RunTarget(TINY, 0)


# -- every learning setting from the command line ---------------------------------------------


FLAGS = [
    "--lr", "0.002", "--gamma", "0.8", "--batch-size", "8", "--target-period", "50",
    "--hidden", "16", "--lstm-hidden", "4", "--trajectory-length", "6", "--refresh-slots", "5",
    "--pool-capacity", "100", "--pool-alpha", "0.5", "--min-pool", "8", "--round-period", "3s",
    "--epsilon", "0.2", "--batches-per-round", "2",
]  # fmt: skip
FROM_FLAGS = MethodConfig(
    learner=LearnerConfig(
        lr=0.002,
        gamma=0.8,
        batch_trajectories=8,
        target_update_steps=50,
        hidden=16,
        lstm_hidden=4,
    ),
    trajectory_length=6,
    refresh_slots=5,
    pool_capacity=100,
    pool_alpha=0.5,
    min_pool_trajectories=8,
)


def _args(*argv: str):
    return build_parser().parse_args(list(argv))


def test_federate_reaches_every_learning_setting(tmp_path):
    out = str(tmp_path / "run")
    base = ["federate", "--topology", TINY, "--local", "--duration", "5s", "--out", out]
    config = federate.configure(_args(*base, "--seed", "4", "--rate", "3Mbps", *FLAGS))
    assert config.method == FROM_FLAGS
    assert (config.round_period_s, config.epsilon, config.batches_per_round) == (3.0, 0.2, 2)
    assert config.parties.target == RunTarget(TINY, 5.0, None, 3e6, 4)
    assert config.parties.policy == Federated()
    defaults = federate.configure(_args(*base))
    assert defaults.method == MethodConfig()
    assert (defaults.round_period_s, defaults.epsilon, defaults.batches_per_round) == (
        FederatedRunConfig.round_period_s,
        FederatedRunConfig.epsilon,
        None,
    )


def test_federate_takes_the_widths_of_its_starting_weights(tmp_path):
    weights = _weights(tmp_path / "narrow.npz", hidden=24, lstm_hidden=8)
    base = ["federate", "--topology", TINY, "--local", "--duration", "5s", "--out", "x"]
    config = federate.configure(_args(*base, "--policy", f"crb-drqn:{weights}"))
    assert (config.method.learner.hidden, config.method.learner.lstm_hidden) == (24, 8)
    assert config.parties.policy == Federated(WeightsFile(str(weights)))
    assert config.method.agent_config() == TerminalAgentConfig(hidden=24, lstm_hidden=8)
    same = federate.configure(_args(*base, "--policy", str(weights), "--lstm-hidden", "8"))
    assert same.method == config.method
    with pytest.raises(ValueError, match=r"--lstm-hidden 4 does not fit --policy crb-drqn:"):
        federate.configure(_args(*base, "--policy", str(weights), "--lstm-hidden", "4"))


def test_an_emulation_carries_a_federated_run_whose_learning_settings_come_from_the_flags(
    tmp_path,
):
    weights = _weights(tmp_path / "w.npz", hidden=16, lstm_hidden=4)
    out = str(tmp_path / "run")
    base = ["emulate", "--topology", TINY, "--duration", "10s", "--out", out]
    config = emulate.configure(_args(*base, "--policy", f"crb-drqn:{weights}", *FLAGS))
    assert isinstance(config.run, FederatedRunConfig)
    assert config.run.method == FROM_FLAGS
    assert (config.run.round_period_s, config.run.epsilon, config.run.batches_per_round) == (
        3.0,
        0.2,
        2,
    )
    assert config.run.supernode_idle_poll_s == config.run.superexec_poll_s == EMULATION_POLL_S
    parties = config.parties
    assert parties is config.run.parties and parties.policy == Federated(WeightsFile(str(weights)))
    assert not parties.pace_uplink and parties.realtime_priority == EMULATION_REALTIME_PRIORITY
    assert parties.target == RunTarget(TINY, 10.0)

    fixed = emulate.configure(_args(*base, "--policy", str(weights), "--no-federation"))
    assert fixed.run == fixed.parties and fixed.parties.policy == WeightsFile(str(weights))
    with pytest.raises(ValueError, match=r"--lr, --min-pool: no federation runs with --policy"):
        emulate.configure(_args(*base, "--policy", "round-robin", "--lr", "0.1", "--min-pool", "8"))
    with pytest.raises(ValueError, match=r"--no-federation contradicts --policy crb-drqn-fed"):
        emulate.configure(_args(*base, "--policy", "crb-drqn-federated", "--no-federation"))


def test_an_emulation_deploys_the_role_commands_unless_it_needs_the_coordinator(tmp_path):
    weights = _weights(tmp_path / "w.npz", hidden=16, lstm_hidden=4)
    faults = tmp_path / "faults.yaml"
    faults.write_text("name: x\nevents:\n  - {at: 2s, for: 1s, do: link-down, link: t1}\n")
    base = ["emulate", "--topology", TINY, "--duration", "10s", "--policy", str(weights)]

    def deploys_roles(*flags: str) -> bool:
        out = ["--out", str(tmp_path / f"run{len(list(tmp_path.iterdir()))}")]
        return emulate.configure(_args(*base, *out, *flags)).deploy_roles

    assert deploys_roles()  # federated: as a real deployment runs it
    assert not deploys_roles("--faults", str(faults))  # the coordinator restarts parties
    assert not deploys_roles("--uplink", "relay")  # relay runs in the coordinator only
    assert not deploys_roles("--no-federation")
    assert not deploys_roles("--deploy", "coordinator")
    with pytest.raises(ValueError, match=r"--faults with --deploy roles"):
        deploys_roles("--deploy", "roles", "--faults", str(faults))


def test_an_emulation_refuses_paced_parties_and_a_federated_policy_without_federation():
    target = RunTarget(TINY, 5.0)
    with pytest.raises(ValueError, match=r"must not pace their uplinks"):
        EmulationConfig(LocalRunConfig(target, Baseline("round-robin"), "out"))
    with pytest.raises(ValueError, match=r"crb-drqn-federated needs the federation"):
        EmulationConfig(emulation_parties(target, Federated(), "out"))
    assert isinstance(EmulationConfig(emulated_federation(emulation_parties(
        target, Federated(), "out"))).run, FederatedRunConfig)  # fmt: skip


def test_an_emulation_records_its_whole_config_in_run_json(tmp_path):
    parties = emulation_parties(RunTarget(TINY, 5.0), Federated(), str(tmp_path))
    config = EmulationConfig(emulated_federation(parties, method=MethodConfig(pool_capacity=99)))
    (tmp_path / "run.json").write_text(json.dumps({"placement": "mininet", "run": {}}))
    _record_emulation(tmp_path, config)
    recorded = json.loads((tmp_path / "run.json").read_text())
    assert recorded["placement"] == "mininet"
    assert recorded["emulation"]["run"]["method"]["pool_capacity"] == 99
    assert recorded["emulation"]["run"]["parties"]["policy"] == {"kind": "federated", "start": None}
    assert recorded["emulation"]["network"]  # the network's settings, as text
