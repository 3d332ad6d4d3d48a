"""The slotted MEC simulator: model.md's slot rules, vectorized over terminals and edges.

One slot, in order (model.md, "One slot, in order"):
1. arrivals: terminals with a new task observe and pick 0 (local) or e (edge e);
2. local computing, 3. edge computing, 4. transmission;
5. end of slot: finished tasks report, expired ones drop, edges broadcast Q_e(t).

How the rules map to state, and why it is exact and fast:

- *Local and uplink queues are closed-form.* A terminal's local CPU and its uplink each
  serve one FIFO queue at a fixed per-slot capacity with leftover capacity unused, so a
  task that starts in slot s needs ⌈η/L⌉ (or ⌈η/R⌉) whole slots and frees the resource
  for the next task from the slot after it ends or is dropped. On arrival the simulator
  therefore knows the task's local finish (or drop) slot and its transfer end slot
  exactly (equations 3 and 6 with ⌈·⌉), and keeps only the slot each resource is busy
  until. The outcome is delivered by a calendar in the slot it happens, so rewards reach
  policies no earlier than in a live system.
- *Edge queues are simulated slot by slot*, because processor sharing couples the
  terminals: each (terminal, edge) pair is a FIFO linked through task ids, with the
  remaining bits of its head task; a queue is active while its head has work, and each
  active head gets S_e / Q_e(t) bits.
- *Drops.* A terminal's tasks all have the same deadline τ_d and a terminal gets at most
  one task per slot, so at most one of its tasks expires per slot, and a queued task
  can only expire once every earlier task of its queue has left: drops at an edge always
  take the head of a queue. A terminal never has more than τ_d tasks alive, so every
  event lies at most τ_d slots ahead and a calendar of τ_d + 1 slots holds them all.

Times are 0-based slot indices; a task arriving in slot t has deadline slot t + τ − 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from fl_crb.mec.observation import Observations
from fl_crb.mec.params import MECParams
from fl_crb.mec.tasklog import UNRESOLVED, TaskLog
from fl_crb.mec.workload import draw_arrivals

EPSILON_BITS = 1e-6
"""Work below this many bits counts as done: it absorbs float rounding in the repeated
subtraction of processor shares, far below any real task size."""

ARRIVAL_BLOCK_SLOTS = 512
"""Slots of arrivals drawn at once when a run has no fixed length."""

_NO_TASK = -1
# Calendar channels: which scheduled event a calendar entry holds.
_LOCAL_DONE, _UPLINK_DROP, _EDGE_JOIN, _DEADLINE = range(4)
_LOCAL, _UPLINK = 0, 1


@dataclass(frozen=True)
class _ArrivalBlock:
    """A block's tasks sorted by slot; tasks of block slot i are [first[i], first[i+1])."""

    first: list[int]
    terminal: np.ndarray
    bits: np.ndarray
    local_work_slots: np.ndarray
    uplink_work_slots: np.ndarray
    after_deadline: np.ndarray
    """Absolute slot right after each task's deadline slot."""
    deadline_entry: np.ndarray
    """Flat calendar index of each task's deadline check."""
    queue_base: np.ndarray
    """Flat index of the task's terminal's queue at edge e is queue_base + e."""


class SlotEvents:
    """Tasks resolved in one slot: what the terminals learn at the end of it.

    Per-task columns are read from the task log when first asked for, so a caller that
    needs only some of them pays only for those.
    """

    def __init__(
        self,
        slot: int,
        task_ids: np.ndarray,
        edge_load: np.ndarray,
        log: TaskLog,
        drop_reward: float,
    ) -> None:
        self.slot = slot
        self.task_ids = task_ids
        """Ids (log rows) of the tasks resolved in this slot."""
        self.edge_load = edge_load
        """int[E]: Q_e(t), the active queues each edge broadcasts for this slot."""
        self._log = log
        self._drop_reward = drop_reward

    @cached_property
    def terminals(self) -> np.ndarray:
        return self._log.terminal[self.task_ids]

    @cached_property
    def arrival_slots(self) -> np.ndarray:
        return self._log.arrival_slot[self.task_ids]

    @cached_property
    def dropped(self) -> np.ndarray:
        return self._log.dropped[self.task_ids]

    @cached_property
    def delay_slots(self) -> np.ndarray:
        """finish slot − arrival slot + 1; NaN for dropped tasks."""
        return np.where(self.dropped, np.nan, self.slot - self.arrival_slots + 1.0)

    @cached_property
    def rewards(self) -> np.ndarray:
        """−delay for a finished task, Const for a dropped one."""
        return np.where(self.dropped, self._drop_reward, -self.delay_slots)


class MECSimulator:
    """Steps the MEC model one slot at a time for D terminals and E edge servers.

    Use: `observations = sim.reset(seed, arrival_slots=T)`, then repeatedly
    `events = sim.step(actions)` and read `sim.observations` for the next slot, until
    `sim.done`. After T arrival slots no task arrives and the run drains until every task
    is resolved. `reset(task_bits=...)` replays a given arrival trace instead.
    """

    def __init__(self, params: MECParams, terminals: int, seed: int | None = None) -> None:
        self.params = params
        self.terminal = params.per_terminal(terminals)
        self.terminals = terminals
        self.edges = params.edges
        self.drop_reward = params.drop_reward_value(terminals)
        self._calendar_slots = int(self.terminal.deadline_slots.max()) + 1
        self._inverse_bits_per_slot = 1.0 / np.concatenate(
            (self.terminal.local_bits_per_slot, self.terminal.uplink_bits_per_slot)
        )
        """1/L for each terminal, then 1/R for each terminal (the `_free_from` layout)."""
        actions = np.arange(1 + self.edges)
        self._uses_uplink = (actions > 0).astype(np.int64)
        """Per action: 1 if it offloads (needs the uplink), else 0."""
        self._resource_offset = self._uses_uplink * terminals
        """Per action: offset of the resource it takes in `_free_from`."""
        self._deadline_slots = self.terminal.deadline_slots
        self._largest_action = np.uint64(self.edges)
        self._calendar_row_stride = np.int64(4 * terminals)
        self._terminal_count = np.int64(terminals)
        self._queue_base = np.arange(terminals) * self.edges - 1
        """Flat queue index of terminal d's queue at edge e is queue_base[d] + e."""
        self._edge_of_queue = np.tile(np.arange(self.edges), terminals)
        self._edge_bits_per_slot = self.terminal.edge_bits_per_slot.reshape(-1)
        self._seed = seed
        self.reset(seed)

    # ------------------------------------------------------------------ run control

    def reset(
        self,
        seed: int | None = None,
        arrival_slots: int | None = None,
        task_bits: np.ndarray | None = None,
    ) -> Observations:
        """Start a new run and return the observations of slot 0.

        With `task_bits` (float[T, D], 0 where no task) the run replays that trace;
        otherwise arrivals are drawn from the workload with `seed`, for `arrival_slots`
        slots (None: without end). Either way the run drains after its arrival slots.
        """
        d, queues = self.terminals, self.terminals * self.edges
        self._rng = np.random.default_rng(self._seed if seed is None else seed)
        if task_bits is not None:
            task_bits = np.asarray(task_bits, dtype=np.float64)
            if task_bits.ndim != 2 or task_bits.shape[1] != d:
                raise ValueError(
                    f"task_bits must be float[T, {d}] (slots x terminals), got {task_bits.shape}"
                )
            if np.any(task_bits < 0) or not np.all(np.isfinite(task_bits)):
                raise ValueError("task_bits must be finite and >= 0 (0 means no task)")
            self._arrival_slots: int | None = task_bits.shape[0]
        else:
            self._arrival_slots = arrival_slots
            block = ARRIVAL_BLOCK_SLOTS if arrival_slots is None else arrival_slots
            task_bits = draw_arrivals(self.terminal, block, self._rng)
        self._load_arrivals(task_bits, first_slot=0)
        self._no_arrivals = np.zeros(d)
        self._no_tasks = np.zeros(d, dtype=bool)

        self.slot = 0
        self.log = TaskLog(capacity=max(1024, int(self._arrivals.size * 0.1)))
        self._resolved = 0
        self._free_from = np.zeros(2 * d, dtype=np.int64)
        """First slot each terminal's local CPU (first D entries) and uplink (last D) is
        free for a new task."""
        self._calendar = np.full((self._calendar_slots, 4, d), _NO_TASK, dtype=np.int64)
        """[slot mod (τ+1), channel, terminal]: task id of a scheduled event."""
        self._head_task = np.full(queues, _NO_TASK, dtype=np.int64)
        self._tail_task = np.full(queues, _NO_TASK, dtype=np.int64)
        """Last task of each queue; _NO_TASK (−1) points at the scratch entry below."""
        self._next_in_queue = np.full(self.log.capacity + 1, _NO_TASK, dtype=np.int64)
        """Per task id: the task behind it in its edge queue (a linked FIFO); the last
        entry is scratch, written when a task joins a queue that never had one."""
        self._queue_of_task = np.full(self.log.capacity, _NO_TASK, dtype=np.int64)
        """Per task id: its flat (terminal, edge) queue index; negative for local tasks."""
        self._head_bits = np.zeros(queues)
        """Remaining bits of each queue's head task; 0 for an idle queue."""
        self._backlog_bits = np.zeros(queues)
        """Bits of the tasks behind each queue's head."""
        self._load_history = np.zeros((self.params.history_slots, self.edges), dtype=np.int64)
        self.observations = self._observe()
        return self.observations

    @property
    def done(self) -> bool:
        """All arrival slots are past and every task is resolved."""
        past_arrivals = self._arrival_slots is not None and self.slot >= self._arrival_slots
        return past_arrivals and self._resolved == len(self.log)

    # ------------------------------------------------------------------ one slot

    def step(self, actions: np.ndarray) -> SlotEvents:
        """Run the current slot with each terminal's action; entries of terminals
        without a task are ignored. Returns the tasks resolved in this slot."""
        t = self.slot
        self._admit_arrivals(t, actions)
        row = self._calendar[t % self._calendar_slots]
        self._join_edge_queues(row[_EDGE_JOIN])
        edge_load, edge_finished = self._compute_at_edges(t)
        edge_dropped = self._drop_expired_at_edges(t, row[_DEADLINE])
        closed_form = row[:_EDGE_JOIN]
        resolved = np.concatenate((closed_form[closed_form >= 0], edge_finished, edge_dropped))
        row.fill(_NO_TASK)
        self._resolved += resolved.size
        self._load_history[:-1] = self._load_history[1:]
        self._load_history[-1] = edge_load
        self.slot = t + 1
        self.observations = self._observe()
        return SlotEvents(t, resolved, edge_load, self.log, self.drop_reward)

    def _load_arrivals(self, task_bits: np.ndarray, first_slot: int) -> None:
        """Take a block of arrivals from `first_slot` on.

        Terminals observe dense rows (`task_bits`, `has_task`); admission reads the same
        tasks as a slot-sorted list, with what it needs of each precomputed for the whole
        block at once: the whole slots of work on the local CPU and on the uplink, the
        slot after its deadline, and its deadline's calendar entry.
        """
        self._arrivals = task_bits
        self._arrivals_offset = first_slot
        self._has_task = task_bits > 0
        slot, terminal = self._has_task.nonzero()  # sorted by slot, then terminal
        work_bits = task_bits[slot, terminal] - EPSILON_BITS
        after_deadline = slot + first_slot + self._deadline_slots[terminal]
        self._block = _ArrivalBlock(
            first=np.searchsorted(slot, np.arange(task_bits.shape[0] + 1)).tolist(),
            terminal=terminal,
            bits=task_bits[slot, terminal],
            local_work_slots=np.ceil(work_bits * self._inverse_bits_per_slot[terminal]).astype(
                np.int64
            ),
            uplink_work_slots=np.ceil(
                work_bits * self._inverse_bits_per_slot[terminal + self.terminals]
            ).astype(np.int64),
            after_deadline=after_deadline,
            deadline_entry=(
                ((after_deadline - 1) % self._calendar_slots) * self._calendar_row_stride
                + _DEADLINE * self.terminals
                + terminal
            ),
            queue_base=self._queue_base[terminal],
        )

    def _observe(self) -> Observations:
        t = self.slot
        index = t - self._arrivals_offset
        if self._arrival_slots is not None and t >= self._arrival_slots:
            task_bits, has_task, self._arrivals_now = self._no_arrivals, self._no_tasks, None
        else:
            if index >= self._arrivals.shape[0]:
                self._load_arrivals(
                    draw_arrivals(self.terminal, ARRIVAL_BLOCK_SLOTS, self._rng), first_slot=t
                )
                index = 0
            task_bits, has_task = self._arrivals[index], self._has_task[index]
            first = self._block.first
            self._arrivals_now = slice(first[index], first[index + 1])
        waits = np.maximum(self._free_from - t, 0).reshape(2, self.terminals)
        return Observations(
            slot=t,
            has_task=has_task,
            task_bits=task_bits,
            local_wait_slots=waits[_LOCAL],
            uplink_wait_slots=waits[_UPLINK],
            edge_queue_bits=(self._head_bits + self._backlog_bits).reshape(
                self.terminals, self.edges
            ),
            load_history=self._load_history.copy(),
        )

    def _admit_arrivals(self, t: int, actions: np.ndarray) -> None:
        """Steps 1, 2 and 4 for the new tasks, in closed form.

        The local CPU and the uplink each serve their FIFO queue L (or R) bits per slot
        with leftover capacity unused, so a task taking the resource from slot `start`
        occupies it ⌈η/L⌉ (or ⌈η/R⌉) whole slots, until `end`, or until its deadline.
        A local task is dropped if `end` passes its deadline; a transfer ending in slot s
        joins the edge queue in s + 1, so it is dropped if `end` reaches the deadline.
        """
        now = self._arrivals_now
        if now is None or now.start == now.stop:
            return
        block = self._block
        arriving = block.terminal[now]
        chosen = self._chosen_actions(actions, arriving)
        # Viewed as unsigned, a negative action is huge: one comparison finds both kinds.
        if np.count_nonzero(chosen.view(np.uint64) > self._largest_action):
            raise self._invalid_action(chosen, arriving)
        uplink = self._uses_uplink[chosen]
        resource = arriving + self._resource_offset[chosen]
        after_deadline = block.after_deadline[now]
        start = np.maximum(self._free_from[resource], t)
        after_end = start + np.where(
            uplink, block.uplink_work_slots[now], block.local_work_slots[now]
        )
        free_from = np.minimum(after_end, after_deadline)
        self._free_from[resource] = free_from
        lost = after_end + uplink > after_deadline
        joins = uplink > lost  # offloaded and not lost
        release = free_from - 1
        resolve = np.where(joins, UNRESOLVED, release)
        ids = self.log.append(t, arriving, block.bits[now], chosen, resolve, lost)
        if self._queue_of_task.size < self.log.capacity:
            self._grow_task_arrays()
        self._queue_of_task[ids] = block.queue_base[now] + chosen
        # Local tasks resolve at `release`, lost transfers at their deadline (== release),
        # joining transfers enter their edge queue in the slot after their last bit
        # (`free_from`). The flat calendar is [slot mod (τ+1), channel, terminal]: an
        # entry's flat index is (slot · 4D + channel · D + terminal) mod its size.
        calendar = self._calendar.reshape(-1)
        # channel · D + terminal: resource is (uplink · D + terminal), joins add one more D.
        event_index = (release + joins) * self._calendar_row_stride + resource
        event_index += joins * self._terminal_count
        calendar[event_index % calendar.size] = ids
        calendar[block.deadline_entry[now]] = ids

    def _grow_task_arrays(self) -> None:
        """Follow the task log's growth with the per-task arrays."""
        tasks = self._queue_of_task.size  # rows in use before growing; not the scratch
        for name, extra in (("_next_in_queue", 1), ("_queue_of_task", 0)):
            grown = np.full(self.log.capacity + extra, _NO_TASK, dtype=np.int64)
            grown[:tasks] = getattr(self, name)[:tasks]
            setattr(self, name, grown)

    def _chosen_actions(self, actions: np.ndarray, arriving: np.ndarray) -> np.ndarray:
        """The actions of the terminals with a new task, as int64."""
        actions = np.asarray(actions)
        if actions.shape != (self.terminals,):
            raise ValueError(f"actions must be int[{self.terminals}], got shape {actions.shape}")
        if actions.dtype != np.int64:
            if not np.issubdtype(actions.dtype, np.integer):
                raise ValueError(f"actions must be integers, got dtype {actions.dtype}")
            actions = actions.astype(np.int64)
        return actions[arriving]

    def _invalid_action(self, chosen: np.ndarray, arriving: np.ndarray) -> ValueError:
        bad = int(np.flatnonzero((chosen < 0) | (chosen > self.edges))[0])
        return ValueError(
            f"terminal {arriving[bad]} chose action {chosen[bad]}; valid actions are "
            f"0 (local) to {self.edges} (edge {self.edges})"
        )

    def _join_edge_queues(self, joins_by_terminal: np.ndarray) -> None:
        """Start of step 3: transfers that ended last slot enter their edge queue."""
        ids = joins_by_terminal[joins_by_terminal >= 0]
        if ids.size == 0:
            return
        queues = self._queue_of_task[ids]
        sizes = self.log.size_bits[ids]
        # Link behind the current tail; for an empty queue the tail is a task already
        # gone (or the scratch entry), whose link is never read again.
        self._next_in_queue[self._tail_task[queues]] = ids
        self._tail_task[queues] = ids
        busy = self._head_bits[queues] > 0.0
        if np.count_nonzero(busy):
            self._backlog_bits[queues[busy]] += sizes[busy]
            idle = ~busy
            queues, ids, sizes = queues[idle], ids[idle], sizes[idle]
        self._head_task[queues] = ids
        self._head_bits[queues] = sizes

    def _compute_at_edges(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Step 3: each active queue's head gets S_e / Q_e(t) bits; returns Q_e(t) and
        the ids of the tasks that finished."""
        active = (self._head_bits > 0.0).nonzero()[0]  # far faster than float nonzero
        if active.size == 0:
            return np.zeros(self.edges, dtype=np.int64), active
        edge = self._edge_of_queue[active]
        edge_load = np.bincount(edge, minlength=self.edges)
        remaining = self._head_bits[active] - self._edge_bits_per_slot[active] / edge_load[edge]
        finished = remaining <= EPSILON_BITS
        remaining[finished] = 0.0
        self._head_bits[active] = remaining
        finished_ids = self._pop_heads(active[finished])
        self.log.resolve_slot[finished_ids] = t
        return edge_load, finished_ids

    def _drop_expired_at_edges(self, t: int, deadline_by_terminal: np.ndarray) -> np.ndarray:
        """Step 5: a task still unresolved at the end of its deadline slot is in an edge
        queue, and at its head (see the module docstring): drop it."""
        ids = deadline_by_terminal[deadline_by_terminal >= 0]
        expired = ids[self.log.resolve_slot[ids] == UNRESOLVED]
        if expired.size == 0:
            return expired
        self._pop_heads(self._queue_of_task[expired])
        self.log.resolve_slot[expired] = t
        self.log.dropped[expired] = True
        return expired

    def _pop_heads(self, queues: np.ndarray) -> np.ndarray:
        """Remove the head task of each queue and start its next one; return the
        removed ids."""
        removed = self._head_task[queues]
        following = self._next_in_queue[removed]
        self._head_task[queues] = following
        empty = following < 0
        next_bits = self.log.size_bits[following]
        next_bits[empty] = 0.0
        self._head_bits[queues] = next_bits
        backlog = self._backlog_bits[queues] - next_bits
        backlog[empty] = 0.0  # exactly 0 once empty, so float drift cannot accumulate
        self._backlog_bits[queues] = backlog
        return removed
