"""The trusted authority's ServerApp: the Flower component `flwr run` starts on the SuperLink.

The ServerApp's behaviour is chosen by the run config's `mode`: `probe` says hello to
the expected nodes, then runs the probe plan (Flower's bare message round trip, answered
by the node handlers of `client_app`) and writes the timings to `result-path` as JSON;
`authority` runs the trusted authority's rounds (`authority`, imported only then: it
needs numpy and the pool, which probe mode never loads).

Every run-config key and its default is in `RUN_CONFIG_DEFAULTS`; the app project that
`flwr run` packages (`deploy.app_project`) declares exactly those keys.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from fl_crb.federation.exchange import ExchangeError, ExchangeResult, exchange, wait_for_nodes
from fl_crb.federation.metering.wire_meter import difference, read_snapshot

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
    "uplink": "direct",
}
"""Every run-config key with its default; `flwr run --run-config` may only override these.

mode: what the ServerApp does (one of `MODES`). expected-nodes: SuperNodes to wait
for. node-wait-s: how long to wait for them. poll-interval-s: seconds between pulls.
exchange-timeout-s: give up on missing replies after this long. probe-rounds: repetitions
of each plan entry. probe-plan: comma-separated "request_bytes:reply_bytes" entries.
result-path: the JSON file the ServerApp writes (required). wire-meter-address: a
`WireMeter`'s control address ("host:port"); when set, each exchange records the wire
bytes per node and endpoint. authority-config: the JSON file of the authority's setup
(`authority_config.AuthorityConfig`; mode "authority"). mailbox-root: folder holding one mailbox
per node name, for nodes whose node config names no `mailbox`. uplink: how the
terminals' uploads reach the authority (mode "authority"): "direct" (each terminal's own
SuperNode) or "relay" (carried by its managing edge's SuperNode, `fl_crb.federation.relay`).
"""
MODES = ("probe", "authority")
"""What the ServerApp can do (run config `mode`)."""

server_app = ServerApp()


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
