"""Multi-tier offloading, RECONSTRUCTED: a tier decision, then a congestion game to equilibrium.

Source: Lin et al., multi-tier computation offloading (IEEE Trans. Consum. Electron.,
2025), a game-theoretic, two-stage, non-learning method. Its full algorithm is not
available to this project, so this is a reconstruction of what the CRB-DRQN paper and the
abstract state, labelled so in every result:

USES INFORMATION A TERMINAL DOES NOT HAVE. It decides for all of a slot's tasks at once,
as a central coordinator would, from every terminal's observation: the other terminals'
new tasks and their queued bits at every edge (`Observations` rows of other terminals),
from which it counts each edge's currently active queues. No terminal observes these
(model.md: a terminal sees its own queues and the broadcast loads only), so it cannot run
on a live terminal and is not offered to the runtime (`SIMULATION_POLICIES`).

Costs, in slots, for task i of terminal d (size η_i) with A_e the active queues at edge e
(terminals with bits queued there, excluding d) and S_e edge e's bits per slot:
- local: μcomp + ⌈η_i / L_d⌉;
- edge e, with n_e of this slot's tasks choosing e:
  c_i(e) = a_i(e) + η_i·(A_e + n_e)/S_e, where
  a_i(e) = μtran + ⌈η_i / R_d⌉ + q_{d,e}·(A_e + 1)/S_e (transfer, then d's own backlog at
  e served at the share it gets now). The last term is the processor-sharing delay of the
  task among the queues that will be active with it.
Stage 1 (tier): a task goes to the edge tier if its best edge alone (n_e = 1) beats local.
Stage 2 (congestion game): the edge-tier tasks choose edges by best response, one task at
a time, until no task can lower its cost by moving alone (a pure Nash equilibrium). It
terminates: i's preference between edges is that of c_i(e)/η_i = a_i(e)/η_i +
(A_e + n_e)/S_e, so Φ = Σ_e Σ_{k=1..n_e} (A_e + k)/S_e + Σ_i a_i(e_i)/η_i is an exact
potential (Rosenthal 1973, with player-specific constants; Monderer and Shapley 1996) that
strictly falls with every improving move, and there are finitely many profiles.
"""

from __future__ import annotations

import numpy as np

from fl_crb.mec.observation import Observations
from fl_crb.mec.params import MECParams


def best_response_equilibrium(
    fixed_cost: np.ndarray, weight: np.ndarray, active: np.ndarray, edge_bits: np.ndarray
) -> np.ndarray:
    """Edges (0-based) of k tasks at a pure Nash equilibrium of the congestion game.

    Task i at edge e costs fixed_cost[i, e] + weight[i]·(active[e] + n_e)/edge_bits[e],
    n_e counting the tasks at e (i included). Starts from every task's best edge alone
    and lets tasks move to a strictly better edge, in turn, until none can.
    """
    fixed_cost = np.asarray(fixed_cost, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    tasks, edges = fixed_cost.shape
    choice = np.argmin(fixed_cost + weight[:, None] * (active + 1) / edge_bits, axis=1)
    count = np.bincount(choice, minlength=edges)
    moved = True
    while moved:
        moved = False
        for i in range(tasks):
            count[choice[i]] -= 1
            cost = fixed_cost[i] + weight[i] * (active + count + 1) / edge_bits
            best = int(np.argmin(cost))
            if cost[best] < cost[choice[i]] - 1e-12:
                choice[i], moved = best, True
            count[choice[i]] += 1
    return choice


def equilibrium_costs(
    choice: np.ndarray, fixed_cost: np.ndarray, weight: np.ndarray, active, edge_bits
) -> tuple[np.ndarray, np.ndarray]:
    """(each task's cost at `choice`, its best cost moving alone): equal at an equilibrium."""
    count = np.bincount(choice, minlength=fixed_cost.shape[1])
    own = np.empty(len(choice))
    alone = np.empty(len(choice))
    for i, e in enumerate(choice):
        others = count.copy()
        others[e] -= 1
        cost = fixed_cost[i] + weight[i] * (active + others + 1) / edge_bits
        own[i], alone[i] = cost[e], cost.min()
    return own, alone


class MultiTier:
    """The two-stage game-theoretic policy (reconstruction; central information)."""

    name = "multi-tier"
    note = "reconstruction; decides from every terminal's observation, which no terminal has"
    """How its results are labelled (`fl-crb evaluate`, the reproduction's tables)."""

    def __init__(self, params: MECParams, terminals: int, seed: int = 0) -> None:
        self._terminal = params.per_terminal(terminals)
        self._actions = np.zeros(terminals, dtype=np.int64)

    def act(self, observations: Observations) -> np.ndarray:
        arriving = np.flatnonzero(observations.has_task)
        if arriving.size == 0:
            return self._actions
        t = self._terminal
        bits = observations.task_bits[arriving]
        local = observations.local_wait_slots[arriving] + np.ceil(
            bits / t.local_bits_per_slot[arriving]
        )
        queued = observations.edge_queue_bits[arriving]
        # Active queues per edge over every terminal (the central view); a task's own
        # terminal's queue does not count against it.
        total = (observations.edge_queue_bits > 0).sum(axis=0)
        own = (queued > 0).astype(np.float64)
        active = total[None, :] - own
        edge_bits = t.edge_bits_per_slot[arriving]
        transfer = observations.uplink_wait_slots[arriving] + np.ceil(
            bits / t.uplink_bits_per_slot[arriving]
        )
        fixed = transfer[:, None] + queued * (active + 1) / edge_bits
        alone = fixed + bits[:, None] * (active + 1) / edge_bits
        to_edge = alone.min(axis=1) < local  # stage 1: the tier
        self._actions[arriving] = 0
        rows = np.flatnonzero(to_edge)
        if rows.size:  # stage 2: the congestion game among the edge-tier tasks
            capacity = edge_bits[rows[0]]
            if not np.allclose(edge_bits[rows], capacity):
                raise ValueError(
                    "multi-tier needs the edges' bits per slot to be the same for every "
                    "terminal (one processing density); this system's differ by terminal"
                )
            weight = bits[rows]
            # c_i(e) = fixed + η·(active_i + n_e)/S = (fixed − η·own/S) + η·(total + n_e)/S
            shifted = fixed[rows] - weight[:, None] * own[rows] / capacity
            choice = best_response_equilibrium(shifted, weight, total, capacity)
            self._actions[arriving[rows]] = choice + 1
        return self._actions
