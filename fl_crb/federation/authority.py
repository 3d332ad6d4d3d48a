"""The trusted authority's rounds, run by the ServerApp (run config mode "authority").

Every `round_period_s` the authority makes ONE exchange with every node that is
connected and has no earlier message in flight (`exchange.RoundExchange`), waiting for
the replies until `round_deadline_s`:

- to each terminal, `query.collect` with the cumulative acknowledgement of the uploads it
  has processed, MACed for that terminal (`message_auth.AckAuthenticator`), and, if the
  terminal's managing edge published weights newer than those the terminal holds, that
  edge's signed weights envelope, relayed byte for byte, unless the terminal's own edge
  link brought that version (it reports so in its reply): then only the version number,
  as a notice (`relay_decision`);
- to each edge, `query.train` with up to `batches_per_round` batches of
  `batch_trajectories` trajectories drawn from the pool by familiarity (once the pool
  holds `min_pool_trajectories`), sealed for that edge (`message_auth.BatchSealer`); the
  reply carries the edge's newest signed weights, checked against the edge's key before
  they are relayed (`message_auth.WeightsVerifier`).

Its keys come from its bundle (`host_bundle`, `AuthorityConfig.bundle`). Who each node is
(`query.hello`, and with SuperNode authentication the public key it registered with) is
`authority_nodes.NodeRegistry`'s.

Partial participation: start-up waits until `quorum_nodes` nodes have answered a hello (a
restarted authority waits for none); each round greets the nodes that connected since, and
serves them from the next round.
A node that does not answer by the deadline misses the round (and every round until it
answers: it is sent nothing new while its message is in flight); the rounds go on with
the others. Its late reply is taken in the round it arrives in, as the reply to the
round its request was sent in (its acknowledgement, its uploads: opened, checked and
pooled as any others; the replay guard refuses any it had sent already). A terminal's
uploads leave its outbox only once an acknowledgement covers them, so whatever a silent
terminal holds waits there for its return. events.jsonl and authority.log name each node
when it begins to miss rounds (and why), answers late, and comes back; rounds.jsonl
lists each round's served, missed and late nodes; summary.json counts each node's
missed rounds and reconnections (`participation.Participation`) and names the nodes lost
at the end (silent in the last round).

Each terminal's uploads are opened, checked and counted by `authority_uploads` (bad
ones are refused with a logged, counted reason; the run goes on). Accepted trajectories
enter the `DurablePool` WITHOUT the terminal's identity, together with the replay
guard's state, and only then are the uploads acknowledged (the acknowledgement travels
with the next round). An authority killed at any point and started again (a new `flwr
run`) recovers the pool, the replay guard and its acknowledgements from `state_dir`, so
no accepted trajectory is lost or taken twice.

`state_dir` holds: pool/ (the durable pool), state.json (next round, acknowledgements,
the next batch and ack sequence number of every edge and terminal, saved before the
messages that use them leave, and each node's participation), ready.json (this
process's pid and the node map, once it is serving), rounds.jsonl (one line per round,
with where the authority's time and CPU went), messages.jsonl (per round, each reply's
push, pull and ClientApp times: `benchmarks/round_breakdown.py` reads them),
events.jsonl and authority.log (rejections, errors, missing and returning nodes:
`authority_records`), accounting.jsonl (`metering.accounting`: one line per answered
message; a message never answered has none), summary.json (at the end, with the
refusals by kind and code). The authority stops after the round in which `stop_path`
exists and the outbox of every terminal it still hears from is empty.
`AuthorityConfig.test_transit_faults` (tests only) makes it alter, forge or replay
single messages on purpose (`transit_faults`).

Relay uplink (run config `uplink` "relay", `fl_crb.federation.relay`): the terminals have
no SuperNodes; the run's nodes are its edges alone (the quorum counts edges). Each edge's
`query.train` also carries, for every terminal it manages whose acknowledgement advanced
past the one the edge last applied, that acknowledgement, MACed for the terminal as a
collect's is (`relay-acks`), and a limit of relayed uploads (`max_uploads_per_collect`
per managed terminal); the reply's relayed uploads are opened as the terminals' own
(`authority_uploads.UploadIntake.take_relayed`), pooled, and acknowledged with the next
round. No weights travel through the cloud to terminals (the edge link brings them). The
last rounds go on until every edge's relay store is empty and every edge applied the
newest acknowledgements; summary.json gains a `relay` section (uploads relayed, sequence
gaps by terminal).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fl_crb.federation.authority_config import AuthorityConfig
from fl_crb.federation.authority_nodes import NodeRegistry
from fl_crb.federation.authority_records import AuthorityRecords, read_json
from fl_crb.federation.authority_uploads import CollectedUploads, UploadIntake
from fl_crb.federation.client_app import TIMING_KEYS
from fl_crb.federation.exchange import ExchangeError, Reply, RoundExchange, RoundResult, Sent
from fl_crb.federation.host_bundle import HostBundle
from fl_crb.federation.mailbox import frame, frame_relayed
from fl_crb.federation.message_auth import (
    WeightsRejected,
    ack_bytes,
    batch_overhead_bytes,
    weights_overhead_bytes,
)
from fl_crb.federation.metering.accounting import MessageBytes, append_records
from fl_crb.federation.metering.wire_meter import difference, read_snapshot
from fl_crb.federation.participation import Participation
from fl_crb.federation.pool_store import DurablePool
from fl_crb.federation.serialization import (
    DecodeError,
    TrajectoryShape,
    decode_weights,
    encode_trajectory,
)
from fl_crb.federation.transit_faults import TransitFaults
from fl_crb.learn.pool import FIELDS, Trajectory
from fl_crb.runtime.config import DIRECT, RELAY, check_uplink, load_config

FINAL_ROUNDS_MAX = 20
"""Rounds after the stop request spent draining terminals' outboxes, at most."""
START_POLL_S = 0.5
"""At start-up, how long each look for new nodes waits for hellos before counting the
quorum again (hellos not yet answered stay in flight)."""


@dataclass
class _Request:
    """What the authority keeps of a message in flight, to read its reply."""

    name: str
    """The node's name ("" for a hello: the reply names the node)."""
    action: str
    """"hello", "collect" or "train"."""
    record: MessageBytes | None = None
    """Its byte record (collect, train), completed by the reply."""
    offered_ack: int = 0
    """The acknowledgement a collect carried."""
    genuine_ack: bool = False
    """Whether that acknowledgement was the genuine one (not a test transit fault)."""
    offered_relay_acks: dict[str, int] = field(default_factory=dict)
    """Relay uplink: the acknowledgements a train carried, by terminal."""
    offered_refusals: list[tuple[str, int]] = field(default_factory=list)
    """Relay uplink: the not-managed uploads a train told the edge to discard."""


@dataclass
class _RoundTally:
    """What one round's replies brought, for the pool, the accounting and rounds.jsonl."""

    heard: set[str] = field(default_factory=set)
    """Nodes heard from in the round: greeted, or replying in time or late."""
    late: dict[str, int] = field(default_factory=dict)
    """Node → the earlier round whose message it answered in this one."""
    errors: dict[str, str] = field(default_factory=dict)
    """Node → why its message failed (a Flower error, or refused by the SuperLink)."""
    answered: list[MessageBytes] = field(default_factory=list)
    """Byte records of the collects and trains that got a reply (an error one too)."""
    accepted: list[Trajectory] = field(default_factory=list)
    """Trajectories opened, decoded and accepted from the terminals' uploads."""
    rejected: int = 0
    """Uploads refused."""
    backlog: int = 0
    """Uploads the answering terminals still hold in their outboxes."""


class Authority:
    """State and rounds of the trusted authority."""

    def __init__(self, config: AuthorityConfig, grid: Grid, uplink: str = DIRECT):
        check_uplink(uplink, "run config uplink")
        self.config, self.grid = config, grid
        self.relay = uplink == RELAY
        """Whether the terminals' uploads come relayed by their edges (no terminal nodes)."""
        self.state_dir = Path(config.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        method = config.method
        self.shape = TrajectoryShape(
            method.trajectory_length, config.history_slots, len(config.edges)
        )
        self.pool = DurablePool(
            self.state_dir / "pool",
            method.pool_capacity,
            len(config.edges),
            config.history_slots,
            method.trajectory_length,
            method.pool_alpha,
        )
        self.keys = HostBundle.load(config.bundle, role="authority").authority()
        run_id = bytes.fromhex(config.upload_run_id_hex)
        self.opener = self.keys.upload_opener(run_id, self.pool.sequences)
        saved = read_json(self.state_dir / "state.json") or {
            "round": 0,
            "acks": {},
            "restarts": -1,
        }
        self.records = AuthorityRecords(
            self.state_dir, lambda: self.round_number, saved.get("refusals", {})
        )
        """authority.log, events.jsonl, the refusals and the folder's other JSON files."""
        self.intake = UploadIntake(self.opener, self.shape, self.records)
        self.batch_sealer = self.keys.batch_sealer(run_id, saved.get("batch_next"))
        self.ack_authenticator = self.keys.ack_authenticator(run_id, saved.get("ack_next"))
        self.weights_verifiers = {e: self.keys.weights_verifier(e, run_id) for e in config.edges}
        self.faults = TransitFaults(
            config.test_transit_faults, run_id, config.terminals[0].name, config.edges[0]
        )
        self.round_number = int(saved["round"])
        self.acks = {t.name: int(saved["acks"].get(t.name, 0)) for t in config.terminals}
        self.sent_acks: dict[str, int] = {}
        """The acknowledgement each terminal last applied (its collect was answered)."""
        self.restarts = int(saved.get("restarts", -1)) + 1
        self.managing = {t.name: t.edge for t in config.terminals}
        self.held = dict.fromkeys(self.managing, -1)
        """Weights version each terminal reported holding from the relay (−1: unknown or
        none)."""
        self.edge_link_held = dict.fromkeys(self.managing, -1)
        """Weights version each terminal reported accepting over its edge link (−1: none):
        such versions are not relayed again (`relay_decision`)."""
        self.edge_weights: dict[str, tuple[int, bytes, bytes]] = {}
        """Edge → its newest checked weights: (version, signed envelope, payload)."""
        self.edge_versions_at: dict[int, dict[str, int]] = {}
        """Round → each edge's newest version when it began (the last few rounds)."""
        self.delivered: dict[str, list[int]] = {name: [] for name in self.managing}
        self.managed_by = {
            edge: {t for t, e in self.managing.items() if e == edge} for edge in config.edges
        }
        """Relay uplink: each edge's terminals, the only ones it may relay for."""
        self.relay_applied: dict[str, int] = {}
        self.relay_refused: dict[str, list[tuple[str, int]]] = {}
        """Relay uplink: per edge, uploads refused as not managed, for it to discard."""
        """Relay uplink: the acknowledgement each terminal's edge last applied."""
        self.relay_counts: dict[str, dict[str, int]] = saved.get(
            "relay", {"relayed": {}, "gaps": {}}
        )
        """Relay uplink: uploads relayed by each edge, sequence gaps by terminal."""
        self.rng = np.random.default_rng([config.seed, self.restarts, self.round_number])
        wanted = {
            **({} if self.relay else dict.fromkeys(self.managing, "terminal")),
            **dict.fromkeys(config.edges, "edge"),
        }
        self.participation = Participation(wanted, saved.get("participation"))
        self.registry = NodeRegistry(
            wanted, config.node_auth, grid, self.keys, self.participation, self.records
        )
        """The run's nodes (terminals, then edges), the node ids they answered from."""
        self.exchange: RoundExchange[_Request] = RoundExchange(grid, config.poll_interval_s)
        self.wire_mark: dict = {}
        """The wire meter's counters of each node when its last answered message was billed."""

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        """Wait until the quorum of nodes has answered `query.hello`; name each by its
        registered key (or, with `--insecure`, by its hello). The others join later.

        A restarted authority waits for nobody: the run's nodes were there once, some may
        be gone for good (a dead SuperNode would hold the restart back forever), and its
        rounds greet every node that is connected, serving it from the next round."""
        quorum = self.config.quorum() if self.restarts == 0 else 0
        node_wait_s = self.config.node_wait_s
        nodes = self.registry.nodes
        give_up = time.monotonic() + node_wait_s
        while len(nodes) < quorum:
            if time.monotonic() >= give_up:
                raise ExchangeError(
                    f"only {len(nodes)} of the {quorum} nodes the quorum needs answered "
                    f"within {node_wait_s:g} s (answered: {sorted(nodes) or 'none'}; missing: "
                    f"{self.registry.waiting()}); check the SuperNode logs, or lower the quorum"
                )
            online = set(self.grid.get_node_ids())
            hellos = self._hellos(online)
            poll_s = min(START_POLL_S, self.config.round_deadline_s)
            for reply in self.exchange.round(0, hellos, poll_s).replies:
                self.registry.greet(reply, 0)
            if not hellos:  # that round was one pull: wait before looking again
                time.sleep(0.1)
        self._save_state()
        ready = {
            "pid": os.getpid(),
            "nodes": nodes,
            "restarts": self.restarts,
            "recovery": {
                "accepted_total": self.pool.accepted_total,
                "uncommitted_records": self.pool.recovery.uncommitted_records,
            },
        }
        self.records.write_json("ready.json", ready)
        waiting = self.registry.waiting()
        self.records.log(
            f"serving {len(self.managing)} terminals and {len(self.config.edges)} edges "
            f"({len(nodes)} answered, quorum {quorum}"
            + (f"; waiting for {', '.join(waiting)}" if waiting else "")
            + f"); pool holds {len(self.pool.pool)} ({self.pool.accepted_total} accepted so "
            f"far), restart {self.restarts}"
        )

    def _hellos(self, online: set[int]) -> list[tuple[Message, _Request]]:
        """`query.hello` to every connected node not yet known, refused or busy."""
        hellos = self.registry.hellos(online, set(self.exchange.busy()))
        return [(hello, _Request("", "hello")) for hello in hellos]

    # -- one round -------------------------------------------------------------------------

    def round(self) -> int:
        """One exchange with every node that is connected and has no message in flight,
        until the round's deadline; returns the outbox backlog the terminals reported."""
        self.round_number += 1
        n, config, nodes = self.round_number, self.config, self.registry.nodes
        work = _WorkTimer()
        started = time.time()
        online = set(self.grid.get_node_ids())
        busy = self.exchange.busy()
        served = [  # in the run's order: terminals, then edges (the batch draws' order)
            name
            for name in self.registry.wanted
            if nodes.get(name) in online and nodes[name] not in busy
        ]
        self.edge_versions_at[n] = {e: v for e, (v, *_) in self.edge_weights.items()}
        self.edge_versions_at.pop(n - EDGE_LINK_GRACE_ROUNDS - 1, None)
        messages = self._hellos(online)
        messages += [self._request(name) for name in served]
        self._save_state()  # the sequence numbers just used, before their messages leave
        meter = config.wire_meter_address
        if meter and not self.wire_mark:  # this process's first round: bill from here
            self.wire_mark = read_snapshot(meter)
        work.lap("prepare")
        result = self.exchange.round(n, messages, config.round_deadline_s)
        work.lap("exchange")
        tally = _RoundTally()
        for reply in result.replies:
            self._take_reply(reply, tally)
        for sent in result.refused:
            name = sent.context.name or f"node {sent.node}"
            tally.errors[name] = "the SuperLink did not accept the message"
            self.records.event("node-error", name, tally.errors[name], sent=n)
        work.lap("replies")
        self.pool.add(tally.accepted, self.opener.sequences())  # durable before acknowledged
        work.lap("pool")
        self._bill_wire(tally.answered)
        append_records(self.state_dir / "accounting.jsonl", tally.answered)
        self._count_participation(result, tally, online, busy)
        self._save_state()
        self.records.append("messages.jsonl", _message_timings(n, result))
        work.lap("records")
        record = self._round_record(started, result, served, tally)
        self.records.append("rounds.jsonl", {**record, "authority": work.record(result)})
        return tally.backlog

    def _request(self, name: str) -> tuple[Message, _Request]:
        """This round's message to node `name`: a collect (terminal) or a train (edge)."""
        n, config = self.round_number, self.config
        if name not in self.managing:
            batches = self._sample_batches()
            sealed = self._sealed_batches(n, name, batches)
            content = {"round": n, "batch-count": len(batches), "batches": sealed}
            record = MessageBytes(n, name, "edge", "query.train", sum(map(len, batches)))
            if sealed:
                record.auth_overhead_bytes += batch_overhead_bytes(name)
            request = _Request(name, "train", record)
            if self.relay:
                content |= self._relay_acks(name, request)
            return self._message(name, "train", content), request
        weights, notice, record = self._weights_for(name, self.managing[name])
        ack = self.ack_authenticator.authenticate(name, self.acks[name])
        faulty = self.faults.ack(n, name, ack, self.keys.terminal_public_keys[name])
        if faulty is None:  # a faulty ack replaces the genuine one
            self.faults.remember("ack", name, ack)
        content = {
            "round": n,
            "ack": faulty or ack,
            "limit": config.max_uploads_per_collect,
            "weights": weights,
            "relay-notice": notice,
        }
        record.auth_overhead_bytes += ack_bytes(name)
        request = _Request(name, "collect", record, self.acks[name], faulty is None)
        return self._message(name, "collect", content), request

    def _relay_acks(self, edge: str, request: _Request) -> dict:
        """Relay uplink: a train's acknowledgements for the terminals `edge` manages (those
        that advanced past what it applied) and its limit of relayed uploads."""
        acks = []
        for terminal in sorted(self.managed_by[edge]):
            ack = self.acks[terminal]
            if ack > self.relay_applied.get(terminal, 0):
                envelope = self.ack_authenticator.authenticate(terminal, ack)
                acks.append((terminal, ack, envelope))
                request.offered_relay_acks[terminal] = ack
                request.record.auth_overhead_bytes += ack_bytes(terminal)
        limit = self.config.max_uploads_per_collect * max(1, len(self.managed_by[edge]))
        request.offered_refusals = list(self.relay_refused.get(edge, []))
        refused = [(name, post, b"") for name, post in request.offered_refusals]
        return {
            "relay-acks": frame_relayed(acks),
            "relay-refused": frame_relayed(refused),
            "relay-limit": limit,
        }

    def _message(self, name: str, action: str, content: dict) -> Message:
        records = RecordDict({action: ConfigRecord(content)})
        return Message(
            records, dst_node_id=self.registry.nodes[name], message_type=f"query.{action}"
        )

    def _weights_for(self, name: str, edge: str) -> tuple[bytes, int, MessageBytes]:
        """The signed weights envelope to relay to terminal `name` this round (b"" when it
        holds the newest, by the relay or by its edge link), the version left out because
        its edge link delivered it (−1: none), and its message's byte record."""
        version, envelope, payload = self.edge_weights.get(edge, (-1, b"", b""))
        record = MessageBytes(self.round_number, name, "terminal", "query.collect")
        faulty = self.faults.weights(self.round_number, name, edge, envelope or None, payload)
        before = self.edge_versions_at.get(self.round_number - EDGE_LINK_GRACE_ROUNDS, {})
        relay = relay_decision(
            version, before.get(edge, -1), self.held[name], self.edge_link_held[name]
        )
        notice = version if relay == RELAY_NOTICE else -1
        if faulty is not None:
            envelope = faulty
        else:
            if relay != RELAY_NOTHING:  # the genuine envelope it holds now, by either path
                self.faults.remember("weights", name, envelope)
            if relay != RELAY_WEIGHTS:
                envelope = b""
        if envelope:
            record.down_plaintext_bytes = len(payload)
            record.auth_overhead_bytes = weights_overhead_bytes(edge)
        return envelope, notice, record

    def _sealed_batches(self, round_number: int, edge: str, batches: list[bytes]) -> bytes:
        """This round's batches for `edge`, framed and sealed for it (b"" when none)."""
        if not batches:
            return b""
        plaintext = frame(batches)
        sealed = self.batch_sealer.seal(edge, plaintext)
        public = self.keys.edge_public_keys[edge]
        faulty = self.faults.batch(round_number, edge, sealed, public, plaintext)
        if faulty is not None:
            return faulty
        self.faults.remember("batch", edge, sealed)
        return sealed

    def _sample_batches(self) -> list[bytes]:
        size, pool = self.config.method.learner.batch_trajectories, self.pool.pool
        if len(pool) < max(self.config.method.min_pool_trajectories, size):
            return []
        batches = []
        for _ in range(self.config.batches_per_round):
            _, batch = self.pool.sample(size, self.rng)
            trajectories = [encode_trajectory(_row(batch, i)) for i in range(size)]
            batches.append(frame(trajectories))
        return batches

    def _take_reply(self, reply: Reply[_Request], tally: _RoundTally) -> None:
        """Read one reply pulled this round (to a hello, a collect or a train, sent in this
        round or, late, in an earlier one) into `tally`."""
        n, request = self.round_number, reply.sent.context
        if request.action == "hello":
            if (name := self.registry.greet(reply, n)) is not None:
                tally.heard.add(name)
            return
        tally.answered.append(request.record)
        if reply.message.has_error():
            error = reply.message.error
            tally.errors[request.name] = f"code {error.code}: {error.reason}"
            self.records.event(
                "node-error", request.name, tally.errors[request.name], sent=reply.sent.round
            )
            return
        tally.heard.add(request.name)
        if reply.sent.round != n:
            tally.late[request.name] = reply.sent.round
            self.records.event(
                "late-reply",
                request.name,
                f"answered round {reply.sent.round}'s message {reply.latency_s:.1f} s after "
                "it was sent; its reply is taken now",
                sent=reply.sent.round,
            )
        if request.action == "collect":
            if request.genuine_ack:
                self.sent_acks[request.name] = request.offered_ack  # the node applied it
            collected = self._collected(
                request.name, reply.message.content["collect"], request.record
            )
            tally.accepted += collected.accepted
            tally.rejected += collected.rejected
            tally.backlog += collected.backlog
        else:
            train = reply.message.content["train"]
            self._weights_from(request.name, train, request.record)
            if self.relay:
                self.relay_applied.update(request.offered_relay_acks)  # the edge applied them
                discarded = set(request.offered_refusals)
                self.relay_refused[request.name] = [
                    item
                    for item in self.relay_refused.get(request.name, [])
                    if item not in discarded
                ]
                collected = self._relayed(request.name, train, request.record)
                tally.accepted += collected.accepted
                tally.rejected += collected.rejected
                tally.backlog += collected.backlog

    def _relayed(self, edge: str, reply, record: MessageBytes) -> CollectedUploads:
        """Open the uploads `edge` relayed (those processed are acknowledged with the next
        round's train) and count them and their sequence gaps."""
        collected = self.intake.take_relayed(edge, reply, self.managed_by[edge], record)
        self.relay_refused.setdefault(edge, []).extend(collected.not_managed)
        for name, post in collected.acks.items():
            self.acks[name] = max(self.acks[name], post)
        relayed, gaps = self.relay_counts["relayed"], self.relay_counts["gaps"]
        relayed[edge] = relayed.get(edge, 0) + len(collected.posts)
        for name, skipped in collected.gaps.items():
            gaps[name] = gaps.get(name, 0) + skipped
        return collected

    def _collected(self, name: str, reply, record: MessageBytes) -> CollectedUploads:
        """Note the weights version terminal `name` holds, then open its uploads (those
        processed are acknowledged with the next round)."""
        self.held[name] = int(reply["held-version"])
        self.edge_link_held[name] = int(reply.get("edge-link-version", -1))
        if self.held[name] >= 0 and (
            not self.delivered[name] or self.delivered[name][-1] != self.held[name]
        ):
            self.delivered[name].append(self.held[name])
        collected = self.intake.take(name, reply, record)
        if collected.posts:
            self.acks[name] = max(self.acks[name], max(collected.posts))
        return collected

    def _weights_from(self, edge: str, reply, record: MessageBytes) -> None:
        """Check an edge's newest signed weights (each new envelope once) and keep them."""
        envelope = bytes(reply["weights"])
        held = self.edge_weights.get(edge, (-1, b"", b""))
        if envelope:
            record.up_plaintext_bytes = max(len(envelope) - weights_overhead_bytes(edge), 0)
            record.auth_overhead_bytes = min(weights_overhead_bytes(edge), len(envelope))
        if not envelope or envelope == held[1]:
            return
        try:
            verified = self.weights_verifiers[edge].verify(envelope)
            decode_weights(verified.payload)  # relay only weights a terminal can load
        except WeightsRejected as error:
            self.records.refused(error.kind, error.code, edge, error.detail)
            return
        except DecodeError as error:
            self.records.event("bad-weights", edge, str(error))
            return
        self.edge_weights[edge] = (verified.version, envelope, verified.payload)

    def _bill_wire(self, records: list[MessageBytes]) -> None:
        """Give each answered message its node's wire bytes since that node's last answered
        message (a node that missed rounds pays for them with its next reply)."""
        meter = self.config.wire_meter_address
        if not meter:
            return
        now = read_snapshot(meter)
        for record in records:
            before = {record.node: self.wire_mark.get(record.node, {})}
            after = {record.node: now.get(record.node, {})}
            record.add_wire(difference(after, before).get(record.node, {}))
            self.wire_mark[record.node] = now.get(record.node, {})

    def _count_participation(
        self,
        result: RoundResult[_Request],
        tally: _RoundTally,
        online: set[int],
        busy: dict[int, Sent[_Request]],
    ) -> None:
        """Close the round in `participation`; log the nodes that began missing rounds in
        it (and why) and those that came back."""
        by_id = self.registry.name_of()
        unanswered = {by_id.get(s.node, f"node {s.node}") for s in result.unanswered}
        began, returned = self.participation.close_round(self.round_number, tally.heard)
        for name in began:
            why = self._why_missing(name, online, busy, unanswered, tally.errors)
            self.records.event("node-missing", name, f"{why}; the rounds go on without it")
        for name, missed in returned.items():
            self.records.event(
                "node-returned", name, f"answered again after {missed} missed round(s)"
            )

    def _why_missing(
        self,
        name: str,
        online: set[int],
        busy: dict[int, Sent[_Request]],
        unanswered: set[str],
        errors: dict[str, str],
    ) -> str:
        """Why nothing was heard from `name` this round, for the log."""
        node = self.registry.nodes.get(name)
        if node is None:
            return "has not answered a hello yet"
        if name in errors:
            return f"its message failed: {errors[name]}"
        if name in unanswered:
            return f"no reply by the round's {self.config.round_deadline_s:g} s deadline"
        if node in busy:
            return f"still no reply to its round {busy[node].round} message"
        if node not in online:
            return f"its SuperNode (node {node}) is not connected to the SuperLink"
        return "no reply"

    def _round_record(
        self,
        started: float,
        result: RoundResult[_Request],
        served: list[str],
        tally: _RoundTally,
    ) -> dict:
        """The round's line in rounds.jsonl."""
        n = self.round_number
        return {
            "round": n,
            "start_unix_s": started,
            "exchange_s": result.total_s,
            "latency_s": {
                r.sent.context.name: r.latency_s
                for r in result.replies
                if r.sent.round == n and r.sent.context.name
            },
            "served": served,
            "missed": sorted(set(self.registry.wanted) - tally.heard),
            "late": tally.late,
            "accepted": len(tally.accepted),
            "rejected": tally.rejected,
            "pool_size": len(self.pool.pool),
            "accepted_total": self.pool.accepted_total,
            "terminal_backlog": tally.backlog,
            "edge_versions": {e: v for e, (v, *_) in self.edge_weights.items()},
            "restart": self.restarts,
        }

    # -- the whole run ---------------------------------------------------------------------

    def run(self) -> None:
        """Rounds on the period until the stop file exists and the outboxes are empty."""
        stop = Path(self.config.stop_path)
        while not stop.exists():
            began = time.monotonic()
            self.round()
            while time.monotonic() < began + self.config.round_period_s and not stop.exists():
                time.sleep(min(0.05, self.config.round_period_s))
        for _ in range(FINAL_ROUNDS_MAX):  # drain the outboxes, then deliver the last acks
            if self.round() == 0 and self._acks_delivered():
                break
        self.pool.close()
        lost = self.participation.missing()  # silent in the last round: they hold the rest
        wanted = self.registry.wanted
        for name, since in lost.items():
            when = "never joined" if since is None else f"silent since round {since}"
            self.records.log(f"lost {wanted[name]} {name}: {when}; its outbox was not drained")
        summary = {
            "rounds": self.round_number,
            "restarts": self.restarts,
            "accepted_total": self.pool.accepted_total,
            "pool_size": len(self.pool.pool),
            "sequences": self.opener.sequences(),
            "weights_held": self.delivered,
            "edge_versions": {e: v for e, (v, *_) in self.edge_weights.items()},
            "refusals": self.records.refusals,
            "node_identity": "registered-key" if self.config.node_auth else "self-declared",
            "nodes": self.registry.nodes,
            "round_deadline_s": self.config.round_deadline_s,
            "quorum_nodes": self.config.quorum(),
            "participation": self.participation.records(),
            "lost_nodes": {
                name: {
                    "role": wanted[name],
                    "silent_since_round": since,
                    "acknowledged_post": self.acks.get(name),
                }
                for name, since in lost.items()
            },
            "test_transit_faults_injected": self.faults.injected(),
        }
        if self.relay:
            summary["relay"] = {
                "uploads_relayed_by_edge": self.relay_counts["relayed"],
                "sequence_gaps_by_terminal": self.relay_counts["gaps"],
            }
        self.records.write_json("summary.json", summary, indent=1)
        self.records.log(
            f"stopped after round {self.round_number}: {summary['accepted_total']} accepted"
        )

    def _acks_delivered(self) -> bool:
        """Whether every terminal heard in the last round has applied its newest ack (relay
        uplink: whether the edge of each terminal, if heard, has applied it)."""
        missing = self.participation.missing()
        if self.relay:
            return all(
                self.relay_applied.get(name, 0) == ack
                for name, ack in self.acks.items()
                if self.managing[name] not in missing
            )
        return all(
            self.sent_acks.get(name) == ack
            for name, ack in self.acks.items()
            if name not in missing
        )

    # -- state -----------------------------------------------------------------------------

    def _save_state(self) -> None:
        """state.json: what a restarted authority resumes from (see the module docstring)."""
        state = {
            "round": self.round_number,
            "acks": self.acks,
            "restarts": self.restarts,
            "batch_next": self.batch_sealer.next_sequence,
            "ack_next": self.ack_authenticator.next_sequence,
            "refusals": self.records.refusals,
            "participation": self.participation.records(),
        }
        if self.relay:
            state["relay"] = self.relay_counts
        self.records.write_json("state.json", state)


RELAY_WEIGHTS, RELAY_NOTICE, RELAY_NOTHING = "weights", "notice", "nothing"
"""What a terminal's collect carries of its edge's newest weights (`relay_decision`)."""
EDGE_LINK_GRACE_ROUNDS = 2
"""Rounds a version may take to show in a terminal's report of what its edge link
brought before the authority relays it after all (the report is a round old, and the
terminal's collect may have run before the edge's train that brought the version)."""


def relay_decision(
    published: int, published_before: int, relayed_held: int, edge_link_held: int
) -> str:
    """What the collect to a terminal carries of the newest version `published` by its
    edge (−1: none yet), given the newest version the edge had published
    `EDGE_LINK_GRACE_ROUNDS` rounds ago (`published_before`, −1: none) and the newest
    versions the relay (`relayed_held`) and its edge link (`edge_link_held`, −1: none
    ever) gave the terminal, as it last reported:

    - RELAY_NOTHING when the relay gave it that version already;
    - RELAY_WEIGHTS, the signed envelope, when its edge link never brought it any (there
      is none, or it is down since the start), or has not brought a version it had
      `EDGE_LINK_GRACE_ROUNDS` rounds to bring;
    - RELAY_NOTICE otherwise: only the version number, as its edge link brings (or
      brought) the weights and they are not sent twice; the number keeps the relay's
      reference age (what a terminal fed by the relay alone would hold)."""
    if published <= relayed_held:
        return RELAY_NOTHING
    if edge_link_held < 0 or edge_link_held < published_before:
        return RELAY_WEIGHTS
    return RELAY_NOTICE


class _WorkTimer:
    """Where a round's time and the authority's CPU went, phase by phase."""

    def __init__(self) -> None:
        self.wall_s: dict[str, float] = {}
        self._wall, self._cpu_start = time.perf_counter(), time.process_time()

    def lap(self, phase: str) -> None:
        """The time since the last lap was spent in `phase`."""
        now = time.perf_counter()
        self.wall_s[phase] = now - self._wall
        self._wall = now

    def record(self, result: RoundResult) -> dict:
        """The round's `authority` entry in rounds.jsonl: wall seconds per phase (the
        exchange split into push, pulls and waiting), and this process's CPU seconds."""
        wall = {phase: round(s, 4) for phase, s in self.wall_s.items()}
        wall["exchange_push"] = round(result.push_s, 4)
        wall["exchange_pull"] = round(result.pull_s, 4)
        return {
            "wall_s": wall,
            "pulls": result.pulls,
            "cpu_s": round(time.process_time() - self._cpu_start, 4),
        }


def _message_timings(round_number: int, result: RoundResult) -> dict:
    """The round's line in messages.jsonl: for each reply pulled in it (to a hello, a
    collect or a train, sent in this round or an earlier one), when the request was
    pushed and when its reply was pulled (wall clock), the message ids the node's
    SuperNode logs, and the times the ClientApp reported (`client_app.TIMING_KEYS`:
    process start, handler start and end), when it did; and this round's messages still
    unanswered."""
    replies = []
    for reply in result.replies:
        sent, message = reply.sent, reply.message
        entry = {
            "node": sent.context.name or f"node {sent.node}",
            "action": sent.context.action,
            "sent_round": sent.round,
            "message_id": sent.message_id,
            "reply_id": message.metadata.message_id,
            "pushed_unix_s": sent.pushed_unix_s,
            "pulled_unix_s": reply.pulled_unix_s,
            "error": message.has_error(),
        }
        action = sent.context.action
        if not message.has_error() and action in message.content:
            record = message.content[action]
            entry.update({key: float(record[key]) for key in TIMING_KEYS if key in record})
        replies.append(entry)
    unanswered = [
        {"node": sent.context.name or f"node {sent.node}", "message_id": sent.message_id}
        for sent in result.unanswered
    ]
    return {"round": round_number, "replies": replies, "unanswered": unanswered}


def _row(batch, index: int):
    """Trajectory `index` of a `TrajectoryBatch`."""
    return Trajectory(**{name: getattr(batch, name)[index] for name in FIELDS})


def run_authority(grid: Grid, run_config: dict) -> None:
    """The ServerApp's authority mode: load the setup, serve, run rounds until stopped."""
    path = str(run_config["authority-config"])
    if not path:
        raise ValueError("run config authority-config is empty; name the authority's JSON setup")
    config = load_config(path, AuthorityConfig)
    authority = Authority(config, grid, str(run_config.get("uplink", DIRECT)))
    authority.start()
    authority.run()
