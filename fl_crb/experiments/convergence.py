"""When a training curve has settled: the convergence episode of Figure 4.

The paper says CRB-DRQN's average reward "reaches steady-state convergence after
approximately 170 training episodes" without a definition. This project's, used for
every number it reports:

- the *final value* is the mean episode reward over the last `final_episodes` episodes
  of the run (default 30);
- the curve is smoothed by a trailing mean over `window` episodes (default 20). One
  episode's reward is a mean over ~140 tasks at 25 terminals and, for a policy that no
  longer changes, varies from episode to episode with a standard deviation of ~0.6-0.8
  (about 10% of the reward); the window is the shortest that makes the 5% band at least
  two standard deviations of the smoothed curve wide, so that a settled curve does not
  leave the band by chance;
- the *convergence episode* is the first episode k (counted from 0, k ≥ window − 1) from
  which the smoothed curve stays within `tolerance` (default 5%) of the final value for
  every later episode; it is the run's length if the curve is outside the band at the
  end. The run must be long enough that its end is settled: at least `final_episodes` +
  `window` episodes.

The convergence time is the training time up to and including that episode, reported
twice: wall time, which other jobs on a shared machine stretch, and the training
process's CPU time (`EpisodeMetrics.cpu_s`), which they hardly move.
"""

from __future__ import annotations

import numpy as np

DEFAULT_TOLERANCE = 0.05
DEFAULT_WINDOW = 20
DEFAULT_FINAL_EPISODES = 30


def smoothed(rewards: np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """Trailing mean over `window` episodes; entry k covers episodes k−window+1..k
    (NaN for the first window−1 episodes)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    out = np.full(rewards.shape, np.nan)
    if rewards.size >= window:
        sums = np.cumsum(np.concatenate(([0.0], rewards)))
        out[window - 1 :] = (sums[window:] - sums[:-window]) / window
    return out


def convergence_episode(
    rewards: np.ndarray,
    tolerance: float = DEFAULT_TOLERANCE,
    window: int = DEFAULT_WINDOW,
    final_episodes: int = DEFAULT_FINAL_EPISODES,
) -> int:
    """The episode from which the smoothed reward stays within `tolerance` of the final
    value (see the module docstring)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.size < final_episodes + window:
        raise ValueError(
            f"a curve of {rewards.size} episodes is too short to tell convergence; need at "
            f"least final_episodes + window = {final_episodes + window}"
        )
    final = rewards[-final_episodes:].mean()
    curve = smoothed(rewards, window)
    outside = np.flatnonzero(~(np.abs(curve - final) <= tolerance * abs(final)))
    return int(outside[-1] + 1) if outside.size else window - 1
