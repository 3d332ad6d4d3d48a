"""The single-process trainer: terminal agents, the learning scheme and the simulator, wired.

One simulated slot, in order:
1. weights: at slots where `slot mod tag == 0` every terminal downloads the weights of its
   group (its managing edge's learner for CRB-DRQN, its own learner for the ablation);
2. observe → act: the terminals with a new task encode their observation; the Q-network
   runs once per group over that group's terminals (they hold identical weights), and each
   terminal's own `TerminalAgent` draws its ε-greedy action and records the decision.
   That forward pass is the trainer's own torch `QNetwork` per group, loaded with the
   weights the group's terminals downloaded: the agents' numpy network (what a live
   terminal runs) agrees with it to ~1e-6, but the torch pass keeps training results
   bit-for-bit what they were before terminals lost torch;
3. `turn.step(actions)`, the slot `fl_crb.mec.episode.play_episode` yields;
4. the slot's outcomes go to the terminals that made the decisions (`SlotEvents` rewards,
   matched by arrival slot, which is unique per terminal);
5. trajectories completed in this slot are uploaded to the scheme's pool(s);
6. the learners train (the scheme's schedule: one step per learner every
   `train_interval_slots` slots once its pool is large enough).
After the drain every terminal checks that it got every outcome (`end_episode`); its
last decision's transition completes with its first decision of the next episode.
ε is fixed within an episode and follows `TrainConfig.epsilon(episode)`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from fl_crb.learn.features import FeatureScale, encode_batch
from fl_crb.learn.greedy import GreedyPolicy
from fl_crb.learn.pool import Trajectory
from fl_crb.learn.qnetwork import QNetwork, load_numpy_weights
from fl_crb.learn.terminal_agent import TerminalAgent
from fl_crb.mec.episode import play_episode
from fl_crb.mec.metrics import RunMetrics, run_metrics
from fl_crb.mec.params import MECParams
from fl_crb.mec.simulator import MECSimulator
from fl_crb.policies.evaluation import evaluate_policy
from fl_crb.training.config import TrainConfig, training_seed, validation_seed
from fl_crb.training.schemes import make_scheme


@dataclass(frozen=True)
class EpisodeMetrics:
    """What one training episode did, as written to `metrics.jsonl`."""

    episode: int
    """0-based index of the episode within the run."""
    arrival_seed: int
    """Seed of the episode's arrivals (`training_seed`)."""
    tasks: int
    avg_reward: float
    """Mean reward per task (−delay in slots, Const if dropped), exploration included."""
    avg_delay_s: float
    """Mean delay of finished tasks, in seconds."""
    failure_rate: float
    """Dropped / arrived."""
    epsilon: float
    pool_trajectories: int
    """Trajectories held in the pool(s) at the end of the episode."""
    train_steps: int
    """Training steps taken in this episode, all learners together."""
    loss: float
    """Mean loss over those steps (NaN if none)."""
    wall_s: float
    """Wall-clock time of the episode, acting and training included."""
    cpu_s: float
    """CPU time the training process spent on the episode (all its threads). Other jobs on
    a shared machine stretch `wall_s` but hardly move this, so Figure 4's convergence
    times are compared in it."""

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of_episode(
        cls,
        episode: int,
        arrival_seed: int,
        metrics: RunMetrics,
        epsilon: float,
        pool_trajectories: int,
        losses: list[float],
        started: EpisodeStart,
    ) -> EpisodeMetrics:
        """The record of an episode from its run metrics, its losses and its start;
        shared by every trainer so `metrics.jsonl` reads alike."""
        return cls(
            episode=episode,
            arrival_seed=arrival_seed,
            tasks=metrics.tasks,
            avg_reward=metrics.avg_reward,
            avg_delay_s=metrics.avg_delay_s,
            failure_rate=metrics.failure_rate,
            epsilon=epsilon,
            pool_trajectories=pool_trajectories,
            train_steps=len(losses),
            loss=float(np.mean(losses)) if losses else float("nan"),
            wall_s=time.perf_counter() - started.wall_s,
            cpu_s=time.process_time() - started.cpu_s,
        )


@dataclass(frozen=True)
class EpisodeStart:
    """The clocks when an episode began (`EpisodeStart.now()`), for its wall and CPU time."""

    wall_s: float
    """`time.perf_counter()`."""
    cpu_s: float
    """`time.process_time()`."""

    @classmethod
    def now(cls) -> EpisodeStart:
        return cls(time.perf_counter(), time.process_time())


class Trainer:
    """Trains `config.algo` on a simulated system of `terminals` terminals."""

    def __init__(self, params: MECParams, terminals: int, config: TrainConfig) -> None:
        self.params = params
        self.terminals = terminals
        self.config = config
        self.scale = FeatureScale.from_params(params, terminals, config.learner.terminal_code_bits)
        self.simulator = MECSimulator(params, terminals)
        managing_edge = self.simulator.terminal.managing_edge
        self.scheme = make_scheme(
            config, terminals, params.edges, params.history_slots, managing_edge
        )
        seeds = np.random.SeedSequence([config.seed, 1]).spawn(terminals)
        self.agents = [
            TerminalAgent(self.scale, params.history_slots, config.agent_config(), seed)
            for seed in seeds
        ]
        self._group_networks: dict[int, tuple[QNetwork, int]] = {}
        """Per group: the torch network holding the weights its terminals downloaded last,
        and their version."""
        self.rng = np.random.default_rng([config.seed, 2])
        """Draws the learners' batches from the pool(s)."""
        self.episode = 0
        """Episodes completed so far (the index of the next one)."""
        self._validation_simulator: MECSimulator | None = None

    def run_episode(self) -> EpisodeMetrics:
        """Train through one episode; returns its metrics."""
        start = EpisodeStart.now()
        epsilon = self.config.epsilon(self.episode)
        for agent in self.agents:
            agent.epsilon = epsilon
        seed = training_seed(self.config.seed, self.episode)
        sim = self.simulator
        actions = np.zeros(self.terminals, dtype=np.int64)
        losses: list[float] = []
        for turn in play_episode(sim, seed=seed, arrival_slots=self.config.arrival_slots):
            self._refresh_weights(turn.slot)
            uploads = self._act(turn.observations, actions)
            for d, arrival, reward in turn.step(actions):
                uploads += [(d, t) for t in self.agents[d].reward(arrival, reward)]
            self.scheme.upload(uploads)
            losses += self.scheme.train(turn.slot, self.rng)
        for agent in self.agents:
            agent.end_episode()
        metrics = run_metrics(sim.log.records(), self.params.slot_s, sim.drop_reward)
        self.episode += 1
        return EpisodeMetrics.of_episode(
            self.episode - 1,
            seed,
            metrics,
            epsilon,
            self.scheme.stored_trajectories(),
            losses,
            start,
        )

    def validate(self) -> RunMetrics:
        """The learners' current weights played greedily on the validation episodes (a
        simulator of its own, so training's state and RNGs are untouched)."""
        if self._validation_simulator is None:
            self._validation_simulator = MECSimulator(self.params, self.terminals)
        policy = GreedyPolicy(
            self.config.algo,
            [learner.evaluation for learner in self.scheme.learners],
            self.scheme.group_of,
            self.scale,
        )
        return evaluate_policy(
            self._validation_simulator,
            policy,
            self.config.validation_episodes,
            self.config.arrival_slots,
            validation_seed(self.config.seed, 0),
        )

    def _refresh_weights(self, slot: int) -> None:
        """Terminals whose download is due fetch their group's current weights."""
        due = [d for d, agent in enumerate(self.agents) if agent.refresh_due(slot)]
        served: dict[int, tuple] = {}
        for d in due:
            group = int(self.scheme.group_of[d])
            if group not in served:
                served[group] = self.scheme.weights(group)
                self._load_group_network(group, *served[group])
            self.agents[d].load_weights(*served[group])

    def _load_group_network(self, group: int, weights: dict[str, np.ndarray], version: int) -> None:
        """Put the weights served to `group` into the trainer's network for that group."""
        if group in self._group_networks:
            network = self._group_networks[group][0]
        else:
            sizes = self.config.agent_config()
            network = QNetwork(
                self.params.edges,
                self.params.history_slots,
                sizes.hidden,
                sizes.lstm_hidden,
                self.scale.code_bits,
            ).requires_grad_(False)
        load_numpy_weights(network, weights)
        self._group_networks[group] = (network, version)

    def _act(self, observations, actions: np.ndarray) -> list[tuple[int, Trajectory]]:
        """Fill `actions` for the terminals with a new task; returns trajectories their
        decisions completed."""
        arriving = np.flatnonzero(observations.has_task)
        uploads: list[tuple[int, Trajectory]] = []
        if arriving.size == 0:
            return uploads
        scalars, load = encode_batch(observations, arriving, self.scale)
        groups = self.scheme.group_of[arriving]
        slot = observations.slot
        for group in np.unique(groups):
            members = np.flatnonzero(groups == group)
            network, version = self._group_networks[int(group)]
            with torch.no_grad():
                q_values = network(
                    torch.from_numpy(scalars[members]), torch.from_numpy(load[members])
                ).numpy()
            for row, k in enumerate(members.tolist()):
                d = int(arriving[k])
                agent = self.agents[d]
                if agent.weights_version != version:
                    raise RuntimeError(
                        f"terminal {d} of group {group} holds weights version "
                        f"{agent.weights_version}, its group's latest download is {version}; "
                        "downloads must happen at the same slots"
                    )
                actions[d] = agent.choose(q_values[row])
                uploads += [(d, t) for t in agent.record(slot, scalars[k], load[k], actions[d])]
        return uploads
