"""CRB-DRQN trained on noisy uploads: the price of `upload_noise` in delay and failures.

Trajectories enter the central pool in one place: the trainer hands each slot's
(terminal, trajectory) pairs to its scheme's `upload` (`fl_crb.training.drqn_trainer`, step 5),
and `CentralScheme.upload` drops the terminal index and stores them. `NoisyUploadTrainer`
subclasses the trainer and wraps its scheme in `NoisyUploads`, which passes every
trajectory through the mechanism (a terminal-side operation: the pool only ever sees
noisy trajectories), counts each upload in the per-terminal `PrivacyAccountant`, and
keeps the labelled noisy uploads for the linkability test. Nothing in `fl_crb.learn`
changes: the terminals still act on their true observations, only what they upload is
perturbed. After training, the learners' networks are played greedily on held-out
evaluation episodes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from fl_crb.learn.greedy import GreedyPolicy
from fl_crb.learn.pool import Trajectory
from fl_crb.mec.params import MECParams
from fl_crb.mec.simulator import MECSimulator
from fl_crb.policies.evaluation import evaluate_policy
from fl_crb.studies.upload_noise import PrivacyAccountant, UploadNoise, UploadNoiseConfig
from fl_crb.training.config import TrainConfig, evaluation_seed
from fl_crb.training.drqn_trainer import Trainer


class NoisyUploads:
    """A scheme whose uploads pass through a mechanism first; all else is the scheme's."""

    def __init__(
        self,
        scheme,
        mechanism: UploadNoise | None,
        accountant: PrivacyAccountant | None,
        rng: np.random.Generator,
    ) -> None:
        self._scheme = scheme
        self._mechanism = mechanism
        self._accountant = accountant
        self._rng = rng
        self.uploaded: list[tuple[int, Trajectory]] = []
        """Every upload as the pool received it, with the terminal that sent it."""

    def __getattr__(self, name: str):
        return getattr(self._scheme, name)

    def upload(self, trajectories: list[tuple[int, Trajectory]]) -> None:
        """Perturb (if a mechanism is set) and account each trajectory, then upload."""
        if self._mechanism is not None:
            trajectories = [(d, self._mechanism(t, self._rng)) for d, t in trajectories]
            for d, _ in trajectories:
                self._accountant.record(d)
        self.uploaded += trajectories
        self._scheme.upload(trajectories)


class NoisyUploadTrainer(Trainer):
    """The single-process trainer with `NoisyUploads` around its scheme."""

    def __init__(
        self,
        params: MECParams,
        terminals: int,
        config: TrainConfig,
        noise: UploadNoiseConfig | None,
    ) -> None:
        if config.algo != "crb-drqn":
            raise ValueError(f"noisy uploads apply to crb-drqn's central pool, not {config.algo!r}")
        super().__init__(params, terminals, config)
        self.accountant = PrivacyAccountant(noise.rho_per_upload) if noise else None
        mechanism = UploadNoise(noise, params.edges) if noise else None
        rng = np.random.default_rng([config.seed, 3])
        self.scheme = NoisyUploads(self.scheme, mechanism, self.accountant, rng)


@dataclass(frozen=True)
class NoisyRunResult:
    """One training run on noisy (or exact) uploads, evaluated greedily."""

    rho_per_upload: float
    """ρ of each upload (inf: no noise)."""
    sigma: float
    """Gaussian noise per float (0: no noise)."""
    action_epsilon: float
    """ε of each action's randomised response (inf: actions exact)."""
    uploads_per_terminal: float
    """Mean number of uploads per terminal over the run."""
    epsilon_max: float
    """Largest per-terminal ε over the run at `delta` (inf: no noise)."""
    epsilon_median: float
    """Median per-terminal ε over the run."""
    delta: float
    """δ of the (ε, δ) guarantee."""
    avg_delay_s: float
    """Greedy evaluation: mean delay of finished tasks, seconds."""
    failure_rate: float
    """Greedy evaluation: dropped / arrived."""
    avg_reward: float
    """Greedy evaluation: mean reward per task."""

    def as_dict(self) -> dict:
        return asdict(self)


def train_on_noisy_uploads(
    params: MECParams,
    terminals: int,
    config: TrainConfig,
    noise: UploadNoiseConfig | None,
    episodes: int,
    evaluation_episodes: int,
    delta: float,
) -> tuple[NoisyRunResult, list[tuple[int, Trajectory]]]:
    """Train `episodes` episodes, evaluate greedily; the result and the labelled uploads."""
    trainer = NoisyUploadTrainer(params, terminals, config, noise)
    for _ in range(episodes):
        trainer.run_episode()
    policy = GreedyPolicy(
        config.algo,
        [learner.evaluation for learner in trainer.scheme.learners],
        trainer.scheme.group_of,
        trainer.scale,
    )
    metrics = evaluate_policy(
        MECSimulator(params, terminals),
        policy,
        evaluation_episodes,
        config.arrival_slots,
        evaluation_seed(config.seed, 0),
    )
    uploads = trainer.scheme.uploaded
    counts = np.bincount([d for d, _ in uploads], minlength=terminals)
    if noise is None:
        epsilons = np.full(terminals, math.inf)
        sigma, action_epsilon, rho = 0.0, math.inf, math.inf
    else:
        epsilons = trainer.accountant.epsilons(terminals, delta)
        sigma = noise.sigma()
        action_epsilon = noise.action_epsilon(config.trajectory_length)
        rho = noise.rho_per_upload
    result = NoisyRunResult(
        rho_per_upload=rho,
        sigma=sigma,
        action_epsilon=action_epsilon,
        uploads_per_terminal=float(counts.mean()),
        epsilon_max=float(epsilons.max()),
        epsilon_median=float(np.median(epsilons)),
        delta=delta,
        avg_delay_s=metrics.avg_delay_s,
        failure_rate=metrics.failure_rate,
        avg_reward=metrics.avg_reward,
    )
    return result, uploads
