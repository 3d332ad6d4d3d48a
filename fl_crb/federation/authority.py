"""The trusted authority's rounds, run by the ServerApp (run config mode "authority").

Every `round_period_s` the authority makes ONE exchange with every node:

- to each terminal, `query.collect` with the cumulative acknowledgement of the uploads it
  has processed, MACed for that terminal (`message_auth.AckAuthenticator`), and, if the
  terminal's managing edge published weights newer than those the terminal holds, that
  edge's signed weights envelope, relayed byte for byte;
- to each edge, `query.train` with up to `batches_per_round` batches of
  `batch_trajectories` trajectories drawn from the pool by familiarity (once the pool
  holds `min_pool_trajectories`), sealed for that edge (`message_auth.BatchSealer`); the
  reply carries the edge's newest signed weights, checked against the edge's key before
  they are relayed (`message_auth.WeightsVerifier`).

Its keys come from its bundle (`host_bundle`, `AuthorityConfig.bundle`). Who each node is
comes, with SuperNode authentication, from the public key it registered with: Flower's
`Grid.get_nodes()` gives each node id's public key, which the authority looks up among
the bundle's supernodes/<name>.pub; what a node says about itself in `query.hello` is
only checked against it (a mismatch is logged as an `identity` refusal, and the key wins).
Without node authentication (`--insecure`) names come from `query.hello`.

Then it opens each upload (`crypto.UploadOpener`, sender = the node's name), decodes and
validates the trajectory, and refuses bad ones with a logged, counted reason (the run goes
on). Accepted trajectories enter the `DurablePool` WITHOUT the terminal's identity,
together with the replay guard's state, and only then are the uploads acknowledged (the
acknowledgement travels with the next round). An authority killed at any point and
started again (a new `flwr run`) recovers the pool, the replay guard and its
acknowledgements from `state_dir`, so no accepted trajectory is lost or taken twice.

`state_dir` holds: pool/ (the durable pool), state.json (next round, acknowledgements,
the next batch and ack sequence number of every edge and terminal, saved before the
messages that use them leave),
ready.json (this process's pid and the node map, once it is serving), rounds.jsonl (one
line per round), events.jsonl and authority.log (rejections and errors), accounting.jsonl
(`metering.accounting`), summary.json (at the end, with the refusals by kind and code).
The authority stops after the round in which `stop_path` exists and every terminal's
outbox is empty. `AuthorityConfig.test_transit_faults` (tests only) makes it alter, forge
or replay single messages on purpose (`transit_faults`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from fl_crb.federation.authority_config import AuthorityConfig
from fl_crb.federation.crypto import UploadRejected, overhead_bytes
from fl_crb.federation.exchange import ExchangeError, exchange, wait_for_nodes
from fl_crb.federation.host_bundle import HostBundle
from fl_crb.federation.mailbox import count_refusal, frame, unframe, write_atomic
from fl_crb.federation.message_auth import (
    WeightsRejected,
    ack_bytes,
    batch_overhead_bytes,
    weights_overhead_bytes,
)
from fl_crb.federation.metering.accounting import MessageBytes, append_records
from fl_crb.federation.metering.wire_meter import difference, read_snapshot
from fl_crb.federation.pool_store import DurablePool
from fl_crb.federation.serialization import (
    DecodeError,
    TrajectoryShape,
    decode_trajectory,
    decode_weights,
    encode_trajectory,
)
from fl_crb.federation.transit_faults import TransitFaults
from fl_crb.runtime.config import load_config

FINAL_ROUNDS_MAX = 20
"""Rounds after the stop request spent draining terminals' outboxes, at most."""


class Authority:
    """State and rounds of the trusted authority."""

    def __init__(self, config: AuthorityConfig, grid: Grid):
        self.config, self.grid = config, grid
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
        saved = self._read_json("state.json") or {"round": 0, "acks": {}, "restarts": -1}
        self.batch_sealer = self.keys.batch_sealer(run_id, saved.get("batch_next"))
        self.ack_authenticator = self.keys.ack_authenticator(run_id, saved.get("ack_next"))
        self.weights_verifiers = {e: self.keys.weights_verifier(e, run_id) for e in config.edges}
        self.faults = TransitFaults(
            config.test_transit_faults, run_id, config.terminals[0].name, config.edges[0]
        )
        self.refusals: dict[str, dict[str, int]] = saved.get("refusals", {})
        """What the authority refused, {kind: {code: count}}, over every restart."""
        self.round_number = int(saved["round"])
        self.acks = {t.name: int(saved["acks"].get(t.name, 0)) for t in config.terminals}
        self.sent_acks: dict[str, int] = {}
        """The acknowledgement each terminal last applied (its collect was answered)."""
        self.restarts = int(saved.get("restarts", -1)) + 1
        self.managing = {t.name: t.edge for t in config.terminals}
        self.held = dict.fromkeys(self.managing, -1)
        """Weights version each terminal reported holding (−1: unknown or none)."""
        self.edge_weights: dict[str, tuple[int, bytes, bytes]] = {}
        """Edge → its newest checked weights: (version, signed envelope, payload)."""
        self.delivered: dict[str, list[int]] = {name: [] for name in self.managing}
        self.rng = np.random.default_rng([config.seed, self.restarts, self.round_number])
        self.nodes: dict[str, int] = {}
        self.wire_mark: dict = {}
        """The wire meter's snapshot at the end of the previous round's exchange."""

    # -- records ---------------------------------------------------------------------------

    def _read_json(self, name: str) -> dict | None:
        path = self.state_dir / name
        return json.loads(path.read_text()) if path.exists() else None

    def _append(self, name: str, record: dict) -> None:
        with open(self.state_dir / name, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")

    def log(self, text: str) -> None:
        """A line in authority.log and on the ServerApp's output (the `flwr run` log)."""
        line = f"{time.strftime('%H:%M:%S')} authority: {text}"
        print(line, flush=True)
        with open(self.state_dir / "authority.log", "a", encoding="utf-8") as file:
            file.write(line + "\n")

    def _save_state(self) -> None:
        state = {
            "round": self.round_number,
            "acks": self.acks,
            "restarts": self.restarts,
            "batch_next": self.batch_sealer.next_sequence,
            "ack_next": self.ack_authenticator.next_sequence,
            "refusals": self.refusals,
        }
        write_atomic(self.state_dir / "state.json", json.dumps(state).encode())

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        """Wait for every node; name each by its registered key (or, with `--insecure`,
        by its `query.hello`)."""
        expected = len(self.config.terminals) + len(self.config.edges)
        ids = wait_for_nodes(self.grid, expected, self.config.node_wait_s)
        hello = [
            Message(RecordDict({}), dst_node_id=node, message_type="query.hello") for node in ids
        ]
        result = exchange(
            self.grid, hello, self.config.poll_interval_s, self.config.exchange_timeout_s
        )
        if errors := result.errors():
            raise ExchangeError(f"query.hello failed on node(s): {errors}")
        claims = {
            node: (str(reply.content["identity"]["name"]), str(reply.content["identity"]["role"]))
            for node, reply in result.replies.items()
        }
        wanted = {
            **dict.fromkeys(self.managing, "terminal"),
            **dict.fromkeys(self.config.edges, "edge"),
        }
        registered = self._registered_names(ids) if self.config.node_auth else None
        roles = {}
        for node, (name, role) in claims.items():
            if registered is not None:
                claimed, name = name, registered.get(node, "")
                role = wanted.get(name, "")
                if not name:
                    self._refused("identity", "unknown-key", "?", f"node {node}: unknown key")
                    continue
                if claimed != name:
                    self._refused(
                        "identity",
                        "claimed-other-name",
                        name,
                        f"node {node} registered with {name}'s key claims to be {claimed!r}; "
                        f"it is {name}",
                    )
            self.nodes[name] = node
            roles[name] = role
        if any(roles.get(name) != role for name, role in wanted.items()):
            raise ExchangeError(f"the nodes that answered are {roles}; the run needs {wanted}")
        self._save_state()
        ready = {
            "pid": os.getpid(),
            "nodes": self.nodes,
            "restarts": self.restarts,
            "recovery": {
                "accepted_total": self.pool.accepted_total,
                "uncommitted_records": self.pool.recovery.uncommitted_records,
            },
        }
        write_atomic(self.state_dir / "ready.json", json.dumps(ready).encode())
        self.log(
            f"serving {len(self.managing)} terminals and {len(self.config.edges)} edges; pool "
            f"holds {len(self.pool.pool)} ({self.pool.accepted_total} accepted so far), "
            f"restart {self.restarts}"
        )

    def _registered_names(self, ids: list[int]) -> dict[int, str]:
        """Node id → the host whose registered SuperNode key it authenticates with."""
        from cryptography.hazmat.primitives.serialization import (
            load_pem_public_key,
            load_ssh_public_key,
        )

        from fl_crb.federation.host_bundle import key_id

        by_key = {
            key_id(load_ssh_public_key(path.read_bytes())): name
            for name, path in self.keys.supernode_public_keys.items()
        }
        names = {}
        for info in self.grid.get_nodes():
            if info.node_id in ids and info.public_key:
                names[info.node_id] = by_key.get(
                    key_id(load_pem_public_key(bytes(info.public_key))), ""
                )
        return names

    # -- one round -------------------------------------------------------------------------

    def round(self) -> int:
        """One exchange with every node; returns the terminals' remaining outbox backlog."""
        self.round_number += 1
        n, config = self.round_number, self.config
        started = time.time()
        messages, records, offered_acks, acked = [], {}, {}, {}
        for name, edge in self.managing.items():
            weights, record = self._weights_for(name, edge)
            offered_acks[name] = self.acks[name]
            ack = self.ack_authenticator.authenticate(name, self.acks[name])
            faulty = self.faults.ack(n, name, ack, self.keys.terminal_public_keys[name])
            acked[name] = faulty is None  # a faulty ack replaces the genuine one
            if faulty is None:
                self.faults.remember("ack", name, ack)
            content = {
                "round": n,
                "ack": faulty or ack,
                "limit": config.max_uploads_per_collect,
                "weights": weights,
            }
            messages.append(self._message(name, "collect", content))
            record.auth_overhead_bytes += ack_bytes(name)
            records[name] = record
        for edge in config.edges:
            batches = self._sample_batches()
            sealed = self._sealed_batches(n, edge, batches)
            content = {"round": n, "batch-count": len(batches), "batches": sealed}
            messages.append(self._message(edge, "train", content))
            records[edge] = MessageBytes(n, edge, "edge", "query.train", sum(map(len, batches)))
            if sealed:
                records[edge].auth_overhead_bytes += batch_overhead_bytes(edge)
        self._save_state()  # the sequence numbers just used, before their messages leave
        meter = config.wire_meter_address
        before = self.wire_mark or (read_snapshot(meter) if meter else {})
        result = exchange(self.grid, messages, config.poll_interval_s, config.exchange_timeout_s)
        if meter:
            self.wire_mark = read_snapshot(meter)
        wire = difference(self.wire_mark, before) if meter else None
        by_id = {node: name for name, node in self.nodes.items()}
        for node, error in result.errors().items():
            self._event("node-error", by_id[node], error)
        accepted, rejected, backlog = [], 0, 0
        for node, reply in result.replies.items():
            name = by_id[node]
            if reply.has_error():
                continue
            if name in self.managing:
                if acked[name]:
                    self.sent_acks[name] = offered_acks[name]  # the node has applied it
                got, refused, left = self._collected(name, reply.content["collect"], records[name])
                accepted += got
                rejected += refused
                backlog += left
            else:
                self._weights_from(name, reply.content["train"], records[name])
        self.pool.add(accepted, self.opener.sequences())  # durable before acknowledged
        self._save_state()
        for name, record in records.items():
            record.add_wire(None if wire is None else wire.get(name, {}))
        append_records(self.state_dir / "accounting.jsonl", list(records.values()))
        self._append(
            "rounds.jsonl",
            {
                "round": n,
                "start_unix_s": started,
                "exchange_s": result.total_s,
                "latency_s": {by_id[k]: v for k, v in result.latency_s.items()},
                "accepted": len(accepted),
                "rejected": rejected,
                "pool_size": len(self.pool.pool),
                "accepted_total": self.pool.accepted_total,
                "terminal_backlog": backlog,
                "edge_versions": {e: v for e, (v, *_) in self.edge_weights.items()},
                "restart": self.restarts,
            },
        )
        return backlog

    def _message(self, name: str, action: str, content: dict) -> Message:
        records = RecordDict({action: ConfigRecord(content)})
        return Message(records, dst_node_id=self.nodes[name], message_type=f"query.{action}")

    def _weights_for(self, name: str, edge: str) -> tuple[bytes, MessageBytes]:
        """The signed weights envelope to relay to terminal `name` this round (b"" when it
        holds the newest), and its message's byte record."""
        version, envelope, payload = self.edge_weights.get(edge, (-1, b"", b""))
        record = MessageBytes(self.round_number, name, "terminal", "query.collect")
        faulty = self.faults.weights(self.round_number, name, edge, envelope or None, payload)
        if faulty is not None:
            envelope = faulty
        elif version > self.held[name]:
            self.faults.remember("weights", name, envelope)
        else:
            envelope = b""
        if envelope:
            record.down_plaintext_bytes = len(payload)
            record.auth_overhead_bytes = weights_overhead_bytes(edge)
        return envelope, record

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

    def _collected(self, name: str, reply, record: MessageBytes) -> tuple[list, int, int]:
        """Open a terminal's uploads; (accepted trajectories, rejected count, backlog)."""
        self.held[name] = int(reply["held-version"])
        if self.held[name] >= 0 and (
            not self.delivered[name] or self.delivered[name][-1] != self.held[name]
        ):
            self.delivered[name].append(self.held[name])
        try:
            uploads = unframe(bytes(reply["uploads"]), f"collect reply of {name}: uploads")
            posts = [int(p) for p in unframe(bytes(reply["post-ids"]), f"{name}: post-ids")]
            if len(posts) != len(uploads):
                raise ValueError(f"{len(uploads)} uploads but {len(posts)} post ids")
        except ValueError as error:
            self._event("bad-reply", name, str(error))
            return [], 0, int(reply["backlog"])
        accepted, rejected = [], 0
        overhead = overhead_bytes(name)
        for post, envelope in zip(posts, uploads, strict=True):
            record.uploads += 1
            record.encryption_overhead_bytes += min(overhead, len(envelope))
            record.up_plaintext_bytes += max(len(envelope) - overhead, 0)
            try:
                opened = self.opener.open(envelope, sender=name)
                accepted.append(decode_trajectory(opened.plaintext, self.shape))
            except UploadRejected as error:
                rejected += 1
                self._refused("upload", error.code, name, error.detail, post=post)
            except DecodeError as error:
                rejected += 1
                self._refused("upload", "invalid-content", name, str(error), post=post)
        if posts:
            self.acks[name] = max(self.acks[name], max(posts))
        return accepted, rejected, int(reply["backlog"])

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
            self._refused(error.kind, error.code, edge, error.detail)
            return
        except DecodeError as error:
            self._event("bad-weights", edge, str(error))
            return
        self.edge_weights[edge] = (verified.version, envelope, verified.payload)

    def _refused(self, message: str, code: str, node: str, detail: str, **extra) -> None:
        """Count and log a refused message (`message`: "upload", "weights", "identity")."""
        count_refusal(self.refusals, message, code)
        self._event("rejected", node, detail, code=code, message=message, **extra)

    def _event(self, kind: str, node: str, detail: str, **extra) -> None:
        self._append(
            "events.jsonl",
            {"round": self.round_number, "kind": kind, "node": node, "detail": detail, **extra},
        )
        code = f" ({extra['code']})" if "code" in extra else ""
        kind = f"{kind} {extra['message']}" if extra.get("message", "upload") != "upload" else kind
        post = f" post {extra['post']}" if "post" in extra else ""
        self.log(f"round {self.round_number}: {kind}{code} from {node}{post}: {detail}")

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
            if self.round() == 0 and self.sent_acks == self.acks:
                break
        self.pool.close()
        summary = {
            "rounds": self.round_number,
            "restarts": self.restarts,
            "accepted_total": self.pool.accepted_total,
            "pool_size": len(self.pool.pool),
            "sequences": self.opener.sequences(),
            "weights_held": self.delivered,
            "edge_versions": {e: v for e, (v, *_) in self.edge_weights.items()},
            "refusals": self.refusals,
            "node_identity": "registered-key" if self.config.node_auth else "self-declared",
            "nodes": self.nodes,
            "test_transit_faults_injected": self.faults.injected(),
        }
        write_atomic(self.state_dir / "summary.json", json.dumps(summary, indent=1).encode())
        self.log(f"stopped after round {self.round_number}: {summary['accepted_total']} accepted")


def _row(batch, index: int):
    """Trajectory `index` of a `TrajectoryBatch`."""
    from fl_crb.learn.pool import FIELDS, Trajectory

    return Trajectory(**{name: getattr(batch, name)[index] for name in FIELDS})


def run_authority(grid: Grid, run_config: dict) -> None:
    """The ServerApp's authority mode: load the setup, serve, run rounds until stopped."""
    path = str(run_config["authority-config"])
    if not path:
        raise ValueError("run config authority-config is empty; name the authority's JSON setup")
    config = load_config(path, AuthorityConfig)
    authority = Authority(config, grid)
    authority.start()
    authority.run()
