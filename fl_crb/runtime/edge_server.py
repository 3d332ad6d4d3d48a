"""The edge server party: receives offloaded tasks over TCP and computes them on the slot clock.

`python -m fl_crb.runtime.edge_server CONFIG.json` (see `fl_crb.runtime.party` for the
start handshake). The server accepts one connection per terminal (HELLO → WELCOME), then
reads TASK headers and DATA frames: the payload's real bytes are counted and checked
against the header's CRC-32, and a task whose last byte arrives in slot s joins that
terminal's queue in slot s + 1. At every slot boundary t it runs slot t of
`EdgeProcessor` (joins, processor sharing at its configured CPU, deadline drops), sends
an OUTCOME for each resolved task and a LOAD report (Q_e(t) and the terminal's queued
bits) to every connected terminal.

An edge server may be given a `WeightsSource` (the federation's edge, `fl_crb.federation.
edge`, watches its learner's published weights with one): it looks at the source every
`WEIGHTS_POLL_S`, before and during the run, and hands each new version to the terminals
it manages, over their connections, as soon as it appears (WEIGHTS frames, paced so that
the slot loop's frames are not held up), and its newest version to each of them as soon
as it connects. The blob is opaque here: the terminal's side checks it. The version and
the slot it appeared in are recorded in the summary (`weights_published`).

An edge server may also be given an `UploadStore` (`fl_crb.runtime.upload_relay`; the
federation's relay uplink, `fl_crb.federation.relay`): then each terminal it manages may
hand it uploads (UPLOAD frames, before or during the run). It keeps each one in the
store, durably, before it answers STORED (an upload the store needs not keep, as it was
acknowledged already, is answered STORED too, with the newest acknowledgement again);
the uploads of one hand-over are answered in one write, once the last of them is kept.
It looks at the store's acknowledgements every `WEIGHTS_POLL_S` and passes each new one
on to its terminal (ACK), and the newest one to each terminal as soon as it connects. An
UPLOAD from a terminal it does not manage, or to an edge without a store, is a protocol
error. The store keeps each upload in a worker thread of its own (`_store_worker`, one, so
uploads are kept and answered in the order they came): keeping one is a write and an fsync,
which on a busy disk took tens of milliseconds, and the slot loop must not wait for it.

CPU speed is emulated by accounting, not by burning cycles: a task's remaining work is in
bits and each slot takes away S_d / Q_e(t) of them, as in the simulator.

Nothing a terminal does can stall the server or cost it without bound: sends never wait,
a frame's length is bounded by its type and a begun frame must arrive within
`FRAME_TIMEOUT_S`, a connection must say HELLO within `HELLO_TIMEOUT_S` and name this run
and a terminal of it, at most `terminals + SPARE_CONNECTIONS` connections are open at
once, and a bad frame closes only its connection (with an ERROR frame naming the problem,
and the peer named in the log). A terminal that disconnects, even mid-transfer, keeps its
tasks here: the queued ones are computed and the ones in transit dropped at their
deadline, as the model would, and every resolved task is appended to the edge's own
record (`EDGE.outcomes.jsonl`, `fl_crb.runtime.tasklog.EdgeOutcomeWriter`), which stays
whatever became of the terminal. A terminal may connect again (after its connection
broke, or started again after it died: its task ids go on rising); an edge started late
(restarted on its port by its coordinator, `fl_crb.runtime.party_supervisor`, which keeps
the port in the edge's config) begins at the current slot and appends to its record.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from fl_crb.runtime.clock import SlotClock, SlotTimer
from fl_crb.runtime.config import EdgeConfig, load_config
from fl_crb.runtime.connection import FRAME_TIMEOUT_S, FramedConnection, PeerGone
from fl_crb.runtime.edge_queues import EdgeProcessor
from fl_crb.runtime.party import (
    announce_ready,
    await_start,
    configure_logging,
    enter_realtime,
    restart_number,
    write_json,
)
from fl_crb.runtime.protocol import (
    Ack,
    Hello,
    LoadReport,
    Outcome,
    OutcomeKind,
    ProtocolError,
    Stored,
    TaskData,
    TaskHeader,
    Upload,
    WeightsChunk,
    Welcome,
    weights_chunks,
)
from fl_crb.runtime.tasklog import EdgeOutcome, EdgeOutcomeWriter
from fl_crb.runtime.upload_relay import UploadStore

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
"""A connection that does not say HELLO within this time is closed."""
MAX_BACKLOG_BYTES = 1 << 20
"""Unsent bytes towards a terminal beyond which it counts as not reading."""
DRAIN_GRACE_S = 3.0
"""After the last slot, how long to wait for terminals to hang up before closing."""
SPARE_CONNECTIONS = 8
"""Connections allowed at once beyond one per terminal (handshakes, reconnections)."""
WEIGHTS_POLL_S = 0.05
"""How often the edge looks at its weights source for a new version."""


@dataclass(frozen=True, slots=True)
class PublishedWeights:
    """One version of the weights an edge hands its terminals."""

    version: int
    """Its version; a source's versions only grow."""
    blob: bytes
    """The weights as the terminals take them (for the federation: its signed envelope)."""


class WeightsSource(Protocol):
    """Where an edge server finds the weights it hands its terminals (supplied by the layer
    that trains them, `fl_crb.federation.edge`)."""

    def newest(self) -> PublishedWeights | None:
        """The newest published weights, None before any; cheap when nothing changed.
        May raise OSError or ValueError (the edge logs it and looks again later)."""
        ...


WeightsSourceFactory = Callable[[EdgeConfig], WeightsSource | None]
"""Builds an edge server's weights source from its config (None: it hands out none)."""
UploadStoreFactory = Callable[[EdgeConfig], UploadStore | None]
"""Builds an edge server's upload store from its config (None: it relays no uploads)."""


def outcomes_path(summary_path: str | Path) -> Path:
    """Where an edge with this summary path keeps its record of resolved tasks."""
    return Path(summary_path).with_suffix(".outcomes.jsonl")


@dataclass(slots=True)
class _Transfer:
    """Bytes of one announced task received so far."""

    header: TaskHeader
    received_bytes: int = 0
    crc32: int = 0


class EdgeServer:
    """One edge server: listening socket, per-terminal connections, the slot loop."""

    def __init__(
        self,
        config: EdgeConfig,
        weights: WeightsSource | None = None,
        uploads: UploadStore | None = None,
    ) -> None:
        self.config = config
        self.params, self.terminals = config.run.model()
        if not 0 <= config.edge < self.params.edges:
            raise ValueError(
                f"edge index {config.edge} does not exist; the topology has "
                f"{self.params.edges} edges (0..{self.params.edges - 1})"
            )
        if config.federation is not None and weights is None:
            raise ValueError(
                f"edge {config.edge} has federation settings (its learner's mailbox "
                f"{config.federation.mailbox}): start it with `python -m fl_crb.federation.edge "
                "CONFIG.json` (as `fl-crb federate` does), which hands out the learner's weights"
            )
        arrays = self.params.per_terminal(self.terminals)
        self.deadline_slots = arrays.deadline_slots
        self.processor = EdgeProcessor(arrays.edge_bits_per_slot[:, config.edge])
        self.managed = {int(d) for d in (arrays.managing_edge == config.edge).nonzero()[0]}
        """The terminals this edge manages: those it hands its weights to."""
        self.weights_source = weights
        self.weights: PublishedWeights | None = None
        """The newest version seen at the source."""
        self.weights_published: list[tuple[int, int]] = []
        """(version, slot it was first seen in; 0 before the run's first slot, or before
        a restarted edge's) of every version seen."""
        self._pushes: dict[int, asyncio.Task] = {}
        """Per managed terminal, the weights being sent to it."""
        self._watcher: asyncio.Task | None = None
        self.upload_store = uploads
        """Where the uploads of its terminals go (relay uplink); None: it takes none."""
        self._store_worker = (
            None if uploads is None else ThreadPoolExecutor(1, thread_name_prefix="upload-store")
        )
        """The one thread that keeps uploads in the store, in the order they came."""
        self._keeping: asyncio.Future | None = None
        """The upload handed to the store worker last (the ones before it are done)."""
        self._unanswered: dict[int, int] = {}
        """Per managed terminal, its uploads with the store worker still."""
        self._stored: dict[int, list[Stored]] = {}
        """Per managed terminal, STORED answers held until its last upload with the store
        worker is kept: a hand-over of several uploads is answered in one write."""
        self._acks_sent: dict[int, bytes] = {}
        """Per connected managed terminal, the acknowledgement last passed on to it."""
        self.clock: SlotClock | None = None
        self.connections: dict[int, FramedConnection] = {}
        self._transfers: dict[int, dict[int, _Transfer]] = {}
        self._last_task_id: dict[int, int] = {}
        self._ever_connected: set[int] = set()
        self._server: asyncio.Server | None = None
        self._running = False
        self._open = 0
        """Connections open now, identified or not."""
        self.max_connections = self.terminals + SPARE_CONNECTIONS
        self.records = EdgeOutcomeWriter(outcomes_path(config.summary_path))
        self.stats = {
            "tasks_announced": 0,
            "tasks_received": 0,
            "finished": 0,
            "dropped": 0,
            "late_data_bytes": 0,
            "protocol_errors": 0,
            "disconnects_during_run": 0,
            "reconnections": 0,
            "outcomes_undelivered": 0,
            "connections_refused": 0,
            "first_slot": 0,
            "weights_pushed": 0,
            "weights_push_failures": 0,
            "weights_source_errors": 0,
            "uploads_kept": 0,
            "uploads_not_kept": 0,
            "acks_passed_on": 0,
            "upload_store_errors": 0,
        }
        self._seen: list[FramedConnection] = []
        """Every connection ever accepted, for the byte counts."""

    @property
    def name(self) -> str:
        return f"edge{self.config.edge + 1}"

    async def listen(self) -> int:
        """Start accepting terminals; returns the port listened on."""
        address = self.config.listen
        self._server = await asyncio.start_server(self._serve, address.host, address.port)
        if self.weights_source is not None:
            self._look_for_weights()  # a version published already goes to the first HELLOs
        if self.weights_source is not None or self.upload_store is not None:
            self._watcher = asyncio.create_task(self._watch())
        return self._server.sockets[0].getsockname()[1]

    async def run(self, clock: SlotClock) -> dict[str, object]:
        """Handle slots 0 … end_slot − 1 on `clock`; returns the party's summary."""
        self.clock = clock
        timer = SlotTimer(clock, self.config.run.overrun_threshold_s)
        self._running = True
        load_total = 0
        first = max(0, clock.now_slot())  # > 0 for an edge restarted during the run
        self.stats["first_slot"] = first
        if first:
            log.warning("%s: started late, at slot %d", self.name, first)
        for slot in range(first, self.config.run.end_slot):
            await clock.sleep_until(clock.boundary(slot))
            timer.woke(slot)
            load_total += self._slot(slot)
            timer.handled(slot)
        self._running = False
        deadline = time.time() + DRAIN_GRACE_S
        while self.connections and time.time() < deadline:
            await asyncio.sleep(0.05)
        await self.close()
        return {
            "party": self.name,
            "role": "edge",
            "edge": self.config.edge,
            **timer.summary(),
            "mean_active_queues": load_total / max(1, self.config.run.end_slot - first),
            **self.stats,
            "bytes_sent": sum(c.bytes_sent for c in self._seen),
            "bytes_received": sum(c.bytes_received for c in self._seen),
            "weights_published": self.weights_published,
            "upload_store": None if self.upload_store is None else self.upload_store.summary(),
        }

    async def close(self) -> None:
        for task in (self._watcher, *self._pushes.values()):
            if task is not None:
                task.cancel()
        if self._store_worker is not None:
            if self._keeping is not None:  # the last upload taken is kept before the end
                await asyncio.wait([self._keeping])
            self._store_worker.shutdown()
        for connection in list(self.connections.values()):
            connection.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.records.close()

    def _slot(self, slot: int) -> int:
        """Run one slot and report it; returns Q_e(slot)."""
        load, resolved = self.processor.step(slot)
        for task in resolved:
            self.stats["dropped" if task.dropped else "finished"] += 1
            self._transfers.get(task.terminal, {}).pop(task.task_id, None)
            self.records.write(
                EdgeOutcome(
                    self.config.edge,
                    task.terminal,
                    task.task_id,
                    task.slot,
                    task.dropped,
                    task.received_slot,
                )
            )
            kind = OutcomeKind.DROPPED if task.dropped else OutcomeKind.FINISHED
            outcome = Outcome(task.task_id, task.slot, kind, task.received_slot)
            if not self._send(task.terminal, outcome):
                self.stats["outcomes_undelivered"] += 1
        for terminal in list(self.connections):
            bits = self.processor.queued_bits(terminal)
            self._send(terminal, LoadReport(slot, load, bits))
        return load

    def _send(self, terminal: int, *messages: Outcome | LoadReport | Stored | Ack) -> bool:
        """Send to a terminal, in one write, if it is connected; whether the messages went
        out."""
        connection = self.connections.get(terminal)
        if connection is None:
            return False
        try:
            if len(messages) == 1:
                connection.send(messages[0])
            else:
                connection.send_many(list(messages))
        except (PeerGone, ConnectionError) as error:
            log.warning("%s: cannot send to %s: %s", self.name, connection.peer, error)
            self._forget(terminal, connection)
            return False
        return True

    # ------------------------------------------------------------------ weights

    async def _watch(self) -> None:
        """Look at the weights source and the upload store's acknowledgements until the
        server closes; push each new version, pass each new acknowledgement on."""
        while True:
            await asyncio.sleep(WEIGHTS_POLL_S)
            if self.weights_source is not None:
                self._look_for_weights()
            if self.upload_store is not None:
                self._pass_acks_on()

    # ------------------------------------------------------------------ relayed uploads

    def _pass_acks_on(self, only: int | None = None) -> None:
        """Send each connected managed terminal (or terminal `only`) the store's newest
        acknowledgement for it, unless it was the last one sent on its connection."""
        assert self.upload_store is not None
        try:
            acks = self.upload_store.acks()
        except (OSError, ValueError) as error:
            self.stats["upload_store_errors"] += 1
            log.warning("%s: cannot read the acknowledgements: %s", self.name, error)
            return
        terminals = self.managed & set(self.connections) if only is None else {only}
        for terminal in terminals & set(acks):
            blob = acks[terminal]
            if self._acks_sent.get(terminal) != blob and self._send(terminal, Ack(blob)):
                self._acks_sent[terminal] = blob
                self.stats["acks_passed_on"] += 1

    def _upload(self, terminal: int, connection: FramedConnection, upload: Upload) -> None:
        """Hand a managed terminal's upload to the store worker; `_kept` answers STORED
        once it is kept."""
        if self.upload_store is None or terminal not in self.managed:
            why = "relays no uploads" if self.upload_store is None else "does not manage it"
            raise ProtocolError(connection.peer, f"UPLOAD {upload.post_id}: {self.name} {why}")
        keeping = asyncio.get_running_loop().run_in_executor(
            self._store_worker, self.upload_store.keep, terminal, upload.post_id, upload.blob
        )
        keeping.add_done_callback(functools.partial(self._kept, terminal, connection, upload))
        self._keeping = keeping
        self._unanswered[terminal] = self._unanswered.get(terminal, 0) + 1

    def _kept(
        self, terminal: int, connection: FramedConnection, upload: Upload, keeping: asyncio.Future
    ) -> None:
        """The store worker is done with an upload: answer STORED if it is kept (or needs
        no keeping); an upload it could not keep gets no answer, so the terminal sends it
        again."""
        self._unanswered[terminal] -= 1
        if keeping.cancelled():
            return
        error = keeping.exception()
        if isinstance(error, OSError):
            self.stats["upload_store_errors"] += 1
            log.error("%s: cannot keep upload %d: %s", self.name, upload.post_id, error)
        elif error is not None:  # the store is broken (e.g. unreadable acknowledgements)
            self.stats["upload_store_errors"] += 1
            log.error("%s: keeping upload %d failed: %s", self.name, upload.post_id, error)
            connection.close(f"{self.name} cannot keep upload {upload.post_id}: {error}")
            return
        else:
            kept = keeping.result()
            self.stats["uploads_kept" if kept else "uploads_not_kept"] += 1
            if not kept:  # acknowledged already: its terminal may lack the acknowledgement
                self._acks_sent.pop(terminal, None)
                self._pass_acks_on(only=terminal)
            self._stored.setdefault(terminal, []).append(Stored(upload.post_id))
        if self._unanswered[terminal] == 0:
            self._send_stored(terminal)

    def _send_stored(self, terminal: int) -> None:
        """Answer STORED, in one write, for every upload of `terminal` kept since the last
        answer (an upload the store could not keep gets none: the terminal sends it
        again)."""
        answers = self._stored.pop(terminal, [])
        if answers:
            self._send(terminal, *answers)

    def _look_for_weights(self) -> None:
        """Take a newer version from the source, record when it appeared, and start
        handing it to every managed terminal that is connected."""
        assert self.weights_source is not None
        try:
            newest = self.weights_source.newest()
        except (OSError, ValueError) as error:
            self.stats["weights_source_errors"] += 1
            log.warning("%s: cannot read the weights source: %s", self.name, error)
            return
        if newest is None or (self.weights is not None and newest.version <= self.weights.version):
            return
        slot = max(0, self.clock.now_slot()) if self.clock is not None else 0
        self.weights = newest
        self.weights_published.append((newest.version, slot))
        log.info("%s: weights version %d published (slot %d)", self.name, newest.version, slot)
        for terminal in self.managed & set(self.connections):
            self._push(terminal)

    def _push(self, terminal: int) -> None:
        """Start sending the newest weights to a connected managed terminal, dropping a
        version still being sent to it (the terminal starts over at offset 0)."""
        if self.weights is None:
            return
        if (earlier := self._pushes.pop(terminal, None)) is not None:
            earlier.cancel()
        connection = self.connections[terminal]
        version, slot = self.weights_published[-1]
        chunks = weights_chunks(self.weights.blob, version, slot)
        self._pushes[terminal] = asyncio.create_task(self._send_weights(connection, chunks))

    async def _send_weights(self, connection: FramedConnection, chunks: list[WeightsChunk]) -> None:
        try:
            for chunk in chunks:
                await connection.send_paced(chunk)
        except (PeerGone, ConnectionError) as error:
            self.stats["weights_push_failures"] += 1
            log.warning("%s: weights to %s not delivered: %s", self.name, connection.peer, error)
            return
        self.stats["weights_pushed"] += 1

    # ------------------------------------------------------------------ connections

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"unidentified peer at {host}:{port}"
        connection = FramedConnection(reader, writer, peer, MAX_BACKLOG_BYTES, FRAME_TIMEOUT_S)
        if self._open >= self.max_connections:
            self.stats["connections_refused"] += 1
            log.warning(
                "%s: refused %s: %d connections are open, the most it allows",
                self.name,
                connection.peer,
                self._open,
            )
            connection.close(f"{self.name} allows {self.max_connections} connections at once")
            return
        self._open += 1
        self._seen.append(connection)
        terminal = None
        try:
            terminal = await asyncio.wait_for(self._handshake(connection), HELLO_TIMEOUT_S)
            while (message := await connection.receive()) is not None:
                self._handle(terminal, connection, message)
            log.info("%s: %s hung up", self.name, connection.peer)
        except ProtocolError as error:
            self.stats["protocol_errors"] += 1
            connection.reject(error)
        except TimeoutError:
            log.error(
                "%s: %s sent no HELLO within %ss", self.name, connection.peer, HELLO_TIMEOUT_S
            )
        except ConnectionError as error:
            level = logging.WARNING if self._running else logging.INFO
            log.log(level, "%s: connection to %s ended: %s", self.name, connection.peer, error)
        finally:
            self._open -= 1
            if terminal is not None and self.connections.get(terminal) is connection:
                self._forget(terminal, connection)
            connection.close()

    async def _handshake(self, connection: FramedConnection) -> int:
        hello = await connection.receive()
        if not isinstance(hello, Hello):
            got = "end of stream" if hello is None else type(hello).__name__
            raise ProtocolError(connection.peer, f"expected HELLO first, got {got}")
        if hello.run_id != self.config.run.run_id:
            raise ProtocolError(
                connection.peer,
                f"HELLO for run {hello.run_id:#x}; this edge serves run "
                f"{self.config.run.run_id:#x}",
            )
        if not 0 <= hello.terminal < self.terminals:
            raise ProtocolError(
                connection.peer,
                f"HELLO from terminal {hello.terminal}; the run has terminals "
                f"0..{self.terminals - 1}",
            )
        if hello.terminal in self.connections:
            raise ProtocolError(connection.peer, f"terminal {hello.terminal} is already connected")
        address = connection.peer.split(" at ")[-1]
        connection.peer = f"terminal t{hello.terminal + 1} (index {hello.terminal}, {address})"
        if hello.terminal in self._ever_connected:
            self.stats["reconnections"] += 1
        self._ever_connected.add(hello.terminal)
        self.connections[hello.terminal] = connection
        connection.send(Welcome(self.config.run.run_id, self.config.edge))
        log.info("%s: %s connected", self.name, connection.peer)
        if hello.terminal in self.managed:
            self._push(hello.terminal)
            if self.upload_store is not None:
                self._acks_sent.pop(hello.terminal, None)
                self._pass_acks_on(only=hello.terminal)
        return hello.terminal

    def _handle(self, terminal: int, connection: FramedConnection, message: object) -> None:
        if isinstance(message, Upload):  # uploads wait for no slot (a terminal back early)
            self._upload(terminal, connection, message)
            return
        if self.clock is None or self.clock.now_slot() < 0:
            raise ProtocolError(
                connection.peer, f"{type(message).__name__} before the run's first slot"
            )
        if isinstance(message, TaskData):
            self._data(terminal, connection, message)
        elif isinstance(message, TaskHeader):
            self._announce(terminal, connection, message)
        else:
            raise ProtocolError(
                connection.peer,
                f"a terminal may send TASK, DATA and UPLOAD, not {type(message).__name__}",
            )

    def _announce(self, terminal: int, connection: FramedConnection, header: TaskHeader) -> None:
        expected = header.arrival_slot + int(self.deadline_slots[terminal]) - 1
        if header.deadline_slot != expected:
            raise ProtocolError(
                connection.peer,
                f"TASK {header.task_id} deadline slot {header.deadline_slot}; with τ = "
                f"{self.deadline_slots[terminal]} slots it must be {expected} (same topology?)",
            )
        if header.task_id <= self._last_task_id.get(terminal, -1):
            raise ProtocolError(
                connection.peer,
                f"TASK id {header.task_id} is not above the last one "
                f"({self._last_task_id[terminal]}); task ids must increase",
            )
        self._last_task_id[terminal] = header.task_id
        self._transfers.setdefault(terminal, {})[header.task_id] = _Transfer(header)
        self.processor.announce(terminal, header.task_id, header.deadline_slot, header.size_bits)
        self.stats["tasks_announced"] += 1

    def _data(self, terminal: int, connection: FramedConnection, data: TaskData) -> None:
        transfer = self._transfers.get(terminal, {}).get(data.task_id)
        if transfer is None:
            if data.task_id <= self._last_task_id.get(terminal, -1):
                self.stats["late_data_bytes"] += len(data.chunk)  # task already dropped
                return
            raise ProtocolError(connection.peer, f"DATA for task {data.task_id}, never announced")
        transfer.received_bytes += len(data.chunk)
        transfer.crc32 = zlib.crc32(data.chunk, transfer.crc32)
        header = transfer.header
        if transfer.received_bytes > header.payload_bytes:
            raise ProtocolError(
                connection.peer,
                f"task {header.task_id} sent {transfer.received_bytes} bytes; its TASK header "
                f"announced {header.payload_bytes}",
            )
        if transfer.received_bytes < header.payload_bytes:
            return
        if transfer.crc32 != header.crc32:
            raise ProtocolError(
                connection.peer,
                f"task {header.task_id} payload CRC-32 {transfer.crc32:#010x}, header "
                f"announced {header.crc32:#010x}",
            )
        del self._transfers[terminal][header.task_id]
        assert self.clock is not None  # checked by _handle
        self.processor.receive(terminal, header.task_id, self.clock.now_slot())
        self.stats["tasks_received"] += 1

    def _forget(self, terminal: int, connection: FramedConnection) -> None:
        """A terminal went away: stop talking to it. Its tasks stay: those received are
        computed, those in transit are dropped at their deadline (their bytes cannot
        arrive on a new connection), and every outcome goes to the edge's record."""
        if self.connections.get(terminal) is not connection:
            return
        del self.connections[terminal]
        self._transfers.pop(terminal, None)
        self._acks_sent.pop(terminal, None)
        if (push := self._pushes.pop(terminal, None)) is not None:
            push.cancel()
        if self._running:
            self.stats["disconnects_during_run"] += 1
            log.warning(
                "%s: %s went away during the run; its %d queued tasks stay",
                self.name,
                connection.peer,
                self.processor.queued_tasks(terminal),
            )
        connection.close()


async def _main(
    config: EdgeConfig, sources: WeightsSourceFactory | None, stores: UploadStoreFactory | None
) -> None:
    server = EdgeServer(
        config,
        None if sources is None else sources(config),
        None if stores is None else stores(config),
    )
    restart = restart_number()
    if restart:
        log.warning("%s: started again (restart %d) on its port", server.name, restart)
    port = await server.listen()
    announce_ready({"port": port})
    enter_realtime(config.run.realtime_priority)
    epoch = await await_start()
    try:
        summary = await server.run(SlotClock(epoch, server.params.slot_s))
    finally:
        server.records.close()
    write_json(config.summary_path, {**summary, "restart": restart})
    log.info("%s: done: %s", server.name, summary)


def main(
    argv: list[str],
    sources: WeightsSourceFactory | None = None,
    program: str = "fl_crb.runtime.edge_server",
    stores: UploadStoreFactory | None = None,
) -> int:
    """Run the edge server party of the config file `argv[1]`, handing its terminals the
    weights of the source `sources` builds (None: no weights) and keeping their uploads in
    the store `stores` builds (None: none); `program` is the module started (`python -m
    program`), for the usage line."""
    if len(argv) != 2:
        print(f"usage: python -m {program} CONFIG.json", file=sys.stderr)
        return 2
    config = load_config(argv[1], EdgeConfig)
    configure_logging(f"edge{config.edge + 1}")
    asyncio.run(_main(config, sources, stores))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))  # no torch here: the normal teardown is cheap
