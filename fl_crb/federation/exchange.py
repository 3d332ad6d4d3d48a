"""The ServerApp's message exchange: push a batch of messages, pull replies on a short poll.

Flower's `Grid.send_and_receive` sleeps a fixed 3 s between pulls; a round of the
federation is a handful of such exchanges, so that sleep alone would dominate the round.
Both exchanges here push all messages at once and pull every `poll_interval_s` instead,
matching replies by `reply_to_message_id` (error replies for a dead node may come from
another node id, so the source node id is not trusted for matching), and record, for
each message, the time from its push to the pull that returned its reply.

- `exchange` waits for every reply (the probe mode: a missing reply is an error).
- `RoundExchange` keeps messages in flight across the authority's rounds: each round
  waits for its own messages until the round's deadline and goes on without the nodes
  that did not answer; their messages stay in flight, and a reply that comes in a later
  round is returned then, with the round its request was sent in, so it is never taken
  for a reply to the current round. A node with a message in flight is sent nothing
  new (`busy`): Flower's SuperNode handles one message at a time, and a stopped node
  would otherwise find a queue of stale requests when it comes back. Its pushes and
  pulls go to the SuperLink `SUPERLINK_REQUESTS` at a time, each with a share of the
  messages: Flower's Grid sends one request per object of each message (and pulls the
  replies one after the other), so on a busy machine, where each request waits for the
  SuperLink to be scheduled, one serial batch of a round's 29 messages took 10-15 s.

`wait_for_nodes` waits until the expected SuperNodes are connected (the probe mode).
What the authority makes of the rounds a node missed is `participation`'s (and who a
node is, `authority_nodes`').
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

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
    _check_timing(poll_interval_s, timeout_s)
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


def _check_timing(poll_interval_s: float, timeout_s: float) -> None:
    if poll_interval_s <= 0 or timeout_s <= 0:
        raise ValueError(
            f"exchange needs poll_interval_s > 0 and timeout_s > 0, got "
            f"{poll_interval_s} and {timeout_s}"
        )


Context = TypeVar("Context")
"""What the sender keeps with a message until its reply comes (`Sent.context`)."""


@dataclass(frozen=True)
class Sent(Generic[Context]):
    """A message in flight."""

    node: int
    """The Flower node id it was sent to."""
    round: int
    """The round it was sent in."""
    pushed_at: float
    """`time.perf_counter()` at its push."""
    context: Context
    """What its sender needs to read its reply (the node's name, what it was offered)."""
    pushed_unix_s: float = 0.0
    """Wall-clock time at its push (seconds since the epoch), to line it up with what the
    node logs (`benchmarks/round_breakdown.py`)."""
    message_id: str = ""
    """The id the SuperLink gave it (the node's SuperNode logs it when it pulls it)."""


@dataclass(frozen=True)
class Reply(Generic[Context]):
    """A reply, with the message it answers."""

    sent: Sent[Context]
    message: Message
    """The reply: content, or a Flower error (`has_error()`)."""
    latency_s: float
    """Seconds from the request's push to the pull that returned this reply."""
    pulled_unix_s: float = 0.0
    """Wall-clock time when the pull that returned it came back."""


@dataclass
class RoundResult(Generic[Context]):
    """What one round's exchange brought."""

    replies: list[Reply[Context]] = field(default_factory=list)
    """Replies to this round's messages and late replies to earlier rounds', in the order
    pulled (`Reply.sent.round` tells them apart)."""
    unanswered: list[Sent[Context]] = field(default_factory=list)
    """This round's messages with no reply by the deadline; they stay in flight."""
    refused: list[Sent[Context]] = field(default_factory=list)
    """This round's messages the SuperLink did not accept (an unknown or deleted node)."""
    push_s: float = 0.0
    """Seconds `push_messages` took."""
    total_s: float = 0.0
    """Seconds from the push to the last of this round's replies, or to the deadline."""
    pulls: int = 0
    """Number of `pull_messages` calls made."""
    pull_s: float = 0.0
    """Seconds spent inside `pull_messages` (the rest of `total_s` is push and sleeps)."""


SUPERLINK_REQUESTS = 4
"""Pushes or pulls a `RoundExchange` has in flight to the SuperLink at once."""
POLL_BACKOFF_MAX_S = 0.2
"""Longest pause between pulls that bring nothing (the pause doubles from the poll
interval after each empty pull, and falls back to it when a pull brings a reply)."""
MESSAGES_PER_REQUEST_MIN = 4
"""Fewest messages (or message ids) worth a request of their own."""


def _shares(items: list, requests: int) -> list[list]:
    """`items` dealt round-robin into at most `requests` shares of at least
    `MESSAGES_PER_REQUEST_MIN` (one share for few): item i lands in share i % len(shares),
    at position i // len(shares)."""
    count = max(1, min(requests, len(items) // MESSAGES_PER_REQUEST_MIN))
    return [items[first::count] for first in range(count)]


class RoundExchange(Generic[Context]):
    """Messages in flight across rounds, each round waiting for its own until a deadline."""

    def __init__(
        self, grid: Grid, poll_interval_s: float, superlink_requests: int = SUPERLINK_REQUESTS
    ):
        if poll_interval_s <= 0:
            raise ValueError(f"RoundExchange needs poll_interval_s > 0, got {poll_interval_s}")
        if superlink_requests < 1:
            raise ValueError(
                f"RoundExchange needs superlink_requests >= 1, got {superlink_requests}"
            )
        self.grid, self.poll_interval_s = grid, poll_interval_s
        self.superlink_requests = superlink_requests
        self.in_flight: dict[str, Sent[Context]] = {}
        """Message id → the message, until its reply (or Flower's error) is pulled."""
        self._requests = ThreadPoolExecutor(superlink_requests, "superlink-request")

    def _each_share(self, call: Callable[[list], list], items: list) -> list[list]:
        """`call` on each share of `items` (`_shares`), at the same time; their results in
        the shares' order."""
        shares = _shares(items, self.superlink_requests)
        if len(shares) == 1:
            return [list(call(shares[0]))]
        return [list(found) for found in self._requests.map(call, shares)]

    def _push(self, messages: list[Message]) -> list[str]:
        """Each message's id as the SuperLink gave it ("" for one it did not accept)."""
        if not messages:
            return []
        results = self._each_share(self.grid.push_messages, messages)
        ids = [""] * len(messages)
        for first, share_ids in enumerate(results):  # share `first` holds first::count
            for position, message_id in enumerate(share_ids):  # a share refused: no ids
                ids[first + position * len(results)] = message_id or ""
        return ids

    def _pull(self) -> list[Message]:
        """The replies the SuperLink holds for messages in flight."""
        if not self.in_flight:
            return []
        pulled = self._each_share(self.grid.pull_messages, list(self.in_flight))
        return [message for share in pulled for message in share]

    def busy(self) -> dict[int, Sent[Context]]:
        """Node id → its message in flight (send such a node nothing new)."""
        return {sent.node: sent for sent in self.in_flight.values()}

    def round(
        self,
        round_number: int,
        messages: Sequence[tuple[Message, Context]],
        deadline_s: float,
    ) -> RoundResult[Context]:
        """Push `messages` (at most one per node, none to a busy node), then pull replies
        to them and to every message still in flight, until this round's are all in or
        `deadline_s` has passed since the push. With no messages: one pull."""
        _check_timing(self.poll_interval_s, deadline_s)
        nodes = [message.metadata.dst_node_id for message, _ in messages]
        if len(set(nodes)) != len(nodes) or set(nodes) & set(self.busy()):
            raise ExchangeError(
                f"a round sends one message per node and none to a node with one in flight, "
                f"got nodes {nodes} with {sorted(self.busy())} in flight"
            )
        result: RoundResult[Context] = RoundResult()
        start, start_unix_s = time.perf_counter(), time.time()
        ids = self._push([message for message, _ in messages])
        result.push_s = time.perf_counter() - start
        ours = set()
        for message_id, (message, context) in zip(ids, messages, strict=True):
            node = message.metadata.dst_node_id
            sent = Sent(node, round_number, start, context, start_unix_s, message_id)
            if not message_id:
                result.refused.append(sent)
                continue
            self.in_flight[message_id] = sent
            ours.add(message_id)
        deadline = start + deadline_s
        pause_s = self.poll_interval_s
        while True:
            before_pull = time.perf_counter()
            pulled = self._pull()
            result.pulls += 1
            now, now_unix_s = time.perf_counter(), time.time()
            result.pull_s += now - before_pull
            for message in pulled:
                message_id = message.metadata.reply_to_message_id
                sent = self.in_flight.pop(message_id, None)
                if sent is not None:
                    latency_s = now - sent.pushed_at
                    result.replies.append(Reply(sent, message, latency_s, now_unix_s))
                    ours.discard(message_id)
            if not ours or now >= deadline:
                break
            # replies come: look again soon; none: look less often (a SuperLink serving
            # many nodes answers every pull, empty or not, in its turn)
            pause_s = self.poll_interval_s if pulled else min(2 * pause_s, POLL_BACKOFF_MAX_S)
            time.sleep(min(pause_s, max(deadline - now, 0.0)))
        result.unanswered = [self.in_flight[message_id] for message_id in ours]
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
