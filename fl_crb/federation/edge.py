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

With the relay uplink (`FederatedEdge.uplink`) the server also keeps its terminals'
sealed uploads in the mailbox until the authority acknowledges them, and passes the
acknowledgements on (`relay.EdgeRelayStore`, `relay_store`).

`WeightsReceipts` is the other end of this link, in the terminal's mailbox: the newest
version the terminal accepted over it, which its `collect` handler reports, so the
authority leaves out of Flower's path the weights the edge link delivered already (it
relays only the versions a terminal does not hold, e.g. while its edge link is down);
and, for such a version, the authority's notice that it would have relayed it, which
the terminal reads for the relay's reference age. Light (the runtime's edge server is
imported only to run it): the ClientApp handlers read the receipts.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fl_crb.federation.mailbox import EdgeMailbox, signed_weights_version

if TYPE_CHECKING:
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
        from fl_crb.runtime.edge_server import PublishedWeights

        self._newest = PublishedWeights(version, envelope)
        return self._newest


def mailbox_weights(config: EdgeConfig) -> MailboxWeights | None:
    """The weights source of a federated edge server: its learner's mailbox (None for an
    edge config without federation settings)."""
    if config.federation is None:
        return None
    return MailboxWeights(EdgeMailbox(config.federation.mailbox))


class WeightsReceipts:
    """A terminal's mailbox notes on weights: the newest version its edge link brought
    (written by the terminal party, read by the `collect` handler), and the newest
    version the authority would have relayed but left out because the terminal held it
    (written by the handler, read by the party). Each is one small file, replaced
    atomically but not synced to disk (a hint: lost, the weights are only sent again);
    a missing or unreadable one reads as −1 (none)."""

    EDGE_LINK_FILE = "edge-link-version"
    RELAY_NOTICE_FILE = "relay-notice-version"

    def __init__(self, mailbox_directory: str | Path) -> None:
        self.edge_link_path = Path(mailbox_directory) / self.EDGE_LINK_FILE
        self.relay_notice_path = Path(mailbox_directory) / self.RELAY_NOTICE_FILE

    def note_edge_link(self, version: int) -> None:
        """The terminal accepted `version` over its edge link."""
        _write_version(self.edge_link_path, version)

    def edge_link_version(self) -> int:
        """The newest version the terminal accepted over its edge link (−1: none)."""
        return _read_version(self.edge_link_path)

    def note_relay_notice(self, version: int) -> None:
        """The authority would have relayed `version`; the terminal held it already."""
        if version > self.relay_notice_version():
            _write_version(self.relay_notice_path, version)

    def relay_notice_version(self) -> int:
        """The newest version the authority left out for this terminal (−1: none)."""
        return _read_version(self.relay_notice_path)


def _write_version(path: Path, version: int) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(str(version), encoding="ascii")
    os.replace(partial, path)


def _read_version(path: Path) -> int:
    try:
        return int(path.read_text(encoding="ascii"))
    except (OSError, ValueError):
        return -1


def main(argv: list[str]) -> int:
    """Run the runtime's edge server party with its learner's weights as its source (and,
    with the relay uplink, its mailbox's relay store for its terminals' uploads)."""
    from fl_crb.federation.relay import relay_store
    from fl_crb.runtime import edge_server

    return edge_server.main(argv, mailbox_weights, program=MODULE, stores=relay_store)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
