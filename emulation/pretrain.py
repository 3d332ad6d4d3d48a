"""A CRB-DRQN policy pre-trained in simulation for an emulated run, cached per setting.

The emulator's default policy is CRB-DRQN starting from weights trained in the simulator.
`pretrained_weights` trains them with `fl-crb train`'s machinery (`TrainingRun`: the same
trainer, checkpoints, validation and best-weights selection) for a few dozen episodes,
then exports one network as the live terminals' weights file (`save_weights_file`, the
format `crb-drqn:WEIGHTS.npz` reads). The result is cached under
`<cache>/<topology>-<key>/`, the key hashing everything the training depends on (the
topology file's bytes, the terminal and rate overrides, the training settings), so a
second emulation of the same setting reuses it; a lock file keeps two emulations from
training the same setting at once, and an interrupted training resumes from its
checkpoint.

Which network: CRB-DRQN trains one network per edge, and a terminal downloads its
managing edge's. The live run gives every terminal one weights file, so the export
plays each edge's network as the policy of *every* terminal on the validation episodes
and keeps the one with the highest average reward. `version` in the file is the number
of training episodes, so the task log shows `crb-drqn@<episodes>`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fl_crb.runtime.config import run_topology

WEIGHTS_FILE = "weights.npz"
INFO_FILE = "pretrained.json"


@dataclass(frozen=True)
class PretrainConfig:
    """How the emulator pre-trains its default policy."""

    episodes: int = 40
    """Training episodes of `arrival_slots` slots (a few dozen: ~40 s at 25 terminals)."""
    epsilon_decay_episodes: int = 30
    """ε reaches its floor after this many episodes, leaving the rest nearly greedy."""
    validation_every_episodes: int = 5
    """Validate (and keep the best weights) every this many episodes once ε is at its floor."""
    validation_episodes: int = 2
    """Greedy episodes per validation, also used to choose the exported network."""
    arrival_slots: int = 100
    """Slots with arrivals per training episode."""
    seed: int = 0
    """Training seed."""
    cache_dir: str = "runs/pretrained"
    """Where pre-trained policies are kept, one folder per setting."""


@dataclass(frozen=True)
class Pretrained:
    """A pre-trained weights file and where it came from."""

    weights_path: Path
    """The `save_weights_file` file the terminals load."""
    directory: Path
    """Its cache folder (the training run is in `train/`)."""
    reused: bool
    """Whether it was found in the cache rather than trained now."""
    info: dict
    """`pretrained.json`: settings, chosen network, its validation metrics, training time."""


def cache_key(
    topology_path: str, terminals: int | None, rate_bps: float | None, config: PretrainConfig
) -> str:
    """Hash of everything the pre-trained weights depend on."""
    settings = {k: v for k, v in asdict(config).items() if k != "cache_dir"}
    material = json.dumps(
        {"terminals": terminals, "rate_bps": rate_bps, "settings": settings}, sort_keys=True
    ).encode()
    return hashlib.sha256(Path(topology_path).read_bytes() + material).hexdigest()[:12]


def pretrained_weights(
    topology_path: str,
    terminals: int | None,
    rate_bps: float | None,
    config: PretrainConfig,
    on_episode: Callable[[object], None] | None = None,
) -> Pretrained:
    """The cached weights for this setting, training them first if there are none."""
    topology = run_topology(topology_path, terminals, rate_bps)
    key = cache_key(topology_path, terminals, rate_bps, config)
    directory = Path(config.cache_dir) / f"{topology.name}-{key}"
    directory.mkdir(parents=True, exist_ok=True)
    lock = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another emulation training this setting: wait
        weights, info_path = directory / WEIGHTS_FILE, directory / INFO_FILE
        if weights.is_file() and info_path.is_file():
            return Pretrained(weights, directory, True, json.loads(info_path.read_text()))
        info = _train_and_export(topology, directory, config, on_episode)
        info_path.write_text(json.dumps(info, indent=1) + "\n")
        return Pretrained(weights, directory, False, info)
    finally:
        os.close(lock)


def _train_and_export(
    topology, directory: Path, config: PretrainConfig, on_episode: Callable | None
) -> dict:
    import time

    import torch

    from fl_crb.learn.features import FeatureScale
    from fl_crb.learn.greedy import GreedyPolicy
    from fl_crb.learn.qnetwork import QNetwork, weights_to_numpy
    from fl_crb.learn.weights_file import save_weights_file
    from fl_crb.mec.simulator import MECSimulator
    from fl_crb.policies.evaluation import evaluate_policy
    from fl_crb.training.checkpoint import load_networks
    from fl_crb.training.config import TrainConfig, validation_seed
    from fl_crb.training.run import TrainingRun, read_best

    torch.set_num_threads(1)
    params, terminals = topology.mec_params(), topology.terminal_count
    train_config = TrainConfig(
        algo="crb-drqn",
        seed=config.seed,
        arrival_slots=config.arrival_slots,
        epsilon_decay_episodes=config.epsilon_decay_episodes,
        validation_every_episodes=config.validation_every_episodes,
        validation_episodes=config.validation_episodes,
    )
    started = time.monotonic()
    training = TrainingRun.open(directory / "train", topology.name, params, terminals, train_config)
    training.train(config.episodes, checkpoint_every=10, on_episode=on_episode)
    train_s = time.monotonic() - started
    best = read_best(training.directory)
    if best is not None:
        states = torch.load(training.directory / "best.pt", weights_only=True)
    else:
        states = [saved["evaluation"] for saved in load_networks(training.checkpoint_path)]
    learner = train_config.learner
    scale = FeatureScale.from_params(params, terminals)
    simulator = MECSimulator(params, terminals)
    first_seed = validation_seed(config.seed, 0)
    candidates = []
    for edge, state in enumerate(states):
        network = QNetwork(params.edges, params.history_slots, learner.hidden, learner.lstm_hidden)
        network.load_state_dict(state)
        network.requires_grad_(False)
        policy = GreedyPolicy("crb-drqn", [network], np.zeros(terminals, np.int64), scale)
        metrics = evaluate_policy(
            simulator, policy, config.validation_episodes, config.arrival_slots, first_seed
        )
        candidates.append((metrics.avg_reward, edge, network, metrics.as_dict()))
    _, edge, network, metrics = max(candidates, key=lambda c: c[0])
    save_weights_file(directory / WEIGHTS_FILE, weights_to_numpy(network), config.episodes)
    return {
        "topology": topology.name,
        "terminals": terminals,
        "settings": asdict(config),
        "weights_from": f"best validated snapshot, episode {best['episode']}"
        if best
        else "last checkpoint",
        "chosen_edge_network": edge + 1,
        "validation_as_shared_policy": metrics,
        "candidates_avg_reward": [round(c[0], 4) for c in candidates],
        "train_s": round(train_s, 1),
        "version": config.episodes,
    }
