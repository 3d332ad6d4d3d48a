"""The ServerApp's message exchange: push a batch of messages, pull replies on a short poll.

Flower's `Grid.send_and_receive` sleeps a fixed 3 s between pulls; a round of the
federation is a handful of such exchanges, so that sleep alone would dominate the round.
`exchange` pushes all messages at once and pulls every `poll_interval_s` instead, matching
replies by `reply_to_message_id` (error replies for a dead node may come from another
node id, so the source node id is not trusted for matching). It records, for each
destination node, the time from the push to the pull that returned its reply.
`wait_for_nodes` waits until the expected SuperNodes are connected, before the first
exchange.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from flwr.app import Message
from flwr.serverapp import Grid


class ExchangeError(RuntimeError):
    """The SuperLink refused a message, or replies did not all arrive in time."""


@dataclass
class ExchangeResult:
    """Replies of one exchange, keyed by the node id each request was sent to."""

    replies: dict[int, Message] = field(default_factory=dict)
    """Reply per destination node (content or Flower error: check `has_error()`)."""
    latency_s: dict[int, float] = field(default_factory=dict)
    """Seconds from the push to the pull that returned that node's reply."""
    push_s: float = 0.0
    """Seconds `push_messages` took (uploading every message's content to the SuperLink)."""
    total_s: float = 0.0
    """Seconds from the start of the push to the last reply."""
    pulls: int = 0
    """Number of `pull_messages` calls made."""

    def errors(self) -> dict[int, str]:
        """Nodes whose reply is a Flower error, with the error's reason."""
        return {
            node: f"code {reply.error.code}: {reply.error.reason}"
            for node, reply in self.replies.items()
            if reply.has_error()
        }


def exchange(
    grid: Grid,
    messages: Sequence[Message],
    poll_interval_s: float,
    timeout_s: float,
) -> ExchangeResult:
    """Push `messages` (one per destination node) and pull until every reply is in.

    Raises `ExchangeError` if the SuperLink rejects a message, if two messages go to the
    same node (replies are keyed by node), or if replies are missing after `timeout_s`.
    """
    if poll_interval_s <= 0 or timeout_s <= 0:
        raise ValueError(
            f"exchange needs poll_interval_s > 0 and timeout_s > 0, got "
            f"{poll_interval_s} and {timeout_s}"
        )
    destinations = [message.metadata.dst_node_id for message in messages]
    if len(set(destinations)) != len(destinations):
        raise ExchangeError(f"exchange sends one message per node, got nodes {destinations}")
    result = ExchangeResult()
    start = time.perf_counter()
    message_ids = list(grid.push_messages(list(messages)))
    result.push_s = time.perf_counter() - start
    if len(message_ids) != len(destinations) or any(not mid for mid in message_ids):
        raise ExchangeError(
            f"the SuperLink accepted {sum(1 for mid in message_ids if mid)} of "
            f"{len(destinations)} messages (nodes {destinations}); see the ServerApp log"
        )
    pending = dict(zip(message_ids, destinations, strict=True))
    deadline = start + timeout_s
    while pending:
        replies = list(grid.pull_messages(list(pending)))
        result.pulls += 1
        now = time.perf_counter()
        for reply in replies:
            node = pending.pop(reply.metadata.reply_to_message_id, None)
            if node is not None:
                result.replies[node] = reply
                result.latency_s[node] = now - start
        if not pending:
            break
        if now >= deadline:
            raise ExchangeError(
                f"no reply after {timeout_s:g} s from node(s) {sorted(pending.values())}"
            )
        time.sleep(min(poll_interval_s, max(deadline - now, 0.0)))
    result.total_s = time.perf_counter() - start
    return result


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
