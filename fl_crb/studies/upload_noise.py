"""Calibrated noise on uploaded trajectories (local differential privacy) and its accounting.

Each terminal perturbs a trajectory before it uploads it, so that neither the authority
nor anyone downstream (edges, SuperLink operator) receives its exact values. The
mechanism covers everything an upload holds:

- the floats (the n+1 distinct states of the chained trajectory, scalar and load-history
  features, and the n rewards divided by `reward_scale`) form one vector v; v is clipped
  to L2 norm `clip_l2` = C and released with i.i.d. Gaussian noise N(0, σ²) per value:
  the Gaussian mechanism (Dwork & Roth, "The Algorithmic Foundations of Differential
  Privacy", 2014, Appendix A) with L2 sensitivity Δ = 2C, because in the local model any
  two clipped vectors are neighbours;
- each of the n actions goes through k-ary randomised response (Warner 1965; Kairouz,
  Oh & Viswanath, "Extremal mechanisms for local differential privacy", 2014): kept with
  probability e^ε_a / (e^ε_a + k − 1), else replaced by one of the other k − 1 actions
  uniformly, with k = 1 + E;
- the `done` flags carry nothing: the trajectory builder never sets them, and a
  trajectory with a set flag is refused rather than released unprotected.
The noisy states are chained again (the next state of transition i is the noisy state of
i+1), so the upload keeps the compact chained encoding. Rewards are clamped to
[`reward_floor`, 0] afterwards (post-processing, free in privacy).

Accounting, in zero-concentrated DP (Bun & Steinke, "Concentrated Differential Privacy:
Simplifications, Extensions, and Lower Bounds", TCC 2016): the Gaussian mechanism is
Δ²/(2σ²)-zCDP (their Prop. 1.6), ε-DP randomised response is ε²/2-zCDP (Prop. 1.4), and
zCDP composes by adding ρ (Lemma 1.7). One upload is therefore ρ_upload-zCDP with
ρ_upload = ρ_values + n·ε_a²/2; `rho_per_upload` fixes it and `action_share` splits it.
The unit protected is a terminal's whole upload stream over a run (its trajectories are
its own data, so uploads compose sequentially): after k uploads the terminal has spent
ρ = k·ρ_upload, i.e. (ρ + 2·sqrt(ρ·ln(1/δ)), δ)-DP (Prop. 1.3).

Not covered: how many uploads a terminal makes and when (one per n decisions, so they
reveal its task rate and activity periods), and anything outside the uploads (offloaded
tasks reach their edge server in the clear: see `observation_table`).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from fl_crb.learn.pool import Trajectory


@dataclass(frozen=True)
class UploadNoiseConfig:
    """How much noise a terminal adds to each upload."""

    rho_per_upload: float
    """ρ of one upload in zCDP (smaller: more noise). Sets σ and ε_a with `action_share`."""
    clip_l2: float = 10.0
    """C: the float vector of a trajectory is scaled down to this L2 norm if longer. The
    default is near the median norm of four-edge trajectories (n = 4), so about half of
    them are shortened and the others are kept as they are."""
    action_share: float = 0.5
    """Fraction of ρ_upload spent on the actions (randomised response), the rest on the
    floats (Gaussian). Must lie strictly between 0 and 1: both parts must be protected."""
    reward_scale: float = 36.0
    """Rewards are divided by this before clipping so they weigh like the features
    (|Const| = 3τ = 36 at τ = 12), and multiplied back after the noise."""
    reward_floor: float = -36.0
    """Noisy rewards are clamped to [reward_floor, 0] (the range of true rewards)."""

    def __post_init__(self) -> None:
        if not (self.rho_per_upload > 0 and math.isfinite(self.rho_per_upload)):
            raise ValueError(
                f"UploadNoiseConfig.rho_per_upload must be a finite number > 0, got "
                f"{self.rho_per_upload!r}; to upload without noise, use no mechanism at all"
            )
        if not self.clip_l2 > 0:
            raise ValueError(f"UploadNoiseConfig.clip_l2 must be > 0, got {self.clip_l2!r}")
        if not 0 < self.action_share < 1:
            raise ValueError(
                f"UploadNoiseConfig.action_share must lie in (0, 1), got {self.action_share!r}"
            )
        if not self.reward_scale > 0 or not self.reward_floor < 0:
            raise ValueError(
                "UploadNoiseConfig needs reward_scale > 0 and reward_floor < 0, got "
                f"{self.reward_scale!r} and {self.reward_floor!r}"
            )

    def sigma(self) -> float:
        """σ of the Gaussian noise per float: Δ/sqrt(2·ρ_values) with Δ = 2C."""
        rho_values = self.rho_per_upload * (1 - self.action_share)
        return 2 * self.clip_l2 / math.sqrt(2 * rho_values)

    def action_epsilon(self, trajectory_length: int) -> float:
        """ε_a of each action's randomised response: n·ε_a²/2 = ρ_actions."""
        rho_actions = self.rho_per_upload * self.action_share
        return math.sqrt(2 * rho_actions / trajectory_length)


def zcdp_epsilon(rho: float, delta: float) -> float:
    """ε of (ε, δ)-DP implied by ρ-zCDP: ρ + 2·sqrt(ρ·ln(1/δ)) (Bun & Steinke, Prop. 1.3)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta must lie in (0, 1), got {delta!r}")
    if rho < 0:
        raise ValueError(f"rho must be >= 0, got {rho!r}")
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


class PrivacyAccountant:
    """Per-terminal budget spent over a run: uploads counted, ρ composed additively."""

    def __init__(self, rho_per_upload: float) -> None:
        self.rho_per_upload = float(rho_per_upload)
        self.uploads: Counter[int] = Counter()
        """Uploads released so far, by terminal index."""

    def record(self, terminal: int) -> None:
        """One more upload of `terminal` went out."""
        self.uploads[int(terminal)] += 1

    def rho(self, terminal: int) -> float:
        """ρ spent by `terminal` so far (k uploads: k·ρ_upload)."""
        return self.uploads[int(terminal)] * self.rho_per_upload

    def epsilon(self, terminal: int, delta: float) -> float:
        """ε of `terminal`'s (ε, δ)-DP guarantee over everything it uploaded so far."""
        return zcdp_epsilon(self.rho(terminal), delta)

    def epsilons(self, terminals: int, delta: float) -> np.ndarray:
        """ε of every terminal 0..terminals−1 (0 for one that uploaded nothing)."""
        return np.array([self.epsilon(d, delta) for d in range(terminals)])


class UploadNoise:
    """The mechanism of the module docstring, for trajectories of E edges."""

    def __init__(self, config: UploadNoiseConfig, edges: int) -> None:
        self.config = config
        self.edges = int(edges)

    def __call__(self, trajectory: Trajectory, rng: np.random.Generator) -> Trajectory:
        """A noisy copy of `trajectory` (chained, as the trajectory builder makes them)."""
        config = self.config
        scalars, load = np.asarray(trajectory.scalars), np.asarray(trajectory.load)
        next_scalars, next_load = (
            np.asarray(trajectory.next_scalars),
            np.asarray(trajectory.next_load),
        )
        if np.any(trajectory.done):
            raise ValueError(
                "UploadNoise does not cover set 'done' flags (the trajectory builder never sets "
                f"them), got done = {np.asarray(trajectory.done).tolist()}"
            )
        if not (
            np.array_equal(next_scalars[:-1], scalars[1:])
            and np.array_equal(next_load[:-1], load[1:])
        ):
            raise ValueError(
                "UploadNoise needs a chained trajectory (next state of transition i = state "
                "of i+1), as the trajectory builder makes them"
            )
        n = load.shape[0]
        states_scalars = np.concatenate([scalars, next_scalars[-1:]]).astype(np.float64)
        states_load = np.concatenate([load, next_load[-1:]]).astype(np.float64)
        reward = np.asarray(trajectory.reward, np.float64) / config.reward_scale
        vector = np.concatenate([states_scalars.ravel(), states_load.ravel(), reward])
        norm = float(np.linalg.norm(vector))
        if norm > config.clip_l2:
            vector *= config.clip_l2 / norm
        vector += rng.normal(0.0, config.sigma(), vector.shape)
        cut_scalars, cut_load = states_scalars.size, states_scalars.size + states_load.size
        noisy_scalars = vector[:cut_scalars].reshape(states_scalars.shape).astype(np.float32)
        noisy_load = vector[cut_scalars:cut_load].reshape(states_load.shape).astype(np.float32)
        noisy_reward = np.clip(vector[cut_load:] * config.reward_scale, config.reward_floor, 0.0)
        return Trajectory(
            scalars=noisy_scalars[:n],
            load=noisy_load[:n],
            action=self.randomised_actions(np.asarray(trajectory.action), rng),
            reward=noisy_reward.astype(np.float32),
            next_scalars=noisy_scalars[1:],
            next_load=noisy_load[1:],
            done=np.zeros(n, dtype=bool),
        )

    def randomised_actions(self, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """k-ary randomised response on each action (k = 1 + E)."""
        k = 1 + self.edges
        epsilon = self.config.action_epsilon(actions.size)
        keep_probability = 1 / (1 + (k - 1) * math.exp(-epsilon))  # e^ε / (e^ε + k − 1)
        keep = rng.random(actions.size) < keep_probability
        # Another action uniformly: shift by 1..k−1 modulo k.
        others = (actions + rng.integers(1, k, actions.size)) % k
        return np.where(keep, actions, others).astype(np.int64)
