"""One simulated episode as the baselines learn from it: decisions, delayed rewards, returns.

What every baseline shares with CRB-DRQN (model.md, "Reward and transitions"):
- *Masks.* Only terminals with a new task decide in a slot. A `Rollout` stores decisions
  only, one row per (slot, terminal with a task), so a terminal without a task never enters
  a loss: the mask is applied when the data are collected, not by multiplying zeros later.
  QMIX, whose mixer takes every terminal's Q at once, gets the mask explicitly
  (`slot_table`).
- *Delayed rewards.* A decision's reward arrives when its task finishes or is dropped, up
  to τ slots later, possibly after later decisions of the same terminal. `SlotEvents` name
  the task's terminal and arrival slot, which identify the decision (a terminal has at most
  one task per slot), so each reward lands on the decision that caused it.
- *Drain.* After the arrival slots the episode runs on without arrivals until every task
  is resolved; only then are returns computed, so every reward is known.
- *Transitions.* A decision's successor is the same terminal's next decision
  (`next_index`). The episode is an artefact of the experiment (the system is continuing),
  so a terminal's last decision of an episode has no observed successor; it bootstraps from
  its own state (`next_index[i] == i`), the value of a state like it, rather than ending
  the return with a bare −delay, which would tell the critics that the last decision of an
  episode is ten times cheaper than any other (γ 0.9: a continuing return is ≈ 10 rewards).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fl_crb.learn.features import FeatureScale, encode_batch
from fl_crb.marl.networks import flat_observations, global_state
from fl_crb.mec.episode import play_episode
from fl_crb.mec.simulator import MECSimulator
from fl_crb.mec.tasklog import TaskRecords

Act = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]]
"""act(features [k, F], terminals int[k], state [G]) → (actions int[k], extras): the
actions of the k terminals with a task in a slot, and per-decision values to keep (log
probabilities, values...), each an array of k rows."""


@dataclass
class Rollout:
    """One episode's decisions in decision order (by slot, then terminal), every reward known."""

    slot: np.ndarray
    """int[N]: decision slot."""
    terminal: np.ndarray
    """int[N]: deciding terminal."""
    features: np.ndarray
    """float32[N, F]: the terminal's own observation (`flat_observations`)."""
    action: np.ndarray
    """int64[N]: 0 local, e edge e."""
    reward: np.ndarray
    """float32[N]: −delay in slots, or Const if dropped."""
    next_index: np.ndarray
    """int64[N]: row of the same terminal's next decision; itself for its last one."""
    state: np.ndarray
    """float32[S, G]: the global state of each of the S slots with a decision."""
    state_row: np.ndarray
    """int64[N]: row of `state` of the decision's slot."""
    records: TaskRecords
    """The episode's task log (metrics)."""
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    """What `act` asked to keep, per decision."""

    @property
    def decisions(self) -> int:
        return int(self.slot.size)

    def slot_table(self, terminals: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per decision slot s: (row [S, D] of terminal d's decision or −1, mask bool[S, D]
        of terminals with a task, next slot int[S], itself for the last)."""
        slots = self.state.shape[0]
        rows = np.full((slots, terminals), -1, dtype=np.int64)
        rows[self.state_row, self.terminal] = np.arange(self.decisions)
        next_slot = np.minimum(np.arange(slots) + 1, slots - 1)
        return rows, rows >= 0, next_slot


def collect_episode(
    simulator: MECSimulator, scale: FeatureScale, seed: int, arrival_slots: int, act: Act
) -> Rollout:
    """Play one episode (arrivals, then the drain) with `act`; match every reward."""
    terminals = simulator.terminals
    index_of = np.full((arrival_slots, terminals), -1, dtype=np.int64)
    last_of = np.full(terminals, -1, dtype=np.int64)
    slots, deciders, features, actions, states, state_rows = [], [], [], [], [], []
    next_index: list[int] = []
    extras: dict[str, list[np.ndarray]] = {}
    rewards: list[float] = []
    taken = np.zeros(terminals, dtype=np.int64)
    count = 0
    for turn in play_episode(simulator, seed=seed, arrival_slots=arrival_slots):
        observations = turn.observations
        arriving = np.flatnonzero(observations.has_task)
        if arriving.size:
            scalars, load = encode_batch(observations, arriving, scale)
            flat = flat_observations(scalars, load)
            state = global_state(observations, scale)
            chosen, kept = act(flat, arriving, state)
            chosen = np.asarray(chosen, dtype=np.int64)
            taken[arriving] = chosen
            for name, values in kept.items():
                extras.setdefault(name, []).append(np.asarray(values))
            for row, d in enumerate(arriving.tolist()):
                i = count + row
                if last_of[d] >= 0:
                    next_index[last_of[d]] = i
                last_of[d] = i
                index_of[observations.slot, d] = i
                next_index.append(i)
                state_rows.append(len(states))
            count += arriving.size
            slots.append(np.full(arriving.size, observations.slot))
            deciders.append(arriving)
            features.append(flat)
            actions.append(chosen)
            states.append(state)
            rewards += [np.nan] * arriving.size
        for d, arrival, reward in turn.step(taken):
            rewards[index_of[arrival, d]] = reward
    reward = np.asarray(rewards, dtype=np.float32)
    if np.isnan(reward).any():
        raise RuntimeError("the drain ended with decisions whose reward never arrived")
    edges = scale.edges
    width = features[0].shape[1] if features else 3 + edges
    return Rollout(
        slot=np.concatenate(slots) if slots else np.zeros(0, np.int64),
        terminal=np.concatenate(deciders) if deciders else np.zeros(0, np.int64),
        features=np.concatenate(features) if features else np.zeros((0, width), np.float32),
        action=np.concatenate(actions) if actions else np.zeros(0, np.int64),
        reward=reward,
        next_index=np.asarray(next_index, dtype=np.int64),
        state=np.stack(states) if states else np.zeros((0, 0), np.float32),
        state_row=np.asarray(state_rows, dtype=np.int64),
        records=simulator.log.records(),
        extras={name: np.concatenate(parts) for name, parts in extras.items()},
    )


def gae(
    reward: np.ndarray, value: np.ndarray, next_index: np.ndarray, gamma: float, lam: float
) -> np.ndarray:
    """Generalised advantage estimates (Schulman et al., ICLR 2016) along each terminal's
    chain of decisions: δ_i = r_i + γ·V(next_i) − V(i), A_i = δ_i + γλ·A_{next_i}; a
    decision whose successor is itself (the last of its terminal) has A_i = δ_i."""
    advantage = np.zeros(len(reward), dtype=np.float64)
    for i in range(len(reward) - 1, -1, -1):
        j = next_index[i]
        delta = reward[i] + gamma * value[j] - value[i]
        advantage[i] = delta + (gamma * lam * advantage[j] if j != i else 0.0)
    return advantage.astype(np.float32)


def rows_by_terminal(terminal: np.ndarray, terminals: int) -> list[np.ndarray]:
    """For each terminal, the rows of its decisions (in decision order)."""
    order = np.argsort(terminal, kind="stable")
    bounds = np.searchsorted(terminal[order], np.arange(terminals + 1))
    return [order[bounds[d] : bounds[d + 1]] for d in range(terminals)]
