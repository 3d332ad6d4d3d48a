"""The Flower components: the ServerApp (trusted authority) and the ClientApp (every node).

Flower starts a fresh `flwr-clientapp` process for every message a SuperNode receives, so
the ClientApp handlers stay thin: they import only Flower and the standard library, read
what the message carries and reply. A node's role and name come from its node config
(`flower-supernode --node-config 'role="terminal" name="t3"'`).

Message types (`query.<action>`), ServerApp → node, each answered by one reply:

- `query.hello`: the node replies with its role and name, so the authority can map
  Flower node ids to the topology's hosts (node ids are assigned by the SuperLink).
- `query.probe`: carries `request-bytes` of payload and asks for `reply-bytes` back; the
  reply carries the time the handler ran and the time its process started. This is
  Flower's bare message round trip, the reference the federated rounds are measured by.
- `query.collect` (terminals): carries the authority's cumulative acknowledgement of
  uploads (`ack`, a post id), at most how many uploads to return (`limit`), and, when the
  terminal's managing edge has newer weights than the terminal holds, those `weights`.
  The handler deletes the acknowledged uploads from the terminal's mailbox outbox, stores
  the weights for the terminal party, and replies with the pending sealed uploads, their
  post ids and the version of the weights the terminal now holds.
- `query.train` (edges): carries familiarity-sampled `batches` for the edge's learner;
  the handler drops them in the edge's mailbox inbox and replies with the weights the
  learner published last (the learner trains in its own process, so they are one round
  behind these batches) and the inbox backlog.

The mailbox directory (`mailbox`) bridges a handler and its node's long-lived party:
node config `mailbox="/abs/path"`, else the run config's `mailbox-root`/<node name>.

The ServerApp's behaviour is chosen by the run config's `mode`: `probe` says hello to
the expected nodes, then runs the probe plan and writes the timings to `result-path` as
JSON; `authority` runs the trusted authority's rounds (`fl_crb.federation.authority`,
imported only then: it needs numpy and the pool, which the handlers never import).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fl_crb.federation.exchange import ExchangeError, ExchangeResult, exchange
from fl_crb.federation.mailbox import EdgeMailbox, TerminalMailbox, frame, weights_version
from fl_crb.federation.wire_meter import difference, read_snapshot

RUN_CONFIG_DEFAULTS: dict[str, bool | float | int | str] = {
    "mode": "probe",
    "expected-nodes": 1,
    "node-wait-s": 60.0,
    "poll-interval-s": 0.05,
    "exchange-timeout-s": 120.0,
    "probe-rounds": 3,
    "probe-plan": "0:0",
    "result-path": "",
    "wire-meter-address": "",
    "authority-config": "",
    "mailbox-root": "",
}
"""Every run-config key with its default; `flwr run --run-config` may only override these.

mode: what the ServerApp does (only "probe" is built). expected-nodes: SuperNodes to wait
for. node-wait-s: how long to wait for them. poll-interval-s: seconds between pulls.
exchange-timeout-s: give up on missing replies after this long. probe-rounds: repetitions
of each plan entry. probe-plan: comma-separated "request_bytes:reply_bytes" entries.
result-path: the JSON file the ServerApp writes (required). wire-meter-address: a
`WireMeter`'s control address ("host:port"); when set, each exchange records the wire
bytes per node and endpoint. authority-config: the JSON file of the authority's setup
(`authority.AuthorityConfig`; mode "authority"). mailbox-root: folder holding one mailbox
per node name, for nodes whose node config names no `mailbox`.
"""
MODES = ("probe", "authority")
"""What the ServerApp can do (run config `mode`)."""

server_app = ServerApp()
client_app = ClientApp()


# -- ClientApp: thin handlers ---------------------------------------------------------------


@client_app.query("hello")
def hello(message: Message, context: Context) -> Message:
    """Reply with this node's role and name from its node config."""
    identity = ConfigRecord(
        {
            "role": str(context.node_config.get("role", "")),
            "name": str(context.node_config.get("name", "")),
        }
    )
    return Message(RecordDict({"identity": identity}), reply_to=message)


@client_app.query("probe")
def probe(message: Message, context: Context) -> Message:
    """Reply with `reply-bytes` random bytes and when this handler and its process ran."""
    handler_unix_s = time.time()
    request = message.content["probe"]
    reply_bytes = int(request["reply-bytes"])
    record = ConfigRecord(
        {
            "payload": os.urandom(reply_bytes),
            "received-bytes": len(request["payload"]),
            "handler-unix-s": handler_unix_s,
            "process-start-unix-s": _process_start_unix_s(),
        }
    )
    return Message(RecordDict({"probe": record}), reply_to=message)


def node_mailbox(context: Context) -> Path:
    """This node's mailbox directory: node config `mailbox`, else mailbox-root/<name>."""
    named = str(context.node_config.get("mailbox", ""))
    if named:
        return Path(named)
    root = str(context.run_config.get("mailbox-root", ""))
    name = str(context.node_config.get("name", ""))
    if not root or not name:
        raise ValueError(
            'this node has no mailbox: give it node config mailbox="/abs/path", or a name '
            "and the run config mailbox-root"
        )
    return Path(root) / name


@client_app.query("collect")
def collect(message: Message, context: Context) -> Message:
    """Terminal: drop acknowledged uploads, store delivered weights, return pending uploads."""
    request = message.content["collect"]
    mailbox = TerminalMailbox(node_mailbox(context))
    mailbox.acknowledge(int(request["ack"]))
    weights = bytes(request["weights"])
    if weights:
        mailbox.deliver_weights(weights)
    pending = mailbox.pending(int(request["limit"]))
    reply = ConfigRecord(
        {
            "uploads": frame([data for _, data in pending]),
            "post-ids": frame([str(post).encode() for post, _ in pending]),
            "held-version": mailbox.held_weights_version(),
            "backlog": mailbox.backlog() - len(pending),
        }
    )
    return Message(RecordDict({"collect": reply}), reply_to=message)


@client_app.query("train")
def train(message: Message, context: Context) -> Message:
    """Edge: leave the batches for the learner, reply with its newest published weights."""
    request = message.content["train"]
    mailbox = EdgeMailbox(node_mailbox(context))
    if int(request["batch-count"]):
        mailbox.drop_batches(int(request["round"]), bytes(request["batches"]))
    weights = mailbox.published_weights() or b""
    reply = ConfigRecord(
        {"weights": weights, "version": weights_version(weights), "backlog": len(mailbox.waiting())}
    )
    return Message(RecordDict({"train": reply}), reply_to=message)


def _process_start_unix_s() -> float:
    """When this process started (Linux /proc, 10 ms ticks), or −1 where that is unavailable."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        age_s = time.clock_gettime(time.CLOCK_BOOTTIME) - int(fields[19]) / os.sysconf(
            "SC_CLK_TCK"
        )  # fields[19] is field 22 of stat (fields[0] is field 3): start time since boot
    except (OSError, IndexError, ValueError, AttributeError):
        return -1.0
    return time.time() - age_s


# -- ServerApp ------------------------------------------------------------------------------


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the mode named by the run config."""
    config = {**RUN_CONFIG_DEFAULTS, **context.run_config}
    mode = str(config["mode"])
    if mode not in MODES:
        raise ValueError(f"run config mode = {mode!r} is unknown; available modes: {MODES}")
    if mode == "authority":
        from fl_crb.federation.authority import run_authority

        run_authority(grid, config)
        return
    run_probe(grid, config)


def run_probe(grid: Grid, config: dict) -> None:
    """Say hello to the expected nodes, run the probe plan, write the timings as JSON."""
    result_path = Path(str(config["result-path"]))
    if not str(config["result-path"]):
        raise ValueError("run config result-path is empty; name the JSON file to write")
    plan = parse_probe_plan(str(config["probe-plan"]))
    poll_s = float(config["poll-interval-s"])
    timeout_s = float(config["exchange-timeout-s"])

    nodes = wait_for_nodes(grid, int(config["expected-nodes"]), float(config["node-wait-s"]))
    hello_result = exchange(grid, _messages(nodes, "query.hello", None), poll_s, timeout_s)
    if errors := hello_result.errors():
        raise ExchangeError(f"query.hello failed on node(s): {errors}")
    identities = {
        node: dict(reply.content["identity"]) for node, reply in hello_result.replies.items()
    }
    exchanges = [_timed("query.hello", 0, 0, 0, hello_result, None)]
    meter = str(config["wire-meter-address"])
    for request_bytes, reply_bytes in plan:
        for repetition in range(int(config["probe-rounds"])):
            content = {"payload": os.urandom(request_bytes), "reply-bytes": reply_bytes}
            before = read_snapshot(meter) if meter else {}
            push_unix_s = time.time()
            result = exchange(grid, _messages(nodes, "query.probe", content), poll_s, timeout_s)
            if errors := result.errors():
                raise ExchangeError(f"query.probe failed on node(s): {errors}")
            _check_sizes(result.replies, request_bytes, reply_bytes)
            record = _timed(
                "query.probe", repetition, request_bytes, reply_bytes, result, push_unix_s
            )
            if meter:
                record["wire"] = difference(read_snapshot(meter), before)
            exchanges.append(record)
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(
        json.dumps({"nodes": identities, "exchanges": exchanges}, indent=1), encoding="utf-8"
    )


def _check_sizes(replies: dict[int, Message], request_bytes: int, reply_bytes: int) -> None:
    """Every node must have received the request's payload and sent the reply's in full."""
    for node, reply in replies.items():
        record = reply.content["probe"]
        got = (int(record["received-bytes"]), len(record["payload"]))
        if got != (request_bytes, reply_bytes):
            raise ExchangeError(
                f"node {node}: received {got[0]} of {request_bytes} request bytes and replied "
                f"{got[1]} of {reply_bytes} bytes"
            )


def parse_probe_plan(text: str) -> list[tuple[int, int]]:
    """Parse "request_bytes:reply_bytes,..." into pairs of non-negative byte counts."""
    plan = []
    for entry in text.split(","):
        parts = entry.strip().split(":")
        try:
            request_bytes, reply_bytes = (int(part) for part in parts)
        except ValueError:
            raise ValueError(
                f"run config probe-plan entry {entry!r} is not 'request_bytes:reply_bytes' "
                "with two integers"
            ) from None
        if request_bytes < 0 or reply_bytes < 0:
            raise ValueError(f"run config probe-plan entry {entry!r} has a negative size")
        plan.append((request_bytes, reply_bytes))
    return plan


def wait_for_nodes(grid: Grid, expected: int, wait_s: float) -> list[int]:
    """The ids of the connected SuperNodes once `expected` of them are; error after wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= expected:
            return nodes
        if time.monotonic() >= deadline:
            raise ExchangeError(
                f"only {len(nodes)} of {expected} expected SuperNodes connected within "
                f"{wait_s:g} s (node ids {nodes}); check the SuperNode logs"
            )
        time.sleep(0.1)


def _messages(nodes: list[int], message_type: str, content: dict | None) -> list[Message]:
    records = RecordDict({"probe": ConfigRecord(content)} if content else {})
    return [Message(records, dst_node_id=node, message_type=message_type) for node in nodes]


def _timed(
    message_type: str,
    repetition: int,
    request_bytes: int,
    reply_bytes: int,
    result: ExchangeResult,
    push_unix_s: float | None,
) -> dict:
    """One exchange's timings as JSON-ready data (node ids as strings)."""
    record = {
        "message_type": message_type,
        "repetition": repetition,
        "request_bytes": request_bytes,
        "reply_bytes": reply_bytes,
        "push_s": result.push_s,
        "total_s": result.total_s,
        "pulls": result.pulls,
        "latency_s": {str(node): seconds for node, seconds in result.latency_s.items()},
    }
    if push_unix_s is not None:
        replies = {node: reply.content["probe"] for node, reply in result.replies.items()}
        record["process_start_after_push_s"] = {
            str(node): float(r["process-start-unix-s"]) - push_unix_s for node, r in replies.items()
        }
        record["handler_after_push_s"] = {
            str(node): float(r["handler-unix-s"]) - push_unix_s for node, r in replies.items()
        }
    return record
