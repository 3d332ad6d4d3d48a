"""One simulated episode, slot by slot: the loop every learner and study plays.

`play_episode` resets the simulator and yields one `EpisodeSlot` per slot until the run
is done (its arrival slots, then the drain until every task is resolved). The caller
decides for the terminals with a task in `turn.observations` and plays the slot with
`turn.step(actions)`, which returns the slot's outcomes as (terminal, arrival slot,
reward) triples. A terminal gets at most one task per slot, so (terminal, arrival slot)
names the decision a reward belongs to, however many slots later it arrives:

    for turn in play_episode(simulator, seed=seed, arrival_slots=100):
        actions = policy.act(turn.observations)
        for terminal, arrival_slot, reward in turn.step(actions):
            ...  # credit the decision `terminal` made in `arrival_slot`

All bookkeeping stays with the caller (weights before acting, training after the
step, index tables); the episode loop itself lives here once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fl_crb.mec.observation import Observations
from fl_crb.mec.simulator import MECSimulator, SlotEvents

Outcome = tuple[int, int, float]
"""(terminal, arrival slot, reward) of a task resolved in a slot; the reward is −delay in
slots for a finished task, the drop reward for a dropped one."""


class EpisodeSlot:
    """The current slot of an episode: what the terminals observe, and `step` to play it."""

    def __init__(self, simulator: MECSimulator) -> None:
        self._simulator = simulator
        self.observations: Observations = simulator.observations
        """The observations at the start of this slot."""
        self.played = False
        """Whether `step` has run this slot."""

    @property
    def slot(self) -> int:
        """This slot's index (0-based)."""
        return self.observations.slot

    def step(self, actions: np.ndarray) -> Iterator[Outcome]:
        """Run this slot with `actions` (int[D]; entries of terminals without a task are
        ignored) and return the outcomes of the tasks it resolved, in the simulator's order.
        The slot runs now; the outcomes are read only if the caller iterates them."""
        if self.played:
            raise RuntimeError(f"slot {self.slot} was already played; step once per slot")
        events = self._simulator.step(actions)
        self.played = True
        return _outcomes(events)


def play_episode(
    simulator: MECSimulator, *, seed: int, arrival_slots: int
) -> Iterator[EpisodeSlot]:
    """Reset `simulator` (arrivals drawn with `seed` for `arrival_slots` slots) and yield
    each slot until every task is resolved; the caller must `step` every slot it gets."""
    simulator.reset(seed=seed, arrival_slots=arrival_slots)
    while not simulator.done:
        turn = EpisodeSlot(simulator)
        yield turn
        if not turn.played:
            raise RuntimeError(
                f"slot {turn.slot} was not played: call step(actions) on every slot "
                "play_episode yields"
            )


def _outcomes(events: SlotEvents) -> Iterator[Outcome]:
    """The (terminal, arrival slot, reward) of each task resolved in a slot."""
    yield from zip(
        events.terminals.tolist(),
        events.arrival_slots.tolist(),
        events.rewards.tolist(),
        strict=True,
    )
