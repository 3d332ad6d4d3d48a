"""Configuration of a simulated training run: every hyperparameter, and why it has its value.

The paper states RMSprop with lr 1e-3, γ 0.9, batches of 4 trajectories, n = 4 and ε
decaying from 1 to 0.01; everything else is chosen here, or for the method's own settings
(learner, n, `tag`, pool) in `fl_crb.learn.method_config`, which `TrainConfig` extends,
and documented field by field.
Also here: the arrival seeds of training and evaluation episodes, kept disjoint.

Seed ranges (arrivals of one episode are drawn from one integer seed):
- training episode k (0-based) of a run with seed S: S · 1_000_000 + k, so [0, 10^12)
  for S < 10^6 and k < 10^6;
- evaluation episode i for seed S: 2^40 + S · 1_000_000 + i, so [2^40, 2^40 + 10^12):
  never a training seed of any run;
- validation episode i of a run with seed S (choosing which weights a run keeps, see
  `validation_every_episodes`): 2^41 + S · 1_000_000 + i, so [2^41, 2^41 + 10^12): neither
  a training nor an evaluation seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from fl_crb.learn.learner_config import LearnerConfig
from fl_crb.learn.method_config import MethodConfig
from fl_crb.marl.settings import (
    MARL_CONFIGS,
    AlgorithmSetup,
    MarlConfig,
    default_marl_config,
    marl_config_from_dict,
)

DRQN_ALGORITHMS = ("crb-drqn", "independent-drqn")
"""The learners `fl_crb.training.drqn_trainer` runs: the method, and its ablation without the
central pool."""

MARL_ALGORITHMS = tuple(MARL_CONFIGS)
"""The paper's learning baselines, trained by `fl_crb.training.marl_trainer`."""

ALGORITHMS = (*DRQN_ALGORITHMS, *MARL_ALGORITHMS)
"""Every algorithm `fl-crb train --algo` accepts."""

MAX_SEED = 1_000_000
"""Run seeds and episode indices stay below this, so seed ranges never overlap."""

EVALUATION_SEED_BASE = 2**40
"""First arrival seed of evaluation episodes, above every training seed."""

VALIDATION_SEED_BASE = 2**41
"""First arrival seed of validation episodes, above every evaluation seed."""


def training_seed(run_seed: int, episode: int) -> int:
    """Arrival seed of training episode `episode` of a run seeded `run_seed`."""
    _check_seed(run_seed, episode)
    return run_seed * MAX_SEED + episode


def evaluation_seed(seed: int, episode: int = 0) -> int:
    """Arrival seed of evaluation episode `episode` for seed `seed` (held out of training)."""
    _check_seed(seed, episode)
    return EVALUATION_SEED_BASE + seed * MAX_SEED + episode


def validation_seed(run_seed: int, episode: int = 0) -> int:
    """Arrival seed of validation episode `episode` of a run seeded `run_seed`."""
    _check_seed(run_seed, episode)
    return VALIDATION_SEED_BASE + run_seed * MAX_SEED + episode


def _check_seed(seed: int, episode: int) -> None:
    if not 0 <= seed < MAX_SEED:
        raise ValueError(f"seed must lie in [0, {MAX_SEED}), got {seed!r}")
    if not 0 <= episode < MAX_SEED:
        raise ValueError(f"episode index must lie in [0, {MAX_SEED}), got {episode!r}")


RUN_FILE_HEAD = ("algo", "seed", "arrival_slots")
"""The keys `TrainConfig.to_dict` puts before the method's settings, as run.json has
always had them."""


@dataclass(frozen=True)
class TrainConfig(MethodConfig):
    """A training run's learning setup (the topology and terminal count come separately):
    the method's settings (`MethodConfig`: learner, n, `tag`, pool), which it extends
    rather than embeds so that run.json keeps its flat layout and every
    `TrainConfig(min_pool_trajectories=...)` and `config.learner` reads as before, plus
    the simulation's own settings below."""

    algo: str = "crb-drqn"
    """`crb-drqn` (central pool, one learner per edge), `independent-drqn` (each terminal
    learns alone from its own trajectories: same network, no central pool), or one of the
    paper's learning baselines `MARL_ALGORITHMS` (`fl_crb.marl`)."""
    seed: int = 0
    """Run seed: arrivals, network initialisation, exploration and sampling derive from it."""
    arrival_slots: int = 100
    """Slots with arrivals per episode; the episode then drains until every task resolves."""
    train_interval_slots: int = 1
    """Each learner takes one training step every this many slots (drain slots included)
    once its pool is large enough. Every slot gives ~110 steps per learner per 100-slot
    episode; every other slot halved what CRB-DRQN learned by episode 150 (greedy failure
    4.1% against 0.9% at 25 terminals on four-edge-hetero). A 25-terminal episode still
    takes under 1 s (benchmarks/training_speed.py) because the learners of a slot step
    together (`fl_crb.learn.stacked`)."""
    epsilon_start: float = 1.0
    """ε of episode 0 (paper: 1)."""
    epsilon_end: float = 0.01
    """Final ε (paper: 0.01)."""
    epsilon_decay_episodes: int = 50
    """ε falls geometrically per episode from `epsilon_start` to `epsilon_end` over this
    many episodes, then stays: ε_k = start · (end/start)^(k/decay). Geometric decay spends
    the early episodes exploring widely and most of the decay near small ε, where the
    policy is nearly greedy. 50 leaves the nearly greedy phase time to settle within the
    paper's ~170 episodes: at 25 terminals on four-edge-hetero the reward settled after
    128-169 episodes (three seeds) with 50, 157-173 with 100 (see
    `fl_crb.experiments.convergence` for the measure)."""
    validation_every_episodes: int = 10
    """Once ε is at its floor, the run plays its current weights greedily on
    `validation_episodes` validation episodes after every this many episodes and keeps the
    weights that scored best (highest average reward); evaluation uses those. A frozen
    greedy snapshot of a policy that is still being trained can be a poor one, and which
    one the last episode happens to leave is luck: at 25 terminals on four-edge-hetero
    the greedy failure rate of the last weights of 200-episode runs ranged over 0.5%-5.4%
    between seeds. Choosing among the snapshots on seeds disjoint from evaluation (model
    selection, as early stopping does) removes that luck without looking at evaluation
    data; every learning algorithm gets the same selection."""
    validation_episodes: int = 5
    """Greedy episodes per validation (seeds `validation_seed(seed, 0..)`, the same ones
    at every validation, so snapshots are compared on equal arrivals)."""
    marl: MarlConfig | None = None
    """The baseline's own hyperparameters (`fl_crb.marl.settings`) when `algo` is one of
    `MARL_ALGORITHMS`, its defaults if not given; None for the DRQN algorithms, which use
    the fields above only (and whose `to_dict` then has no `marl` key, as before)."""

    def __post_init__(self) -> None:
        if self.algo not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algo!r}; choose one of {ALGORITHMS}")
        if self.algo in MARL_ALGORITHMS:
            if self.marl is None:
                object.__setattr__(self, "marl", default_marl_config(self.algo))
            elif not isinstance(self.marl, MARL_CONFIGS[self.algo]):
                raise ValueError(
                    f"TrainConfig.marl is a {type(self.marl).__name__}; algorithm "
                    f"{self.algo!r} needs a {MARL_CONFIGS[self.algo].__name__}"
                )
        elif self.marl is not None:
            raise ValueError(f"TrainConfig.marl must be None for algorithm {self.algo!r}")
        _check_seed(self.seed, 0)
        super().__post_init__()
        for name in (
            "arrival_slots",
            "train_interval_slots",
            "epsilon_decay_episodes",
            "validation_every_episodes",
            "validation_episodes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0 < self.epsilon_end <= self.epsilon_start <= 1:
            raise ValueError(
                "TrainConfig needs 0 < epsilon_end <= epsilon_start <= 1, got "
                f"{self.epsilon_end!r} and {self.epsilon_start!r}"
            )

    def epsilon(self, episode: int) -> float:
        """ε used throughout episode `episode` (0-based)."""
        progress = min(episode / self.epsilon_decay_episodes, 1.0)
        return self.epsilon_start * (self.epsilon_end / self.epsilon_start) ** progress

    def validation_due(self, episodes_done: int) -> bool:
        """Whether to validate after `episodes_done` episodes (ε at its floor, on schedule)."""
        return (
            episodes_done >= self.epsilon_decay_episodes
            and episodes_done % self.validation_every_episodes == 0
        )

    def algorithm_setup(self) -> AlgorithmSetup:
        """What a learning baseline's constructor takes from this run (`fl_crb.marl`)."""
        if self.marl is None:
            raise ValueError(f"{self.algo!r} is not a learning baseline of fl_crb.marl")
        return AlgorithmSetup(self.marl, self.learner.gamma, self.learner.hidden, self.seed)

    def learner_config(self, index: int) -> LearnerConfig:
        """Learner `index`'s settings: its own initialisation seed, derived from the run's."""
        return replace(self.learner, seed=self.seed * MAX_SEED + index)

    def to_dict(self) -> dict:
        """The JSON form `run.json` records; a field at its "absent" value (`marl` None,
        `learner.terminal_code_bits` 0) is left out, so runs recorded before the field
        existed still match their setup."""
        fields = asdict(self)
        data = {name: fields.pop(name) for name in RUN_FILE_HEAD} | fields
        if self.marl is None:
            del data["marl"]
        if not self.learner.terminal_code_bits:
            del data["learner"]["terminal_code_bits"]
        return data

    def with_algo(self, algo: str, seed: int) -> TrainConfig:
        """This setup for another algorithm and seed (the baseline's default `marl`)."""
        return replace(self, algo=algo, seed=seed, marl=None)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of `to_dict`; unknown or missing keys are an error naming them."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}; known: {sorted(known)}")
        learner_data = dict(data.get("learner", {}))
        unknown = sorted(set(learner_data) - set(LearnerConfig.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown LearnerConfig keys {unknown}")
        values = {**data, "learner": LearnerConfig(**learner_data)}
        algo = data.get("algo", cls.algo)
        if data.get("marl") is not None:
            if algo not in MARL_CONFIGS:
                raise ValueError(f"TrainConfig key 'marl' given for algorithm {algo!r}")
            values["marl"] = marl_config_from_dict(algo, data["marl"])
        return cls(**values)
