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
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fl_crb.federation.authority_records import AuthorityRecords
from fl_crb.federation.crypto import UploadOpener, UploadRejected, overhead_bytes
from fl_crb.federation.mailbox import unframe
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
                self.records.refused("upload", error.code, name, error.detail, post=post)
            except DecodeError as error:
                rejected += 1
                self.records.refused("upload", "invalid-content", name, str(error), post=post)
        return CollectedUploads(int(reply["backlog"]), posts, accepted, rejected)
