"""Non-learning baselines, each deciding from what a terminal observes (equation 16) and
the constants a terminal knows of its own system (its CPU, its uplink, the edges' CPUs).

| name                      | decision                                                     |
| ------------------------- | ------------------------------------------------------------ |
| `local-only`              | always compute locally                                       |
| `random`                  | one of the 1 + E actions uniformly at random                 |
| `round-robin`             | offload, cycling each terminal through edges 1..E            |
| `least-loaded`            | offload to the edge with the fewest active queues in the     |
|                           | last broadcast; ties go to the edge holding fewer of the     |
|                           | terminal's own bits, then rotate by terminal so that idle    |
|                           | edges are not all chosen alike                               |
| `shortest-expected-delay` | the action with the smallest delay estimate: local wait plus |
|                           | local work; or uplink wait plus transfer plus the edge's     |
|                           | work on the terminal's queued bits and the task at the share |
|                           | it would get next to the last broadcast's active queues      |

None of them reads another terminal's queues or the edges' true current state. The
simulation-only `multi-tier` (`fl_crb.policies.multi_tier`) does, so it is made here by name
(`SIMULATION_POLICIES`) but is not in `BASELINES`, the policies a live terminal can run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fl_crb.mec.observation import Observations
from fl_crb.mec.params import MECParams, TerminalArrays
from fl_crb.policies.multi_tier import MultiTier


class LocalOnly:
    name = "local-only"

    def __init__(self, params: MECParams, terminals: int, seed: int = 0) -> None:
        self._actions = np.zeros(terminals, dtype=np.int64)

    def act(self, observations: Observations) -> np.ndarray:
        return self._actions


class RandomAction:
    name = "random"

    def __init__(self, params: MECParams, terminals: int, seed: int = 0) -> None:
        self._actions = params.actions
        self._terminals = terminals
        self._rng = np.random.default_rng(seed)

    def act(self, observations: Observations) -> np.ndarray:
        return self._rng.integers(0, self._actions, size=self._terminals)


class RoundRobin:
    name = "round-robin"

    def __init__(self, params: MECParams, terminals: int, seed: int = 0) -> None:
        self._edges = params.edges
        self._next_edge = np.arange(terminals) % self._edges  # 0-based, staggered start

    def act(self, observations: Observations) -> np.ndarray:
        actions = self._next_edge + 1
        self._next_edge = np.where(
            observations.has_task, (self._next_edge + 1) % self._edges, self._next_edge
        )
        return actions


class LeastLoaded:
    name = "least-loaded"

    def __init__(self, params: MECParams, terminals: int, seed: int = 0) -> None:
        edges = params.edges
        # Rotation by terminal: among equal edges terminal d prefers edge (d mod E) first.
        self._rotation = (np.arange(edges)[None, :] - np.arange(terminals)[:, None]) % edges

    def act(self, observations: Observations) -> np.ndarray:
        load = observations.load_history[-1].astype(np.float64)
        own_bits = observations.edge_queue_bits
        # Lexicographic: broadcast load, then own queued bits, then rotation.
        order = np.lexsort((self._rotation, own_bits, np.broadcast_to(load, own_bits.shape)))
        return order[:, 0] + 1


class ShortestExpectedDelay:
    name = "shortest-expected-delay"

    def __init__(self, params: MECParams, terminals: int, seed: int = 0) -> None:
        self._terminal: TerminalArrays = params.per_terminal(terminals)

    def act(self, observations: Observations) -> np.ndarray:
        return np.argmin(self.expected_delay_slots(observations), axis=1)

    def expected_delay_slots(self, observations: Observations) -> np.ndarray:
        """float[D, 1+E]: the delay estimate of every action, in slots."""
        terminal = self._terminal
        bits = observations.task_bits
        local = observations.local_wait_slots + np.ceil(bits / terminal.local_bits_per_slot)
        transfer = observations.uplink_wait_slots + np.ceil(bits / terminal.uplink_bits_per_slot)
        queued = observations.edge_queue_bits
        others = observations.load_history[-1][None, :] - (queued > 0)
        share_bits = terminal.edge_bits_per_slot / (np.maximum(others, 0) + 1)
        edge = transfer[:, None] + np.ceil((queued + bits[:, None]) / share_bits)
        return np.column_stack((local, edge))


BASELINES: dict[str, Callable[[MECParams, int, int], object]] = {
    policy.name: policy
    for policy in (LocalOnly, RandomAction, RoundRobin, LeastLoaded, ShortestExpectedDelay)
}


SIMULATION_POLICIES: dict[str, Callable[[MECParams, int, int], object]] = {
    MultiTier.name: MultiTier
}
"""Non-learning policies that decide from every terminal's observation: simulation only."""


def make_baseline(name: str, params: MECParams, terminals: int, seed: int = 0):
    """The baseline (or simulation-only policy) called `name` for `terminals` terminals;
    unknown names list the known."""
    known = {**BASELINES, **SIMULATION_POLICIES}
    if name not in known:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(known)}")
    return known[name](params, terminals, seed)
