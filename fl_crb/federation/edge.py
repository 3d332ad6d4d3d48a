"""The edge's side of the federation on the edge–terminal link: hand out the learner's weights.

A federated edge server is the runtime's edge server party (`fl_crb.runtime.edge_server`)
given a weights source: this module builds that source and runs the runtime's party with
it, so the runtime never imports the federation. It is started as its own process, in
place of the runtime's edge server, by the federated run (`deploy.federated_run`, through
`local_run.launch_parties`):

    python -m fl_crb.federation.edge CONFIG.json

CONFIG.json is the runtime's `EdgeConfig` with its `federation` settings (`FederatedEdge`:
its learner's mailbox). `MailboxWeights` watches the mailbox's published weights
(`EdgeMailbox.published_weights`, which the edge learner service writes atomically, each
version signed with the edge's key), so each new version goes to the terminals the edge
manages as soon as the learner publishes it, and the newest to each terminal as soon as
it connects (version 0 before the first slot). The envelope travels as it was signed:
each terminal checks the edge's signature and that the version is newer
(`message_auth.WeightsVerifier`, `fl_crb.federation.terminal`). An EdgeConfig without
`federation` runs as the runtime's own edge server does, handing out nothing.
"""

from __future__ import annotations

import os
import sys

from fl_crb.federation.mailbox import EdgeMailbox, signed_weights_version
from fl_crb.runtime import edge_server
from fl_crb.runtime.config import EdgeConfig
from fl_crb.runtime.edge_server import PublishedWeights

MODULE = "fl_crb.federation.edge"
"""This module's path: the federated run starts each edge server party as `python -m MODULE`."""


class MailboxWeights:
    """The signed weights an edge learner publishes in its mailbox, read when they change."""

    def __init__(self, mailbox: EdgeMailbox) -> None:
        self._mailbox = mailbox
        self._signature: tuple[int, int, int] | None = None
        self._newest: PublishedWeights | None = None

    def newest(self) -> PublishedWeights | None:
        """The newest published weights (None before the learner published any); the file
        is read again only when its inode, size or modification time changed."""
        try:
            stat = os.stat(self._mailbox.weights_path)
        except FileNotFoundError:
            return self._newest
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if signature == self._signature:
            return self._newest
        envelope = self._mailbox.published_weights()
        if envelope is None:  # replaced between the look and the read: look again later
            return self._newest
        version = signed_weights_version(envelope)
        self._signature = signature  # a bad file is reported once, not at every look
        if version < 0:
            raise ValueError(
                f"{self._mailbox.weights_path}: {len(envelope)} bytes, not a signed weights "
                "envelope"
            )
        self._newest = PublishedWeights(version, envelope)
        return self._newest


def mailbox_weights(config: EdgeConfig) -> MailboxWeights | None:
    """The weights source of a federated edge server: its learner's mailbox (None for an
    edge config without federation settings)."""
    if config.federation is None:
        return None
    return MailboxWeights(EdgeMailbox(config.federation.mailbox))


def main(argv: list[str]) -> int:
    """Run the runtime's edge server party with its learner's weights as its source."""
    return edge_server.main(argv, mailbox_weights, program=MODULE)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
