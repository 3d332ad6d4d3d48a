"""The uploads in a terminal's collect reply, opened and counted by the trusted authority.

A collect reply carries the terminal's pending uploads and their post ids, each list
framed (`mailbox.frame`), and the number of uploads still in its outbox. Each upload is
opened (`crypto.UploadOpener`, sender = the terminal's name: sealed for the authority,
in sequence, never replayed), decoded and checked against the run's trajectory shape
(`serialization.decode_trajectory`); a refused one is logged and counted with its code
and post id, and the run goes on. A reply whose framing is broken is logged as a
`bad-reply` event and yields nothing. Every upload's bytes go to the message's byte
record (`metering.accounting.MessageBytes`): the encryption overhead and the plaintext
inside.

Relay uplink (`take_relayed`): an edge's train reply carries the uploads its terminals
handed it, each as (terminal, post id, envelope). An upload the edge names as a terminal
it does not manage is refused (`not-managed`, counted against the edge) unopened. The
others are opened exactly as a direct upload of the named terminal (sender = that name:
an envelope sealed as another terminal is `wrong-sender`, one not sealed with the named
terminal's key fails `authentication`), so the envelope's own authentication says whose
it is, never the edge's word. Each terminal's uploads are opened in the order of their
authenticated sequence numbers, whatever order the edge put them in (a reordering within
a reply is harmless); a sequence number that skips some (uploads the edge dropped, or
held back: those come later and are refused as `replay`) is logged as a `relay-gap`
event and counted. An upload relayed twice is refused the second time (`replay`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fl_crb.federation.authority_records import AuthorityRecords
from fl_crb.federation.crypto import UploadOpener, UploadRejected, overhead_bytes
from fl_crb.federation.mailbox import unframe, unframe_relayed
from fl_crb.federation.metering.accounting import MessageBytes
from fl_crb.federation.serialization import DecodeError, TrajectoryShape, decode_trajectory
from fl_crb.learn.pool import Trajectory


@dataclass
class CollectedUploads:
    """What one collect reply's uploads gave."""

    backlog: int
    """Uploads the terminal still holds in its outbox (not in this reply)."""
    posts: list[int] = field(default_factory=list)
    """The post ids of the uploads processed, accepted or refused (none if the reply was
    broken): the acknowledgement may cover them."""
    accepted: list[Trajectory] = field(default_factory=list)
    """The trajectories opened, decoded and accepted."""
    rejected: int = 0
    """Uploads refused."""
    acks: dict[str, int] = field(default_factory=dict)
    """Relay uplink: per terminal, the highest post id processed (the next ack's)."""
    gaps: dict[str, int] = field(default_factory=dict)
    """Relay uplink: per terminal, sequence numbers skipped by the uploads accepted."""
    not_managed: list[tuple[str, int]] = field(default_factory=list)
    """Relay uplink: (terminal, post id) of the uploads refused as not managed, which the
    edge is told to discard."""


class UploadIntake:
    """Opens, checks and counts the uploads of terminals' collect replies."""

    def __init__(self, opener: UploadOpener, shape: TrajectoryShape, records: AuthorityRecords):
        self.opener, self.shape, self.records = opener, shape, records

    def take(self, name: str, reply, record: MessageBytes) -> CollectedUploads:
        """The uploads in terminal `name`'s collect `reply`; their bytes go to `record`."""
        try:
            uploads = unframe(bytes(reply["uploads"]), f"collect reply of {name}: uploads")
            posts = [int(p) for p in unframe(bytes(reply["post-ids"]), f"{name}: post-ids")]
            if len(posts) != len(uploads):
                raise ValueError(f"{len(uploads)} uploads but {len(posts)} post ids")
        except ValueError as error:
            self.records.event("bad-reply", name, str(error))
            return CollectedUploads(int(reply["backlog"]))
        collected = CollectedUploads(int(reply["backlog"]), posts)
        for post, envelope in zip(posts, uploads, strict=True):
            self._open(name, post, envelope, record, collected)
        return collected

    def _open(
        self,
        name: str,
        post: int,
        envelope: bytes,
        record: MessageBytes,
        collected: CollectedUploads,
        **extra,
    ) -> bool:
        """Open one upload of terminal `name` into `collected`; whether it was accepted."""
        overhead = overhead_bytes(name)
        record.uploads += 1
        record.encryption_overhead_bytes += min(overhead, len(envelope))
        record.up_plaintext_bytes += max(len(envelope) - overhead, 0)
        try:
            opened = self.opener.open(envelope, sender=name)
            collected.accepted.append(decode_trajectory(opened.plaintext, self.shape))
            return True
        except UploadRejected as error:
            collected.rejected += 1
            self.records.refused("upload", error.code, name, error.detail, post=post, **extra)
        except DecodeError as error:
            collected.rejected += 1
            self.records.refused("upload", "invalid-content", name, str(error), post=post, **extra)
        return False

    def take_relayed(
        self, edge: str, reply, managed: set[str], record: MessageBytes
    ) -> CollectedUploads:
        """The uploads edge `edge` relayed in its train `reply` for the terminals it
        `managed`; their bytes go to `record` (see the module docstring)."""
        try:
            items = unframe_relayed(bytes(reply["relayed"]), f"train reply of {edge}: relayed")
        except ValueError as error:
            self.records.event("bad-reply", edge, str(error))
            return CollectedUploads(int(reply["relay-backlog"]))
        collected = CollectedUploads(int(reply["relay-backlog"]))
        by_terminal: dict[str, list[tuple[int, bytes]]] = {}
        for name, post, envelope in items:
            if name in managed:
                by_terminal.setdefault(name, []).append((post, envelope))
                continue
            collected.rejected += 1
            collected.not_managed.append((name, post))
            record.uploads += 1
            self.records.refused(
                "upload",
                "not-managed",
                edge,
                f"{edge} relayed an upload as terminal {name!r} (post {post}), which it does "
                "not manage",
                post=post,
            )
        for name, uploads in by_terminal.items():
            uploads.sort(key=lambda upload: (envelope_sequence(upload[1]), upload[0]))
            for post, envelope in uploads:
                latest = self.opener.sequences().get(name, 0)
                if not self._open(name, post, envelope, record, collected, relayed_by=edge):
                    continue
                skipped = self.opener.sequences()[name] - latest - 1
                if skipped > 0:
                    collected.gaps[name] = collected.gaps.get(name, 0) + skipped
                    self.records.event(
                        "relay-gap",
                        name,
                        f"relayed by {edge}: sequence {latest + skipped + 1} follows {latest}; "
                        f"{skipped} upload(s) in between never arrived (dropped, or held back)",
                        skipped=skipped,
                        relayed_by=edge,
                    )
            collected.posts += [post for post, _ in uploads]
            collected.acks[name] = max(post for post, _ in uploads)
        return collected


_SEQUENCE_AT = 1 + 16 + 1
"""Envelope version byte, run id and terminal-id length: what precedes the terminal id
(`crypto`'s envelope header; the sequence number u64 follows the id)."""


def envelope_sequence(envelope: bytes) -> int:
    """The sequence number an upload envelope's header states (authenticated only once it
    is opened), −1 where it is too short to state one."""
    if len(envelope) < _SEQUENCE_AT:
        return -1
    start = _SEQUENCE_AT + envelope[_SEQUENCE_AT - 1]
    if len(envelope) < start + 8:
        return -1
    return int.from_bytes(envelope[start : start + 8], "big")
