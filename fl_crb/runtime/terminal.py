"""The terminal party: generates tasks, decides, computes locally or sends real bytes to an edge.

`python -m fl_crb.runtime.terminal CONFIG.json` (start handshake: `fl_crb.runtime.party`).
Its `Decider` comes from a `DeciderFactory`, `make_decider` unless the party is started
by a layer above with its own (the federated terminal, `fl_crb.federation.terminal`).
At start-up it connects to every edge server (HELLO → WELCOME). At each slot boundary t:

1. arrival: if its seeded workload (the simulator's distribution, `draw_arrivals`) has a
   task in slot t, it builds the simulator's observation (its own queues' waits, the
   edges' LOAD reports of slot t − 1) and asks its `Decider`; an offloaded task is
   announced to the chosen edge at once (TASK header) and queued on the uplink;
2. local computing: the local CPU's head task gets one slot (L bits, `SlotServer`);
3. uplink: the uplink's head task gets one slot; its real bytes for that slot are written
   during the slot, paced in `pace_ticks_per_slot` steps at R bits per slot (or all at
   once when `pace_uplink` is off and a network emulator shapes the link).

Weights: an edge may send WEIGHTS frames (the edge managing this terminal, when it hands
out its learner's weights, `fl_crb.runtime.edge_server`). The party reassembles each blob
per connection and gives it, whole, to its decider if that is a `WeightsSink` (the
federated terminal checks and acts with it); a decider that is not one ignores weights,
counted as `weights_ignored`. Each blob's version, the slot its edge saw it published
and the slot it arrived here are kept for the summary (`weights_received`), and each
decision's `WeightsAge` goes to the task log.

A task's id is its index in the terminal's workload (the n-th task drawn has id n − 1),
so ids rise with arrival and stay unique across a restart: a terminal started again
after it died (`fl_crb.runtime.party_supervisor`) begins at the slot under way, appends to
the same task log, and its first task's id is above every id its earlier life used (the
edges require rising ids). A restarted terminal does not wait for every edge before READY:
those it cannot reach at once are reconnected to in the background, as if lost.

Relay uplink: a decider that relays its uploads through the terminal's managing edge
(`fl_crb.runtime.upload_relay.RelaysUploads`; the federated terminal with `--uplink
relay`) gives the party an `UploadOutbox`. The uploads the outbox hands over (it may
gather a few first) go to the managing edge as UPLOAD frames in one write, every
unacknowledged one again on each new connection to that edge; the edge's STORED answers
and ACK frames (acknowledgements, handed to the outbox, which checks them) come back on
that connection. At the end the party hands over whatever the outbox still gathers and
waits, at most `RELAY_DRAIN_S`, until the edge has answered STORED for every upload it
handed over.

Local tasks resolve here (finished, or dropped at the end of their deadline slot);
offloaded tasks resolve when the edge's OUTCOME arrives. Every task goes to the task log
as it arrives and again as it resolves, each line flushed at once (`TaskLogWriter`), so
a terminal that dies leaves what it had logged. CPU speed is emulated by accounting
(whole slots of L bits), not by burning cycles.

An edge that becomes unreachable (its connection closes or breaks, it sends a bad frame,
or it is silent for `EDGE_SILENCE_S` while it should report every slot) is routed
around: the tasks it held resolve as `edge-lost` (dropped at their deadline) and leave
the uplink; a task the policy sends to it meanwhile is computed locally instead and
logged as redirected (`redirected_from`); the terminal reconnects with backoff
(`RECONNECT_FIRST_S` doubling to `RECONNECT_MAX_S`) and offloads to it again once
it answers. Reconnections and redirected tasks are counted in the party's summary.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import zlib
from dataclasses import fields
from pathlib import Path

import numpy as np

from fl_crb.mec.params import TerminalArrays
from fl_crb.mec.workload import draw_arrivals
from fl_crb.runtime.clock import SlotClock, SlotTimer
from fl_crb.runtime.config import TerminalConfig, load_config
from fl_crb.runtime.connection import FRAME_TIMEOUT_S, FramedConnection, PeerGone, PeerSilent
from fl_crb.runtime.decider import DeciderFactory, WeightsSink, make_decider
from fl_crb.runtime.load_board import LoadBoard
from fl_crb.runtime.party import (
    announce_ready,
    await_start,
    configure_logging,
    enter_realtime,
    exit_now,
    restart_number,
    write_json,
)
from fl_crb.runtime.protocol import (
    Ack,
    ErrorNotice,
    Hello,
    LoadReport,
    Message,
    Outcome,
    OutcomeKind,
    ProtocolError,
    Stored,
    TaskHeader,
    Upload,
    WeightsAssembly,
    WeightsChunk,
    Welcome,
    payload_bytes_of,
)
from fl_crb.runtime.tasklog import EDGE_LOST, LiveTask, TaskLogWriter, weights_age_summary
from fl_crb.runtime.terminal_queues import QueuedTask, SlotServer, SlotService
from fl_crb.runtime.uplink import Uplink
from fl_crb.runtime.upload_relay import RELAY_DRAIN_S, RelaysUploads

log = logging.getLogger(__name__)

MAX_BACKLOG_BYTES = 64 << 20
"""Unsent bytes towards an edge beyond which it counts as not reading."""
OUTCOME_GRACE_S = 2.0
"""After the last slot, how long to wait for the edges' last OUTCOME frames."""
EDGE_SILENCE_S = 5.0
"""During the run an edge reports every slot; silent this long, it counts as unreachable."""
HANDSHAKE_TIMEOUT_S = 2.0
"""How long a reconnection may take, TCP connection and HELLO → WELCOME."""
RECONNECT_FIRST_S = 0.5
"""Wait before the first reconnection attempt to a lost edge; doubled after each failure."""
RECONNECT_MAX_S = 8.0
"""Longest wait between reconnection attempts."""
PAYLOAD_SPREAD_BYTES = 64 << 10
"""Random bytes beyond the largest payload, so payloads of equal size start at different
offsets (`TerminalParty._payload`)."""
PAYLOAD_STEP_BYTES = 4099
"""How far apart consecutive tasks' payloads start in the terminal's random bytes."""
RESTART_CONNECT_S = 3.0
"""How long a restarted terminal tries to reach each edge before READY; an edge it cannot
reach by then is reconnected to in the background."""


def terminal_workload(arrays: TerminalArrays, terminal: int, slots: int, seed: int) -> np.ndarray:
    """Task sizes of one terminal for `slots` slots (0: no task), the simulator's way."""
    own = TerminalArrays(
        **{f.name: getattr(arrays, f.name)[terminal : terminal + 1] for f in fields(arrays)}
    )
    return draw_arrivals(own, slots, np.random.default_rng([seed, terminal]))[:, 0]


class TerminalParty:
    """One terminal: its workload, queues, decider, connections and slot loop."""

    def __init__(self, config: TerminalConfig, deciders: DeciderFactory = make_decider) -> None:
        self.config = config
        run = config.run
        params, terminals = run.model()
        d = config.terminal
        if not 0 <= d < terminals:
            raise ValueError(f"terminal index {d} does not exist; the run has 0..{terminals - 1}")
        if len(config.edges) != params.edges:
            raise ValueError(
                f"terminal config lists {len(config.edges)} edge addresses; the topology has "
                f"{params.edges} edges"
            )
        arrays = params.per_terminal(terminals)
        self.name = f"t{d + 1}"
        self.slot_s = params.slot_s
        self.edges = params.edges
        self.local = SlotServer(float(arrays.local_bits_per_slot[d]))
        self.uplink = Uplink(
            float(arrays.uplink_bits_per_slot[d]), config.pace_uplink, config.pace_ticks_per_slot
        )
        self.deadline_slots = int(arrays.deadline_slots[d])
        self.drop_reward = params.drop_reward_value(terminals)
        self.sizes = terminal_workload(arrays, d, run.arrival_slots, run.target.seed)
        self._arrival_slots = np.flatnonzero(self.sizes > 0)
        largest = payload_bytes_of(float(self.sizes.max())) if self.sizes.size else 0
        self._payloads = memoryview(
            np.random.default_rng([run.target.seed, d, 1]).bytes(largest + PAYLOAD_SPREAD_BYTES)
        )
        """Random bytes drawn once; each offloaded task's payload is a slice of them."""
        self.board = LoadBoard(params.edges, params.history_slots)
        trajectories = Path(config.task_log_path).with_name(f"{self.name}.trajectories.npz")
        self.decider = deciders(
            config.policy,
            params,
            terminals,
            d,
            run.target.seed * 1_000_003 + d,
            trajectories,
            federation=config.federation,
        )
        self.weights_sink = self.decider if isinstance(self.decider, WeightsSink) else None
        """The decider, if it takes weights from the edges."""
        self.weights_received: list[tuple[int, int, int, int]] = []
        """(edge, version, published slot, slot it arrived in) of every whole blob."""
        self.weights_ignored = 0
        """Whole blobs received while the decider takes none."""
        self.outbox = (
            self.decider.upload_outbox() if isinstance(self.decider, RelaysUploads) else None
        )
        """The decider's uploads, when they go through the managing edge (relay uplink)."""
        self.managing_edge = int(arrays.managing_edge[d])
        self._unstored: set[int] = set()
        """Post ids handed to the managing edge that it has not answered STORED yet."""
        self.relay_counts = {"handed": 0, "handed_again": 0, "stored": 0, "acks": 0}
        """Relay uplink: uploads handed to the edge (again: on a new connection), its
        STORED answers and the acknowledgements it passed on."""
        self.tasks: list[LiveTask] = []
        """This life's tasks in arrival order; `tasks[i]` has id `first_task_id + i`."""
        self.first_task_id = 0
        """The id of the first task of the slot it began at (0 unless it started late)."""
        self.task_log = TaskLogWriter(config.task_log_path)
        self._awaiting: dict[int, LiveTask] = {}
        """Offloaded tasks whose OUTCOME has not arrived."""
        self._via: dict[int, FramedConnection] = {}
        """The connection each awaited task was announced on."""
        self.connections: list[FramedConnection | None] = [None] * params.edges
        """Each edge's connection; None while it is unreachable."""
        self._seen: list[FramedConnection] = []
        """Every connection made, for the byte counts."""
        self._readers: list[asyncio.Task] = []
        self._reconnecting: dict[int, asyncio.Task] = {}
        self._running = False
        self._closing = False
        self.clock: SlotClock | None = None
        self.first_slot = 0
        """The slot it began at: 0, or the slot under way when it started after the epoch."""
        self.edges_lost = [0] * params.edges
        """Per edge, how often its connection was lost during the run."""
        self.reconnections = [0] * params.edges
        self.redirected = [0] * params.edges
        """Per edge, tasks the policy sent to it while unreachable (computed locally)."""
        self.late_outcomes = 0
        """OUTCOMEs for tasks already resolved here (their edge was given up on)."""
        self.ignored_load_reports = 0
        """LOAD reports for slots far from the terminal's clock (not kept)."""

    # ------------------------------------------------------------------ start-up

    async def connect(self, every_edge: bool = True) -> None:
        """Connect to every edge server (retrying while they start) and say HELLO.

        `every_edge` False (a restarted terminal): an edge not reached within
        `RESTART_CONNECT_S` is reconnected to in the background instead of failing."""
        timeout_s = self.config.connect_timeout_s if every_edge else RESTART_CONNECT_S
        for edge in range(self.edges):
            give_up = time.time() + timeout_s
            while True:
                try:
                    connection = await self._open(edge, timeout_s)
                    break
                except (OSError, ConnectionError, ProtocolError) as error:
                    if every_edge and not isinstance(error, OSError):
                        raise
                    if time.time() > give_up:
                        if every_edge:
                            raise ConnectionError(
                                f"{self.name}: cannot reach {self._peer(edge)}: {error}"
                            ) from None
                        connection = None
                        break
                    await asyncio.sleep(0.1)
            if connection is None:
                log.warning(
                    "%s: %s unreachable at restart; reconnecting in the background",
                    self.name,
                    self._peer(edge),
                )
                self._reconnecting[edge] = asyncio.create_task(self._reconnect(edge))
            else:
                self._attach(edge, connection)

    def _peer(self, edge: int) -> str:
        address = self.config.edges[edge]
        return f"edge{edge + 1} at {address.host}:{address.port}"

    async def _open(self, edge: int, timeout_s: float) -> FramedConnection:
        """A new connection to `edge`, HELLO said and WELCOME checked. Raises OSError
        (unreachable), ConnectionError (refused) or ProtocolError (not our edge)."""
        peer = self._peer(edge)
        address = self.config.edges[edge]
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address.host, address.port), timeout_s
        )
        connection = FramedConnection(reader, writer, peer, MAX_BACKLOG_BYTES, FRAME_TIMEOUT_S)
        self._seen.append(connection)
        try:
            connection.send(Hello(self.config.run.run_id, self.config.terminal))
            welcome = await asyncio.wait_for(connection.receive(), timeout_s)
            if isinstance(welcome, ErrorNotice):
                raise ConnectionError(f"{self.name}: {peer} refused us: {welcome.text}")
            expected = Welcome(self.config.run.run_id, edge)
            if welcome != expected:
                raise ProtocolError(peer, f"expected {expected!r}, got {welcome!r}")
        except BaseException:
            connection.close()
            raise
        return connection

    def _attach(self, edge: int, connection: FramedConnection) -> None:
        self.connections[edge] = connection
        assembly = WeightsAssembly(connection.peer)  # a blob never spans two connections
        self._readers.append(asyncio.create_task(self._read(edge, connection, assembly)))
        if self.outbox is not None and edge == self.managing_edge:
            self.outbox.posted_since()  # the whole outbox goes now
            self._hand_over(self.outbox.unacknowledged(), again=True)

    def _relay_new(self, final: bool = False) -> None:
        """Hand the uploads the outbox releases to the managing edge (relay uplink; all
        it holds when `final`); while the edge is unreachable they wait in the outbox for
        the next connection."""
        if self.outbox is not None:
            self._hand_over(self.outbox.posted_since(final=final), again=False)

    def _hand_over(self, uploads: list[tuple[int, bytes]], again: bool) -> None:
        edge = self.managing_edge
        connection = self.connections[edge]
        if connection is None or not uploads:
            return
        try:
            connection.send_many([Upload(post_id, blob) for post_id, blob in uploads])
            self._unstored.update(post_id for post_id, _ in uploads)
            self.relay_counts["handed_again" if again else "handed"] += len(uploads)
        except (PeerGone, ConnectionError) as error:
            log.warning("%s: uploads to %s: %s", self.name, connection.peer, error)
            self._lost(edge, connection)

    async def _reconnect(self, edge: int) -> None:
        """Try to reach a lost edge again, with bounded exponential backoff, until the run
        ends; once it answers, offload to it again."""
        wait_s, attempts = RECONNECT_FIRST_S, 0
        while not self._closing:
            await asyncio.sleep(wait_s)
            attempts += 1
            try:
                connection = await self._open(edge, HANDSHAKE_TIMEOUT_S)
            except (OSError, ConnectionError, ProtocolError) as error:
                log.info("%s: %s still unreachable: %s", self.name, self._peer(edge), error)
                wait_s = min(2 * wait_s, RECONNECT_MAX_S)
                continue
            if self._closing:
                connection.close()
                break
            self.reconnections[edge] += 1
            log.warning(
                "%s: reconnected to %s after %d attempts", self.name, connection.peer, attempts
            )
            self._attach(edge, connection)
            break
        self._reconnecting.pop(edge, None)

    # ------------------------------------------------------------------ the slot loop

    async def run(self, clock: SlotClock) -> dict[str, object]:
        """Handle slots from the current one (0 at the epoch) to end_slot − 1, then wait
        for the last outcomes; returns the summary. A terminal started after the epoch (it
        joined late, or was restarted) begins at the slot under way: the tasks of the
        slots before it never arrived here, and its summary says where it began."""
        self.clock = clock
        timer = SlotTimer(clock, self.config.run.overrun_threshold_s)
        self._running = True
        self.first_slot = max(0, clock.now_slot())
        self.first_task_id = int(np.searchsorted(self._arrival_slots, self.first_slot))
        slot = self._next_busy_slot(self.first_slot)
        while slot < self.config.run.end_slot:
            await clock.sleep_until(clock.boundary(slot))
            timer.woke(slot)
            service = self._slot(slot)
            timer.handled(slot)
            await self.uplink.send(slot, service, clock, self.name)
            slot = self._next_busy_slot(slot + 1)
        # Idle to the common end: a party that wraps up early takes CPU from the others.
        await clock.sleep_until(clock.boundary(self.config.run.end_slot))
        give_up = time.time() + OUTCOME_GRACE_S
        while self._awaiting and time.time() < give_up:
            await asyncio.sleep(0.02)
        self._relay_new(final=True)
        give_up = time.time() + RELAY_DRAIN_S
        while self._unstored and time.time() < give_up:  # the edge keeps them from here
            await asyncio.sleep(0.02)
        self._running = False
        self._closing = True
        for task in (*self._readers, *self._reconnecting.values()):
            task.cancel()
        for connection in self._seen:
            connection.close()
        return self._summary(timer)

    def _next_busy_slot(self, slot: int) -> int:
        """The first slot from `slot` on with work: a task arriving, or one on the CPU or
        uplink. Idle slots change nothing at a terminal, so it sleeps through them (fewer
        wake-ups of many parties on few cores); end_slot if none is left."""
        if len(self.local) or len(self.uplink):
            return slot
        index = int(np.searchsorted(self._arrival_slots, slot))
        if index < self._arrival_slots.size:
            return int(self._arrival_slots[index])
        return self.config.run.end_slot

    def _slot(self, slot: int) -> SlotService:
        """Arrival and decision, local computing, and the uplink's service of `slot`."""
        if slot < self.sizes.size and self.sizes[slot] > 0:
            self._arrive(slot, float(self.sizes[slot]))
        local = self.local.serve(slot)
        if local.finished is not None:
            self._resolve(self._task(local.finished), slot, dropped=False, where="local")
        for task in local.expired:
            self._resolve(self._task(task), slot, dropped=True, where="local")
        return self.uplink.serve(slot)

    def _arrive(self, slot: int, size_bits: float) -> None:
        observation = self.board.observe(
            slot, size_bits, self.local.wait_slots(slot), self.uplink.wait_slots(slot)
        )
        task_id = self.first_task_id + len(self.tasks)
        action = self.decider.decide(observation, slot, task_id)
        age = None if self.weights_sink is None else self.weights_sink.weights_age(slot)
        if not 0 <= action <= self.edges:
            raise ValueError(
                f"{self.decider.label} chose action {action}; valid are 0..{self.edges}"
            )
        deadline = slot + self.deadline_slots - 1
        record = LiveTask(
            self.config.terminal, task_id, slot, deadline, size_bits, action, self.decider.label
        )
        if age is not None:
            record.weights_age_slots = age.age_slots
            record.weights_versions_behind = age.versions_behind
            record.relayed_age_slots = age.relayed_age_slots
            record.relayed_versions_behind = age.relayed_versions_behind
        self.tasks.append(record)
        if action > 0:
            payload = self._payload(task_id, payload_bytes_of(size_bits))
            if not self._offload(record, payload):
                self.redirected[action - 1] += 1
                record.action, record.redirected_from = 0, action
        if record.action == 0:
            self.local.push(task_id, deadline, size_bits)
        self.task_log.write(record)
        self._relay_new()

    def _payload(self, task_id: int, size: int) -> memoryview:
        """A task's `size` payload bytes: a slice of the terminal's random bytes, starting
        at an offset of its own (no new random bytes per task: drawing 0.4 MB took a
        quarter of a millisecond at every boundary with an offloaded arrival)."""
        start = task_id * PAYLOAD_STEP_BYTES % (len(self._payloads) - size + 1)
        return self._payloads[start : start + size]

    def _offload(self, record: LiveTask, payload: memoryview) -> bool:
        """Announce an offloaded task to its edge and queue it on the uplink; False if the
        edge is unreachable (then it is computed locally)."""
        edge = record.action - 1
        connection = self.connections[edge]
        if connection is None:
            return False
        header = TaskHeader(
            record.task_id,
            record.arrival_slot,
            record.deadline_slot,
            record.size_bits,
            len(payload),
            zlib.crc32(payload),
        )
        try:
            connection.send(header)
        except (PeerGone, ConnectionError) as error:
            log.warning("%s: task %d: %s", self.name, record.task_id, error)
            self._lost(edge, connection)
            return False
        self._awaiting[record.task_id] = record
        self._via[record.task_id] = connection
        self.uplink.push(record, payload, connection)
        return True

    # ------------------------------------------------------------------ outcomes

    def _task(self, queued: QueuedTask) -> LiveTask:
        return self.tasks[queued.task_id - self.first_task_id]

    def _logged(self, task_id: int) -> LiveTask | None:
        """This life's task of that id, if it has one."""
        index = task_id - self.first_task_id
        return self.tasks[index] if 0 <= index < len(self.tasks) else None

    def _resolve(self, record: LiveTask, slot: int, dropped: bool, where: str) -> None:
        if record.resolved:
            return
        record.resolve_slot, record.dropped, record.where = slot, dropped, where
        record.notice_slot = self.clock.now_slot() if self.clock is not None else slot
        self._awaiting.pop(record.task_id, None)
        self._via.pop(record.task_id, None)
        self.task_log.write(record)
        delay = record.delay_slots
        self.decider.resolved(record.task_id, self.drop_reward if delay is None else -delay)
        self._relay_new()

    async def _read(
        self, edge: int, connection: FramedConnection, assembly: WeightsAssembly
    ) -> None:
        """Take LOAD reports, OUTCOMEs and weights from one edge until it closes, breaks,
        sends a bad frame or falls silent; then route around it."""
        try:
            while (message := await self._receive(connection)) is not None:
                if isinstance(message, LoadReport):
                    self._load(edge, message)
                elif isinstance(message, Outcome):
                    self._outcome(edge, connection, message)
                elif isinstance(message, WeightsChunk):
                    self._weights(edge, assembly.add(message))
                elif isinstance(message, Stored | Ack):
                    self._relay_answer(edge, connection, message)
                elif isinstance(message, ErrorNotice):
                    log.error("%s: %s closes: %s", self.name, connection.peer, message.text)
                else:
                    raise ProtocolError(
                        connection.peer, f"an edge may not send {type(message).__name__}"
                    )
        except ProtocolError as error:
            connection.reject(error)
        except PeerSilent as error:
            log.warning("%s: %s; giving it up", self.name, error)
        except ConnectionError as error:
            log.warning("%s: connection to %s failed: %s", self.name, connection.peer, error)
        if not self._closing:
            self._lost(edge, connection)

    async def _receive(self, connection: FramedConnection) -> Message | None:
        """The next frame; during the run an edge that sends none for EDGE_SILENCE_S
        (it reports every slot) is given up (`PeerSilent`)."""
        return await connection.receive(EDGE_SILENCE_S if self._running else None)

    def _lost(self, edge: int, connection: FramedConnection) -> None:
        """An edge's connection ended: resolve what it held, stop offloading to it, and
        try to reach it again."""
        connection.close()
        if self.connections[edge] is not connection:
            return
        self.connections[edge] = None
        if self._closing:
            return
        self.edges_lost[edge] += 1
        self.uplink.discard(connection)
        held = [self._awaiting[i] for i, via in self._via.items() if via is connection]
        log.warning(
            "%s: lost %s with %d tasks pending; computing its tasks locally until it is back",
            self.name,
            connection.peer,
            len(held),
        )
        for record in held:
            self._resolve(record, record.deadline_slot, dropped=True, where=EDGE_LOST)
        if edge not in self._reconnecting:
            self._reconnecting[edge] = asyncio.create_task(self._reconnect(edge))

    def _relay_answer(self, edge: int, connection: FramedConnection, message: Stored | Ack):
        """The managing edge keeps an upload (STORED), or passes on an acknowledgement
        (ACK: the outbox checks it); no other edge relays for this terminal."""
        if self.outbox is None or edge != self.managing_edge:
            raise ProtocolError(
                connection.peer,
                f"{type(message).__name__.upper()} from an edge that relays no uploads of "
                f"{self.name}",
            )
        if isinstance(message, Stored):
            self._unstored.discard(message.post_id)
            self.relay_counts["stored"] += 1
        else:
            self.relay_counts["acks"] += 1
            self.outbox.ack_arrived(message.blob)

    def _weights(self, edge: int, whole: WeightsChunk | None) -> None:
        """A whole weights blob from `edge` goes to the decider (which checks it)."""
        if whole is None:
            return
        arrived = self.clock.now_slot() if self.clock is not None else 0
        self.weights_received.append((edge, whole.version, whole.published_slot, arrived))
        if self.weights_sink is None:
            self.weights_ignored += 1
            return
        self.weights_sink.weights_arrived(edge, bytes(whole.chunk), whole.published_slot)

    def _load(self, edge: int, report: LoadReport) -> None:
        """Keep a LOAD report unless its slot is far from the clock's (only the last
        `history_slots` matter; keeping others would let an edge grow our memory)."""
        if self.clock is not None:
            now = self.clock.now_slot()
            if not now - self.board.history_slots - 2 <= report.slot <= now + 2:
                self.ignored_load_reports += 1
                return
        self.board.report(edge, report)

    def _outcome(self, edge: int, connection: FramedConnection, outcome: Outcome) -> None:
        record = self._awaiting.get(outcome.task_id)
        earlier = self._logged(outcome.task_id)
        if (
            record is None
            and earlier is not None
            and earlier.resolved
            and earlier.where == EDGE_LOST
            and earlier.action == edge + 1
        ):
            self.late_outcomes += 1  # given up on with its edge's old connection
            return
        if record is None or record.action != edge + 1:
            raise ProtocolError(
                connection.peer, f"OUTCOME for task {outcome.task_id}, not pending at this edge"
            )
        record.received_slot = outcome.received_slot
        dropped = outcome.kind is OutcomeKind.DROPPED
        where = "edge" if outcome.received_slot >= 0 else "uplink"
        self._resolve(record, outcome.slot, dropped, where)

    def _summary(self, timer: SlotTimer) -> dict[str, object]:
        resolved = [t for t in self.tasks if t.resolved]
        delays = [t.delay_slots for t in resolved if not t.dropped]
        return {
            "party": self.name,
            "role": "terminal",
            "terminal": self.config.terminal,
            "first_slot": self.first_slot,
            **timer.summary(),
            "tasks": len(self.tasks),
            "finished": len(delays),
            "dropped": sum(t.dropped and t.where != EDGE_LOST for t in resolved),
            "edge_lost": sum(t.where == EDGE_LOST for t in resolved),
            "unresolved": len(self.tasks) - len(resolved),
            "redirected_tasks": sum(self.redirected),
            "redirected_by_edge": self.redirected,
            "reconnections": sum(self.reconnections),
            "reconnections_by_edge": self.reconnections,
            "edges_lost": self.edges_lost,
            "late_outcomes": self.late_outcomes,
            "ignored_load_reports": self.ignored_load_reports,
            "stale_observations": self.board.stale_observations,
            "late_sends": sum(t.sent_slot > t.planned_sent_slot >= 0 for t in self.tasks),
            "bytes_sent": sum(c.bytes_sent for c in self._seen),
            "bytes_received": sum(c.bytes_received for c in self._seen),
            "pace_uplink": self.config.pace_uplink,
            "weights_received": self.weights_received,
            "weights_ignored": self.weights_ignored,
            "upload_relay": None
            if self.outbox is None
            else {**self.relay_counts, "unstored_at_end": len(self._unstored)},
            "weights_age": weights_age_summary(
                [t.weights_age_slots for t in self.tasks],
                [t.weights_versions_behind for t in self.tasks],
            ),
            "relayed_weights_age": weights_age_summary(
                [t.relayed_age_slots for t in self.tasks],
                [t.relayed_versions_behind for t in self.tasks],
            ),
            **self.decider.finish(),
        }


async def _main(config: TerminalConfig, deciders: DeciderFactory) -> None:
    party = TerminalParty(config, deciders)
    restart = restart_number()
    if restart:
        log.warning("%s: started again (restart %d) during the run", party.name, restart)
    await party.connect(every_edge=not restart)
    announce_ready({"terminal": config.terminal})
    enter_realtime(config.run.realtime_priority)
    epoch = await await_start()
    try:
        summary = await party.run(SlotClock(epoch, party.slot_s))
    finally:
        party.task_log.close(party.tasks)  # each task's final state
    write_json(config.summary_path, {**summary, "restart": restart})
    log.info("%s: done: %s", party.name, summary)


def main(
    argv: list[str],
    deciders: DeciderFactory = make_decider,
    program: str = "fl_crb.runtime.terminal",
) -> int:
    """Run the terminal party of the config file `argv[1]`, deciding with what `deciders`
    builds; `program` is the module started (`python -m program`), for the usage line."""
    if len(argv) != 2:
        print(f"usage: python -m {program} CONFIG.json", file=sys.stderr)
        return 2
    config = load_config(argv[1], TerminalConfig)
    configure_logging(f"t{config.terminal + 1}")
    asyncio.run(_main(config, deciders))
    return 0


if __name__ == "__main__":
    exit_now(main(sys.argv))  # its outputs are written: skip torch's teardown (learned policies)
