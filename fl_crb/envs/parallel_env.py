"""A PettingZoo `ParallelEnv` over the slotted MEC simulator, for other multi-agent RL libraries.

One env step is one 100 ms slot. The agents are the D terminals, `terminal_0` …
`terminal_{D-1}` (simulator index order, whatever their host names in a topology file).

Observation of an agent: a dict with
- `"observation"`: float32[3 + E + C·E], the terminal's own observation s_d(t) (model.md,
  equation 16) *scaled* by `fl_crb.learn.features` (the numbers the project's Q-network
  reads): η in Mbit, μcomp/τ, μtran/τ, q_{d,1..E} in Mbit, then the C×E load history divided
  by D/E, flattened row by row (oldest slot first). Scaled inputs keep every feature near
  0..a few instead of spanning six orders of magnitude. A terminal without a task this slot
  has η = 0; its waits and queued bits are its current queue state.
- `"action_mask"`: int8[1 + E]; all ones for a terminal with a new task, `[1, 0, …, 0]`
  otherwise: action 0 is then the only valid action and means "nothing to decide".

Actions: `Discrete(1 + E)`, 0 = compute locally, e = offload to edge e. Actions are checked
against the mask: a non-zero action of a terminal without a task, an action outside
0..E, an unknown agent or a missing action of a terminal with a task raises `ValueError`
naming the agent. Terminals without a task may be left out of the actions dict.

Reward of an agent in a step: the sum of the rewards of its tasks resolved in that slot
(−delay in slots, or the drop reward), so a decision's reward arrives when its task
resolves, up to τ slots later — as in a live system. `infos[agent]` after a step holds
`resolved_task_ids` (int64 array, ids in `env.simulator.log`) and `decided_task_id` (the id
of the task the agent decided this slot, −1 if none), to pair delayed rewards with decisions.

Episode: `arrival_slots` slots with arrivals, then slots without arrivals until every task
has resolved. The episode then *terminates* (every agent's `terminations` flag is True,
`agents` becomes empty): its end is part of the task, and every reward has been paid, so
nothing remains to bootstrap from. Truncations are always False.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

try:
    from gymnasium import spaces
    from pettingzoo import ParallelEnv
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "fl_crb.envs needs pettingzoo and gymnasium; install them with `pip install "
        f"'fl-crb[env]'` ({error})"
    ) from error

from fl_crb.learn.features import FeatureScale, encode_batch
from fl_crb.mec import MECParams, MECSimulator, Observations
from fl_crb.topology import Topology, load_topology

AGENT_PREFIX = "terminal_"
"""Agent d is named `terminal_{d}`."""

_SEED_BOUND = 2**63
"""Episode seeds are drawn from [0, 2^63) by the env's own seed stream."""


class MECParallelEnv(ParallelEnv):
    """D terminals deciding where to compute their tasks, one slot per step (see module doc)."""

    metadata: ClassVar[dict[str, Any]] = {"name": "fl_crb_mec_v0", "render_modes": []}

    def __init__(self, params: MECParams, terminals: int, arrival_slots: int = 100) -> None:
        """`params` and `terminals` define the system, `arrival_slots` the number of slots
        with task arrivals in each episode (the drain after them is not counted)."""
        if isinstance(arrival_slots, bool) or not isinstance(arrival_slots, int):
            raise ValueError(f"arrival_slots must be an int >= 1, got {arrival_slots!r}")
        if arrival_slots < 1:
            raise ValueError(f"arrival_slots must be >= 1, got {arrival_slots}")
        self.simulator = MECSimulator(params, terminals)
        """The simulator behind the env; `simulator.log` holds every task of the episode."""
        self.arrival_slots = arrival_slots
        self.render_mode = None
        self._scale = FeatureScale.from_params(params, terminals)
        self._all_terminals = np.arange(terminals)
        edges, history = params.edges, params.history_slots
        self.possible_agents = [f"{AGENT_PREFIX}{d}" for d in range(terminals)]
        self.agents: list[str] = []
        self._agent_index = {agent: d for d, agent in enumerate(self.possible_agents)}
        width = self._scale.scalar_features + history * edges
        self.observation_spaces = {
            agent: spaces.Dict(
                {
                    "observation": spaces.Box(0.0, np.inf, (width,), np.float32),
                    "action_mask": spaces.Box(0, 1, (1 + edges,), np.int8),
                }
            )
            for agent in self.possible_agents
        }
        self.action_spaces = {agent: spaces.Discrete(1 + edges) for agent in self.possible_agents}
        state_width = terminals * self._scale.scalar_features + history * edges
        self.state_space = spaces.Box(0.0, np.inf, (state_width,), np.float32)
        """Space of `state()`, the global view for centralized training."""
        self._features = np.zeros((terminals, width), dtype=np.float32)
        """The current slot's observation of every agent, one row each."""
        self._seeds = np.random.default_rng()
        self._no_op_mask = np.zeros(1 + edges, dtype=np.int8)
        self._no_op_mask[0] = 1

    @classmethod
    def from_topology(
        cls,
        topology: str | Path | Topology,
        terminals: int | None = None,
        arrival_rate_bps: float | None = None,
        **kwargs: Any,
    ) -> MECParallelEnv:
        """The env of a topology file (or loaded `Topology`), with optional overrides of the
        terminal count and the offered load per terminal; `kwargs` go to the constructor."""
        if not isinstance(topology, Topology):
            topology = load_topology(topology)
        if terminals is not None or arrival_rate_bps is not None:
            topology = topology.with_overrides(
                terminals=terminals, arrival_rate_bps=arrival_rate_bps
            )
        return cls(topology.mec_params(), topology.terminal_count, **kwargs)

    # ------------------------------------------------------------------ spaces

    def observation_space(self, agent: str) -> spaces.Dict:
        return self.observation_spaces[self._check_agent(agent)]

    def action_space(self, agent: str) -> spaces.Discrete:
        return self.action_spaces[self._check_agent(agent)]

    def _check_agent(self, agent: str) -> str:
        if agent not in self._agent_index:
            raise KeyError(self._unknown_agent(agent))
        return agent

    def _unknown_agent(self, agent: object) -> str:
        last = len(self.possible_agents) - 1
        return f"unknown agent {agent!r}; agents are {AGENT_PREFIX}0 .. {AGENT_PREFIX}{last}"

    # ------------------------------------------------------------------ episode

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, Any]]]:
        """Start an episode. `seed` restarts the env's seed stream, from which each episode
        draws its arrivals: the same seed gives the same sequence of episodes, and a later
        `reset()` without seed continues the stream with a new episode. `options` are
        accepted for API compatibility; none are defined, so they are ignored."""
        if seed is not None:
            self._seeds = np.random.default_rng(seed)
        episode_seed = int(self._seeds.integers(_SEED_BOUND))
        self.simulator.reset(seed=episode_seed, arrival_slots=self.arrival_slots)
        self.agents = list(self.possible_agents)
        infos: dict[str, dict[str, Any]] = {agent: {} for agent in self.agents}
        return self._observe(self.simulator.observations), infos

    def step(
        self, actions: dict[str, Any]
    ) -> tuple[
        dict[str, dict[str, np.ndarray]],
        dict[str, float],
        dict[str, bool],
        dict[str, bool],
        dict[str, dict[str, Any]],
    ]:
        """Run one slot with the agents' actions (see the module doc for the checks)."""
        if not self.agents:
            raise RuntimeError("the episode is over (or never started); call reset() first")
        sim = self.simulator
        chosen = self._action_array(actions, sim.observations)
        first_new_task = len(sim.log)
        events = sim.step(chosen)
        agents = self.agents
        rewards = np.bincount(
            events.terminals, weights=events.rewards, minlength=sim.terminals
        ).tolist()
        new_ids = np.arange(first_new_task, len(sim.log))
        decided = np.full(sim.terminals, -1, dtype=np.int64)
        decided[sim.log.terminal[new_ids]] = new_ids
        order = np.argsort(events.terminals, kind="stable")
        resolved = events.task_ids[order]
        bounds = np.searchsorted(events.terminals[order], np.arange(sim.terminals + 1)).tolist()
        infos = {
            agent: {
                "resolved_task_ids": resolved[bounds[d] : bounds[d + 1]],
                "decided_task_id": int(decided[d]),
            }
            for d, agent in enumerate(agents)
        }
        observations = self._observe(sim.observations)
        done = sim.done
        terminations = dict.fromkeys(agents, done)
        truncations = dict.fromkeys(agents, False)
        reward_dict = dict(zip(agents, rewards, strict=True))
        if done:
            self.agents = []
        return observations, reward_dict, terminations, truncations, infos

    def state(self) -> np.ndarray:
        """The global state for centralized training (e.g. QMIX, MAPPO): every terminal's
        scaled scalar features (η, μcomp, μtran, q_{d,1..E}), terminal after terminal, then
        the scaled load history once; float32[D·(3+E) + C·E]."""
        scalar_width = self._scale.scalar_features
        return np.concatenate(
            (self._features[:, :scalar_width].reshape(-1), self._features[0, scalar_width:])
        )

    def _observe(self, obs: Observations) -> dict[str, dict[str, np.ndarray]]:
        """Every agent's scaled observation and action mask, encoded in one batch.

        `encode_batch` refuses terminals without a task, whose rows are not a decision
        input; here every agent needs an observation each slot, so the batch is encoded
        as if every terminal had one: their η is 0 and the rest is their queue state."""
        everyone = dataclasses.replace(obs, has_task=np.ones_like(obs.has_task))
        scalars, load = encode_batch(everyone, self._all_terminals, self._scale)
        features = np.concatenate((scalars, load.reshape(load.shape[0], -1)), axis=1)
        self._features = features
        masks = np.broadcast_to(self._no_op_mask, (obs.terminals, self._no_op_mask.size)).copy()
        masks[obs.has_task] = 1
        return {
            agent: {"observation": features[d], "action_mask": masks[d]}
            for d, agent in enumerate(self.possible_agents)
        }

    def _action_array(self, actions: dict[str, Any], obs: Observations) -> np.ndarray:
        """int64[D] from the actions dict, checked against the action masks."""
        unknown = [agent for agent in actions if agent not in self._agent_index]
        if unknown:
            raise ValueError(self._unknown_agent(unknown[0]))
        chosen = np.zeros(obs.terminals, dtype=np.int64)
        given = np.zeros(obs.terminals, dtype=bool)
        if actions:
            index = [self._agent_index[agent] for agent in actions]
            values = np.asarray(list(actions.values()))
            if values.ndim != 1 or values.dtype == bool or values.dtype.kind not in "iu":
                raise self._bad_value(actions)
            edges = self.simulator.edges
            outside = (values < 0) | (values > edges)
            if outside.any():
                agent = list(actions)[int(np.flatnonzero(outside)[0])]
                raise ValueError(
                    f"{agent} chose action {actions[agent]}; valid actions are 0 (local) "
                    f"to {edges} (edge {edges})"
                )
            chosen[index] = values
            given[index] = True
        masked = np.flatnonzero((chosen != 0) & ~obs.has_task)
        if masked.size:
            d = int(masked[0])
            raise ValueError(
                f"{self.possible_agents[d]} has no task in slot {obs.slot} (action_mask "
                f"{self._no_op_mask.tolist()}) and chose action {chosen[d]}; the only valid "
                "action is 0 (nothing to decide)"
            )
        missing = np.flatnonzero(obs.has_task & ~given)
        if missing.size:
            names = [self.possible_agents[d] for d in missing[:5]]
            raise ValueError(
                f"no action for {', '.join(names)}{' …' if missing.size > 5 else ''}: a "
                f"terminal with a task in slot {obs.slot} must choose 0..{self.simulator.edges}"
            )
        return chosen

    @staticmethod
    def _bad_value(actions: dict[str, Any]) -> ValueError:
        """The error for the first action that is not one integer."""
        for agent, action in actions.items():
            value = np.asarray(action)
            if value.shape != () or value.dtype == bool or value.dtype.kind not in "iu":
                return ValueError(
                    f"{agent} chose {action!r}; an action is one integer (Discrete space)"
                )
        return ValueError(f"actions must be one integer per agent, got {actions!r}")
