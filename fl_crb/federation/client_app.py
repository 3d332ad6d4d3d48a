"""The node handlers: the ClientApp every SuperNode runs, terminal and edge alike.

Flower starts a fresh `flwr-clientapp` process for every message a SuperNode receives, so
these handlers stay thin: they import only Flower, the standard library and the mailbox
(and a terminal's `collect`, its key bundle), read what the message carries and reply.
A node's role and name come from its node config (`flower-supernode --node-config
'role="terminal" name="t3"'`); a terminal's node config also names its key bundle
(`bundle`, DIR/<host>/ of `fl-crb keys`) and the run's id (`run-id`, 32 hex digits).
Whatever a handler must remember between messages (the latest ack and weights version
it accepted, what it refused) lives in the mailbox (`handler.json`).

Message types (`query.<action>`), ServerApp (`server_app`) → node, each answered by one
reply:

- `query.hello`: the node replies with its role and name. With SuperNode authentication
  the authority knows each node by the key it registered with and only checks this
  claim; with `--insecure` the claim is all it has. (Test only: node config
  `claimed-name` makes a node claim another name, as an impostor would.)
- `query.probe`: carries `request-bytes` of payload and asks for `reply-bytes` back; the
  reply carries the time the handler ran and the time its process started. This is
  Flower's bare message round trip, the reference the federated rounds are measured by.
- `query.collect` (terminals): carries the authority's cumulative acknowledgement of
  uploads (`ack`: a post id in an envelope MACed for this terminal,
  `message_auth.AckVerifier`), at most how many uploads to return (`limit`), and, when
  the terminal's managing edge has newer weights than the terminal holds, that edge's
  signed `weights` (`message_auth.WeightsVerifier`), or, when the terminal's edge link
  brought them, only their version (`relay-notice`). The handler deletes the
  acknowledged uploads from the outbox only if the ack verifies, stores the weights for
  the terminal party only if they verify and are newer than what it holds by either path
  (each refusal is counted by kind and code and the rest of the message is still
  served), notes a notice for the party (`edge.WeightsReceipts`), and replies with the
  pending sealed uploads, their post ids, the version of the relayed weights it holds
  and the newest version its edge link brought (`edge-link-version`). Collect and train
  replies also carry when the ClientApp process started and its handler ran
  (`TIMING_KEYS`).
- `query.train` (edges): carries familiarity-sampled `batches`, sealed for this edge, for
  its learner; the handler drops the envelope in the edge's mailbox inbox (the learner
  opens it, `edge_learner_service`) and replies with the signed weights the learner
  published last (it trains in its own process, so they are one round behind these
  batches) and the inbox backlog. With the relay uplink the train message also carries
  the authority's newest acknowledgement for each terminal the edge manages
  (`relay-acks`: terminal, the post id it covers, its authenticated envelope), the
  uploads the authority refused as relayed for a terminal the edge does not manage
  (`relay-refused`: terminal, post id) and at most how many relayed uploads to return
  (`relay-limit`): the handler records the acks in the edge's relay store
  (`mailbox.RelayStore`: the edge server passes them on, the terminal checks them),
  deletes the uploads they cover and those refused, then replies with the
  uploads the store still keeps (`relayed`: terminal, post id, sealed envelope; the edge
  cannot read them) and how many more wait (`relay-backlog`).

The mailbox directory (`mailbox`) bridges a handler and its node's long-lived party:
node config `mailbox="/abs/path"`, else the run config's `mailbox-root`/<node name>.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fl_crb.federation.edge import WeightsReceipts
from fl_crb.federation.mailbox import (
    EdgeMailbox,
    RelayStore,
    TerminalMailbox,
    count_refusal,
    frame,
    frame_relayed,
    signed_weights_version,
    unframe_relayed,
)

client_app = ClientApp()


@client_app.query("hello")
def hello(message: Message, context: Context) -> Message:
    """Reply with this node's role and name from its node config."""
    name = context.node_config.get("claimed-name") or context.node_config.get("name", "")
    identity = ConfigRecord({"role": str(context.node_config.get("role", "")), "name": str(name)})
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
    """Terminal: drop acknowledged uploads and store delivered weights, each only if it
    verifies; return pending uploads."""
    from fl_crb.federation.crypto import MessageRejected
    from fl_crb.federation.host_bundle import HostBundle

    handler_unix_s = time.time()
    request = message.content["collect"]
    mailbox = TerminalMailbox(node_mailbox(context))
    keys = HostBundle.load(str(context.node_config["bundle"]), role="terminal").terminal()
    run_id = bytes.fromhex(str(context.node_config["run-id"]))
    state = mailbox.handler_state()
    acks = keys.ack_verifier(run_id, state["ack_sequence"], state["ack"])
    try:
        ack = acks.verify(bytes(request["ack"]))
        mailbox.acknowledge(ack.ack)  # the authority holds these: drop them
        state["ack_sequence"], state["ack"] = ack.sequence, ack.ack
    except MessageRejected as error:  # keep the uploads: they go again until a true ack
        count_refusal(state["refusals"], error.kind, error.code)
    receipts = WeightsReceipts(node_mailbox(context))
    if int(request.get("relay-notice", -1)) >= 0:  # its edge link brought them already
        receipts.note_relay_notice(int(request["relay-notice"]))
    envelope = bytes(request["weights"])
    if envelope:  # newer weights of the managing edge: leave them for the terminal party
        held = max(state["weights_version"], receipts.edge_link_version())  # by either path
        weights = keys.weights_verifier(run_id, held)
        try:
            state["weights_version"] = weights.verify(envelope).version
            mailbox.deliver_weights(envelope)
        except MessageRejected as error:
            count_refusal(state["refusals"], error.kind, error.code)
    mailbox.save_handler_state(state)
    pending = mailbox.pending(int(request["limit"]))  # sealed uploads not yet acknowledged
    reply = ConfigRecord(
        {
            "uploads": frame([data for _, data in pending]),
            "post-ids": frame([str(post).encode() for post, _ in pending]),
            "held-version": mailbox.held_weights_version(),
            "edge-link-version": receipts.edge_link_version(),
            "backlog": mailbox.backlog() - len(pending),
        }
    )
    return Message(RecordDict({"collect": _timed(reply, handler_unix_s)}), reply_to=message)


@client_app.query("train")
def train(message: Message, context: Context) -> Message:
    """Edge: leave the sealed batches for the learner, reply with its newest signed weights."""
    handler_unix_s = time.time()
    request = message.content["train"]
    mailbox = EdgeMailbox(node_mailbox(context))
    sealed = bytes(request["batches"])
    if sealed:  # the learner service opens them and trains in its own time
        mailbox.drop_batches(int(request["round"]), sealed)
    weights = mailbox.published_weights() or b""  # what it published after earlier rounds
    reply = ConfigRecord(
        {
            "weights": weights,
            "version": signed_weights_version(weights),
            "backlog": len(mailbox.waiting()),
        }
    )
    if int(request.get("relay-limit", -1)) >= 0:  # the relay uplink: carry the uploads
        store = RelayStore(mailbox.directory)
        acks = unframe_relayed(bytes(request["relay-acks"]), "train: relay-acks")
        store.acknowledge({name: (post, blob) for name, post, blob in acks})
        refused = unframe_relayed(bytes(request.get("relay-refused", b"")) or _NONE, "refused")
        for name, post, _ in refused:  # uploads the authority will not take from this edge
            store.discard(name, post)
        relayed = store.pending(int(request["relay-limit"]))
        reply["relayed"] = frame_relayed(relayed)
        reply["relay-backlog"] = store.backlog() - len(relayed)
    return Message(RecordDict({"train": _timed(reply, handler_unix_s)}), reply_to=message)


_NONE = frame([])
"""An empty framed list."""
TIMING_KEYS = ("process-start-unix-s", "handler-unix-s", "handler-end-unix-s")
"""The timestamps a collect or train reply carries (wall clock, seconds since the epoch):
when its ClientApp process started, when the handler began and when it finished."""


def _timed(reply: ConfigRecord, handler_unix_s: float) -> ConfigRecord:
    """`reply` with its `TIMING_KEYS`, for the authority's per-message timings
    (`benchmarks/round_breakdown.py`); in the reply's own record, as every record is one
    more object for the authority to pull from the SuperLink."""
    stamps = (_process_start_unix_s(), handler_unix_s, time.time())
    reply.update(dict(zip(TIMING_KEYS, stamps, strict=True)))
    return reply


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
