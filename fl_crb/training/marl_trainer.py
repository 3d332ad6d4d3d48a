"""The episode loop of the learning baselines, with the same surface as CRB-DRQN's `Trainer`.

`fl_crb.training.run.TrainingRun` drives either trainer alike: `run_episode()` gives
the episode's `EpisodeMetrics` (written to `metrics.jsonl`), `validate()` plays the current
policy greedily on the validation seeds (the same model selection every learner gets),
`save`/`load` write and read a checkpoint between episodes so that a resumed run continues
identically, and `policy_state()` is what `best.pt` keeps.

Per episode: ε for the algorithms that explore ε-greedily (QMIX, with CRB-DRQN's schedule;
the stochastic policies explore by sampling and report ε = 0), one episode on the training
seed of the episode (`training_seed`, the arrivals CRB-DRQN trains on), collected with
delayed rewards and drained (`rollout.collect_episode`), then the algorithm's update.
`EpisodeMetrics.pool_trajectories` reports what the algorithm keeps between episodes: QMIX's
replay buffer (slot transitions), 0 for the on-policy learners; `train_steps` counts its
gradient updates (per terminal for the per-terminal learners).

A checkpoint is a directory: `state.json` (format, algo, terminals, episodes done, the
algorithm's RNG) and `algorithm.pt` (its networks, optimisers and buffers, tensors only),
written to `<dir>.partial` and moved into place, the previous one kept as `<dir>.old`
until then, as `fl_crb.training.checkpoint` does.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from fl_crb.learn.features import FeatureScale
from fl_crb.marl.decentralized_ac import DecentralizedAC
from fl_crb.marl.jodrl_pp import JODRLPP
from fl_crb.marl.mappo import MAPPO
from fl_crb.marl.policy import MarlPolicy
from fl_crb.marl.qmix import QMIX
from fl_crb.marl.rollout import collect_episode
from fl_crb.mec.metrics import RunMetrics, run_metrics
from fl_crb.mec.params import MECParams
from fl_crb.mec.simulator import MECSimulator
from fl_crb.policies.evaluation import evaluate_policy
from fl_crb.training.checkpoint import (
    checkpoint_exists,
    read_torch_file,
    recovery,
    replacing_directory,
    write_synced,
)
from fl_crb.training.config import TrainConfig, training_seed, validation_seed
from fl_crb.training.drqn_trainer import EpisodeMetrics, EpisodeStart

ALGORITHM_CLASSES = {cls.name: cls for cls in (DecentralizedAC, QMIX, MAPPO, JODRLPP)}
"""The baselines by name."""

CHECKPOINT_FORMAT = "fl-crb-marl-checkpoint-1"


def make_algorithm(config: TrainConfig, params: MECParams, terminals: int):
    """The baseline `config.algo`, freshly initialised from `config.seed`."""
    if config.algo not in ALGORITHM_CLASSES:
        raise ValueError(
            f"{config.algo!r} is not a learning baseline; choose one of {list(ALGORITHM_CLASSES)}"
        )
    return ALGORITHM_CLASSES[config.algo](config.algorithm_setup(), params, terminals)


class MarlTrainer:
    """Trains `config.algo` (a baseline) on a simulated system of `terminals` terminals."""

    def __init__(self, params: MECParams, terminals: int, config: TrainConfig) -> None:
        self.params = params
        self.terminals = terminals
        self.config = config
        self.scale = FeatureScale.from_params(params, terminals)
        self.simulator = MECSimulator(params, terminals)
        self.algorithm = make_algorithm(config, params, terminals)
        self.episode = 0
        """Episodes completed so far (the index of the next one)."""
        self._validation_simulator: MECSimulator | None = None

    def run_episode(self) -> EpisodeMetrics:
        start = EpisodeStart.now()
        epsilon = self.config.epsilon(self.episode) if self.algorithm.uses_epsilon else 0.0
        self.algorithm.epsilon = epsilon
        seed = training_seed(self.config.seed, self.episode)

        def act(features, terminals, state):
            return self.algorithm.act(features, terminals, state, explore=True)

        rollout = collect_episode(self.simulator, self.scale, seed, self.config.arrival_slots, act)
        losses = self.algorithm.update(rollout)
        metrics = run_metrics(rollout.records, self.params.slot_s, self.simulator.drop_reward)
        self.episode += 1
        return EpisodeMetrics.of_episode(
            self.episode - 1, seed, metrics, epsilon, self.algorithm.stored(), losses, start
        )

    def policy(self) -> MarlPolicy:
        """The current policy played greedily."""
        return MarlPolicy(self.config.algo, self.algorithm, self.scale, self.terminals)

    def validate(self) -> RunMetrics:
        """Greedy play on the validation seeds, in a simulator of its own."""
        if self._validation_simulator is None:
            self._validation_simulator = MECSimulator(self.params, self.terminals)
        return evaluate_policy(
            self._validation_simulator,
            self.policy(),
            self.config.validation_episodes,
            self.config.arrival_slots,
            validation_seed(self.config.seed, 0),
        )

    def policy_state(self) -> dict:
        """What `best.pt` keeps: the networks greedy play needs."""
        return self.algorithm.actor_state()

    # -- checkpoints ---------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the whole training state to `directory`, atomically (module docstring)."""
        directory = Path(directory)
        state = {
            "format": CHECKPOINT_FORMAT,
            "algo": self.config.algo,
            "terminals": self.terminals,
            "episode": self.episode,
            "rng": self.algorithm.rng.bit_generator.state,
        }
        with replacing_directory(directory) as partial:
            write_synced(partial / "state.json", lambda f: f.write(json.dumps(state).encode()))
            write_synced(
                partial / "algorithm.pt", lambda f: torch.save(self.algorithm.state_dict(), f)
            )
        return directory

    def load(self, directory: str | Path) -> None:
        """Restore what `save` wrote, for a trainer built with the same setup."""
        directory = Path(directory)
        if not checkpoint_exists(directory):
            raise FileNotFoundError(f"no checkpoint in {directory} (nor in {directory}.old)")
        found = (
            directory
            if (directory / "state.json").is_file()
            else directory.with_name(directory.name + ".old")
        )
        state = json.loads((found / "state.json").read_text())
        expected = {
            "format": CHECKPOINT_FORMAT,
            "algo": self.config.algo,
            "terminals": self.terminals,
        }
        for key, value in expected.items():
            if state.get(key) != value:
                raise ValueError(
                    f"{found / 'state.json'}: checkpoint has {key} = {state.get(key)!r}, "
                    f"this trainer needs {value!r}"
                )
        self.algorithm.load_state_dict(
            read_torch_file(found / "algorithm.pt", "MARL algorithm state", recovery(found))
        )
        self.algorithm.rng.bit_generator.state = state["rng"]
        self.episode = int(state["episode"])
