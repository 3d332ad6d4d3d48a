"""One terminal's transitions and trajectories, built from decisions and late rewards.

model.md, "Reward and transitions": the transition of the decision at slot t is
(s(t), a(t), r(t), s(t')) where t' is the SAME terminal's next decision slot, and it is
complete only once its reward is known, which happens when the task finishes or is
dropped, up to τ slots later and not necessarily in decision order (a task sent to a fast
edge can finish before an earlier local one). A trajectory is n consecutive complete
transitions of one terminal.

How the builder keeps that exact:
- Decisions are kept in decision order, keyed by a task id unique within the terminal
  (the simulator trainer uses the arrival slot: a terminal gets at most one task per slot;
  a live terminal uses its own task counter). A reward is matched by that id, so it lands
  on the decision that caused it whatever order rewards arrive in.
- A decision's next state is the state of the terminal's next decision. Transitions leave
  the front of the queue only in decision order, once complete; a trajectory is cut from
  every n of them. One builder serves one terminal, so a trajectory never mixes terminals.
- Episodes are an artefact of the simulated experiments; a terminal's life is one
  continuing run. `end_episode()` only checks that every outcome was delivered: the
  episode's last decision keeps waiting for its next state, which is the terminal's first
  decision of the next episode (a state after the reset, as a real terminal might see
  after an idle spell). Marking it `done` instead would give about one transition in six
  (a terminal decides ~6 times per 100-slot episode) the target r instead of
  r + γ·Q(s', ·) ≈ 10·r, for states the network cannot tell apart from the others: noise
  far larger than the differences between actions. So the builder never sets `done`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from fl_crb.learn.pool import FIELDS, Trajectory


@dataclass(slots=True)
class _Decision:
    """One decision awaiting its reward and/or its successor state."""

    task_id: int
    scalars: np.ndarray
    load: np.ndarray
    action: int
    reward: float | None = None
    next_scalars: np.ndarray | None = None
    next_load: np.ndarray | None = None

    @property
    def complete(self) -> bool:
        return self.reward is not None and self.next_scalars is not None


class TrajectoryBuilder:
    """Turns one terminal's decisions and their delayed rewards into trajectories of n."""

    def __init__(self, trajectory_length: int = 4) -> None:
        if trajectory_length < 1:
            raise ValueError(f"trajectory_length must be >= 1, got {trajectory_length!r}")
        self.trajectory_length = trajectory_length
        self._open: deque[_Decision] = deque()
        """Decisions not yet moved to `_complete`, in decision order."""
        self._by_task: dict[int, _Decision] = {}
        """Decisions still waiting for their reward, by task id."""
        self._complete: list[_Decision] = []
        """Complete transitions, in decision order, not yet cut into a trajectory."""

    @property
    def pending_rewards(self) -> int:
        """Decisions whose reward has not arrived yet."""
        return len(self._by_task)

    @property
    def complete_transitions(self) -> int:
        """Complete transitions waiting to fill the next trajectory (fewer than n)."""
        return len(self._complete)

    def decide(
        self, task_id: int, scalars: np.ndarray, load: np.ndarray, action: int
    ) -> list[Trajectory]:
        """Record a decision (encoded state, action); it is the previous decision's s'.

        Returns the trajectories this completes (a previous transition whose reward is
        already known may only have lacked its next state).
        """
        task_id = int(task_id)
        if task_id in self._by_task:
            raise ValueError(f"task id {task_id} already has a decision awaiting its reward")
        decision = _Decision(
            task_id, np.asarray(scalars, np.float32), np.asarray(load, np.float32), int(action)
        )
        if self._open:
            self._open[-1].next_scalars = decision.scalars
            self._open[-1].next_load = decision.load
        self._open.append(decision)
        self._by_task[task_id] = decision
        return self._collect()

    def reward(self, task_id: int, reward: float) -> list[Trajectory]:
        """Deliver the reward of the decision made for `task_id`; returns new trajectories."""
        decision = self._by_task.pop(int(task_id), None)
        if decision is None:
            raise ValueError(
                f"reward {reward} for task id {task_id}, which has no decision awaiting a "
                "reward on this terminal (unknown id, or its reward was already delivered)"
            )
        decision.reward = float(reward)
        return self._collect()

    def end_episode(self) -> None:
        """The simulated system resets: check that no decision still awaits its reward.

        The last decision's transition completes with the next episode's first decision.
        """
        if self._by_task:
            raise ValueError(
                f"end_episode with {len(self._by_task)} decisions still awaiting rewards "
                f"(task ids {sorted(self._by_task)[:5]}...); deliver every outcome first"
            )

    def _collect(self) -> list[Trajectory]:
        while self._open and self._open[0].complete:
            self._complete.append(self._open.popleft())
        trajectories = []
        n = self.trajectory_length
        while len(self._complete) >= n:
            chunk, self._complete = self._complete[:n], self._complete[n:]
            trajectories.append(_stack(chunk))
        return trajectories

    # -- persistence: only between episodes, when nothing awaits a reward ---------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Complete transitions not yet cut, and the last decision (awaiting its next
        state), as arrays; refused while a decision awaits its reward."""
        if self._by_task:
            raise ValueError(
                "a trajectory builder can be saved only between episodes (after end_episode); "
                f"{len(self._by_task)} decisions await their reward"
            )
        state: dict[str, np.ndarray] = {}
        if self._complete:
            leftover = _stack(self._complete)
            state.update({name: getattr(leftover, name) for name in FIELDS})
        if self._open:
            (last,) = self._open
            state.update(
                last_scalars=last.scalars,
                last_load=last.load,
                last_action=np.array(last.action),
                last_reward=np.array(last.reward),
            )
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what `state_dict` saved (an empty mapping: a fresh builder)."""
        self._open.clear()
        self._by_task.clear()
        self._complete = []
        count = len(state["action"]) if "action" in state else 0
        if count >= self.trajectory_length:
            raise ValueError(
                f"saved builder state holds {count} transitions; at most "
                f"{self.trajectory_length - 1} can be left over"
            )
        for i in range(count):
            self._complete.append(
                _Decision(
                    task_id=-1,
                    scalars=state["scalars"][i],
                    load=state["load"][i],
                    action=int(state["action"][i]),
                    reward=float(state["reward"][i]),
                    next_scalars=state["next_scalars"][i],
                    next_load=state["next_load"][i],
                )
            )
        if "last_action" in state:
            self._open.append(
                _Decision(
                    task_id=-1,
                    scalars=state["last_scalars"],
                    load=state["last_load"],
                    action=int(state["last_action"]),
                    reward=float(state["last_reward"]),
                )
            )


def _stack(chunk: list[_Decision]) -> Trajectory:
    """The complete transitions of `chunk` as one trajectory."""
    return Trajectory(
        scalars=np.stack([d.scalars for d in chunk]),
        load=np.stack([d.load for d in chunk]),
        action=np.array([d.action for d in chunk], dtype=np.int64),
        reward=np.array([d.reward for d in chunk], dtype=np.float32),
        next_scalars=np.stack([d.next_scalars for d in chunk]),
        next_load=np.stack([d.next_load for d in chunk]),
        done=np.zeros(len(chunk), dtype=bool),
    )
