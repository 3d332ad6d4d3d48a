"""The trusted authority's rounds, run by the ServerApp (run config mode "authority").

Every `round_period_s` the authority makes ONE exchange with every node:

- to each terminal, `query.collect` with the cumulative acknowledgement of the uploads it
  has processed and, if the terminal's managing edge published weights newer than those
  the terminal holds, those weights;
- to each edge, `query.train` with up to `batches_per_round` batches of
  `batch_trajectories` trajectories drawn from the pool by familiarity (once the pool
  holds `min_pool_trajectories`); the reply carries the edge's newest weights.

Then it opens each upload (`crypto.UploadOpener`, sender = the node's name), decodes and
validates the trajectory, and refuses bad ones with a logged, counted reason (the run goes
on). Accepted trajectories enter the `DurablePool` WITHOUT the terminal's identity,
together with the replay guard's state, and only then are the uploads acknowledged (the
acknowledgement travels with the next round). An authority killed at any point and
started again (a new `flwr run`) recovers the pool, the replay guard and its
acknowledgements from `state_dir`, so no accepted trajectory is lost or taken twice.

`state_dir` holds: pool/ (the durable pool), state.json (next round, acknowledgements),
ready.json (this process's pid and the node map, once it is serving), rounds.jsonl (one
line per round), events.jsonl and authority.log (rejections and errors), accounting.jsonl
(`metering.accounting`), summary.json (at the end). The authority stops after the round in which
`stop_path` exists and every terminal's outbox is empty.
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
from fl_crb.federation.crypto import UploadOpener, UploadRejected, load_private_key, overhead_bytes
from fl_crb.federation.exchange import ExchangeError, exchange, wait_for_nodes
from fl_crb.federation.mailbox import frame, unframe, write_atomic
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
        self.opener = UploadOpener(
            load_private_key(config.authority_key_path),
            bytes.fromhex(config.upload_run_id_hex),
            {t.name: bytes.fromhex(t.public_key_hex) for t in config.terminals},
            self.pool.sequences,
        )
        saved = self._read_json("state.json") or {"round": 0, "acks": {}, "restarts": -1}
        self.round_number = int(saved["round"])
        self.acks = {t.name: int(saved["acks"].get(t.name, 0)) for t in config.terminals}
        self.sent_acks: dict[str, int] = {}
        """The acknowledgement each terminal last applied (its collect was answered)."""
        self.restarts = int(saved.get("restarts", -1)) + 1
        self.managing = {t.name: t.edge for t in config.terminals}
        self.held = dict.fromkeys(self.managing, -1)
        """Weights version each terminal reported holding (−1: unknown or none)."""
        self.edge_weights: dict[str, tuple[int, bytes]] = {}
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
        state = {"round": self.round_number, "acks": self.acks, "restarts": self.restarts}
        write_atomic(self.state_dir / "state.json", json.dumps(state).encode())

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        """Wait for every node, map Flower node ids to names by `query.hello`."""
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
        roles = {}
        for node, reply in result.replies.items():
            identity = reply.content["identity"]
            self.nodes[str(identity["name"])] = node
            roles[str(identity["name"])] = str(identity["role"])
        wanted = {
            **dict.fromkeys(self.managing, "terminal"),
            **dict.fromkeys(self.config.edges, "edge"),
        }
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

    # -- one round -------------------------------------------------------------------------

    def round(self) -> int:
        """One exchange with every node; returns the terminals' remaining outbox backlog."""
        self.round_number += 1
        n, config = self.round_number, self.config
        started = time.time()
        messages, records, offered_acks = [], {}, {}
        for name, edge in self.managing.items():
            version, weights = self.edge_weights.get(edge, (-1, b""))
            weights = weights if version > self.held[name] else b""
            offered_acks[name] = self.acks[name]
            content = {
                "round": n,
                "ack": self.acks[name],
                "limit": config.max_uploads_per_collect,
                "weights": weights,
            }
            messages.append(self._message(name, "collect", content))
            records[name] = MessageBytes(n, name, "terminal", "query.collect", len(weights))
        for edge in config.edges:
            batches = self._sample_batches()
            content = {"round": n, "batch-count": len(batches), "batches": frame(batches)}
            messages.append(self._message(edge, "train", content))
            records[edge] = MessageBytes(n, edge, "edge", "query.train", sum(map(len, batches)))
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
                "edge_versions": {e: v for e, (v, _) in self.edge_weights.items()},
                "restart": self.restarts,
            },
        )
        return backlog

    def _message(self, name: str, action: str, content: dict) -> Message:
        records = RecordDict({action: ConfigRecord(content)})
        return Message(records, dst_node_id=self.nodes[name], message_type=f"query.{action}")

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
                self._event("rejected", name, error.detail, code=error.code, post=post)
            except DecodeError as error:
                rejected += 1
                self._event("rejected", name, str(error), code="invalid-content", post=post)
        if posts:
            self.acks[name] = max(self.acks[name], max(posts))
        return accepted, rejected, int(reply["backlog"])

    def _weights_from(self, edge: str, reply, record: MessageBytes) -> None:
        weights = bytes(reply["weights"])
        record.up_plaintext_bytes = len(weights)
        if not weights or int(reply["version"]) <= self.edge_weights.get(edge, (-1, b""))[0]:
            return
        try:
            decoded = decode_weights(weights)
        except DecodeError as error:
            self._event("bad-weights", edge, str(error))
            return
        self.edge_weights[edge] = (decoded.version, weights)

    def _event(self, kind: str, node: str, detail: str, **extra) -> None:
        self._append(
            "events.jsonl",
            {"round": self.round_number, "kind": kind, "node": node, "detail": detail, **extra},
        )
        code = f" ({extra['code']})" if "code" in extra else ""
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
            "edge_versions": {e: v for e, (v, _) in self.edge_weights.items()},
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
