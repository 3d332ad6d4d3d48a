"""The node handlers: the ClientApp every SuperNode runs, terminal and edge alike.

Flower starts a fresh `flwr-clientapp` process for every message a SuperNode receives, so
these handlers stay thin: they import only Flower, the standard library and the mailbox,
read what the message carries and reply. A node's role and name come from its node
config (`flower-supernode --node-config 'role="terminal" name="t3"'`).

Message types (`query.<action>`), ServerApp (`server_app`) → node, each answered by one
reply:

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
  learner published last (the learner trains in its own process, `edge_learner_service`,
  so they are one round behind these batches) and the inbox backlog.

The mailbox directory (`mailbox`) bridges a handler and its node's long-lived party:
node config `mailbox="/abs/path"`, else the run config's `mailbox-root`/<node name>.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fl_crb.federation.mailbox import EdgeMailbox, TerminalMailbox, frame, weights_version

client_app = ClientApp()


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
    mailbox.acknowledge(int(request["ack"]))  # the authority holds these: drop them
    weights = bytes(request["weights"])
    if weights:  # newer weights of the managing edge: leave them for the terminal party
        mailbox.deliver_weights(weights)
    pending = mailbox.pending(int(request["limit"]))  # sealed uploads not yet acknowledged
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
    if int(request["batch-count"]):  # the learner service trains on them in its own time
        mailbox.drop_batches(int(request["round"]), bytes(request["batches"]))
    weights = mailbox.published_weights() or b""  # what it published after earlier rounds
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
