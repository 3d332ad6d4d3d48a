"""The relay uplink's federated ends: a terminal's outbox handed to its edge, the edge's store.

With `--uplink relay` a terminal runs no Flower SuperNode. Its sealed uploads (the very
envelopes it posts to its mailbox outbox in the direct uplink, sealed for the authority:
the edge cannot read them) go to its managing edge server over their runtime connection
(`fl_crb.runtime.upload_relay`), and the edge's SuperNode carries them to the authority in
its `train` reply (`client_app`), one message per edge per round. The authority opens
each exactly as it opens a direct upload, attributed by the envelope's own authentication
to the terminal that sealed it, and only for terminals the relaying edge manages
(`authority_uploads.UploadIntake.take_relayed`).

- `TerminalRelayOutbox` (the terminal party's `UploadOutbox`): hands over what the
  terminal posts, `RELAY_HANDOVER_UPLOADS` at a time (or all it holds once the oldest
  has waited `RELAY_HANDOVER_WAIT_S`, and at the run's end), its whole outbox again on
  every new connection, and checks each
  acknowledgement its edge passes on (`message_auth.AckVerifier`, state in the
  mailbox's handler.json as the `collect` handler keeps it in the direct uplink); only
  a valid one deletes uploads from the outbox. An exact copy of the acknowledgement
  accepted last (the edge sends the newest again on reconnection) is counted apart, as
  no attack; any other refusal is counted by kind and code.
- `EdgeRelayStore` (the edge server's `UploadStore`): keeps each upload in the edge's
  mailbox (`mailbox.RelayStore`: atomic, synced writes) before the server answers
  STORED, and reads back the acknowledgements the `train` handler records there.

Test only: `EdgeRelayStore` can be told to misbehave as a relaying edge might
(`FederatedEdge.relay_faults`, "KIND@K,...", at the K-th new upload it takes):
`drop` answers STORED but keeps nothing; `duplicate` keeps it twice (relayed twice);
`reorder` holds it back and keeps it with the same terminal's next upload, their post
ids swapped (relayed out of order); `foreign:VICTIM` also keeps it as an upload of
terminal VICTIM (one it does not manage).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

from fl_crb.federation.mailbox import (
    HANDLER_STATE,
    RelayStore,
    TerminalMailbox,
    UploadPoster,
    count_refusal,
    read_state,
)
from fl_crb.runtime.config import RELAY_HANDOVER_UPLOADS, EdgeConfig

log = logging.getLogger(__name__)

ACK_DIGEST = "relay-ack-sha256"
"""handler.json key of the acknowledgement a relaying terminal accepted last (its edge
sends it again on every reconnection: a duplicate, not a replay)."""
RELAY_FAULT_KINDS = ("drop", "duplicate", "reorder", "foreign")
"""What a test can make a relaying edge do wrong (see `parse_relay_faults`)."""


RELAY_HANDOVER_WAIT_S = 60.0
"""The longest a relaying terminal holds an upload back to gather a hand-over (at the
paper's load 4 uploads take about 28 s): the authority's pool is never more than this
behind a terminal that has little to say."""


class TerminalRelayOutbox:
    """A federated terminal's outbox as the relay uplink hands it to its edge."""

    def __init__(
        self,
        mailbox: TerminalMailbox,
        poster: UploadPoster,
        keys,
        run_id: bytes,
        handover_uploads: int = RELAY_HANDOVER_UPLOADS,
        handover_wait_s: float = RELAY_HANDOVER_WAIT_S,
    ):
        self._mailbox = mailbox
        self._poster = poster
        poster.recent = []
        self._handover_uploads = handover_uploads
        self._handover_wait_s = handover_wait_s
        self._held: list[tuple[int, bytes]] = []
        """Posted uploads gathered for the next hand-over, oldest first."""
        self._held_since = 0.0
        """time.monotonic() when the oldest held upload was posted."""
        state = mailbox.handler_state()
        self._state = state
        self._verifier = keys.ack_verifier(run_id, state["ack_sequence"], state["ack"])
        saved = read_state(mailbox.directory / HANDLER_STATE).get(ACK_DIGEST, "")
        self._last_ack_digest = bytes.fromhex(saved)
        """SHA-256 of the acknowledgement accepted last (kept across a restart)."""
        self.acks_accepted = 0
        self.ack_duplicates = 0

    def unacknowledged(self) -> list[tuple[int, bytes]]:
        self._poster.recent, self._held = [], []  # all of them are here
        return self._mailbox.pending(self._mailbox.backlog() + 1)

    def posted_since(self, final: bool = False) -> list[tuple[int, bytes]]:
        recent, self._poster.recent = self._poster.recent or [], []
        if recent and not self._held:
            self._held_since = time.monotonic()
        self._held += recent
        waited = time.monotonic() - self._held_since
        if (
            final
            or len(self._held) >= self._handover_uploads
            or (self._held and waited >= self._handover_wait_s)
        ):
            handed, self._held = self._held, []
            return handed
        return []

    def ack_arrived(self, blob: bytes) -> None:
        """Delete the acknowledged uploads if `blob` verifies (this terminal's, fresh, from
        the authority); count it otherwise. The outbox keeps what no valid ack covers."""
        from fl_crb.federation.crypto import MessageRejected

        digest = hashlib.sha256(blob).digest()
        if digest == self._last_ack_digest:
            self.ack_duplicates += 1
            return
        state = self._state
        try:
            ack = self._verifier.verify(blob)
        except MessageRejected as error:
            log.warning("acknowledgement refused: %s", error)
            count_refusal(state["refusals"], error.kind, error.code)
            self._mailbox.save_handler_state(state)
            return
        self._last_ack_digest = digest
        self.acks_accepted += 1
        self._mailbox.acknowledge(ack.ack)  # the authority holds these: drop them
        state["ack_sequence"], state["ack"] = ack.sequence, ack.ack
        state[ACK_DIGEST] = digest.hex()
        self._mailbox.save_handler_state(state)

    def summary(self) -> dict[str, int]:
        return {
            "acks_accepted": self.acks_accepted,
            "ack_duplicates": self.ack_duplicates,
            "outbox_at_end": self._mailbox.backlog(),
        }


def parse_relay_faults(text: str) -> dict[int, tuple[str, ...]]:
    """Relay faults "KIND@K,..." as {K: kinds}: at the edge's K-th new upload (from 1).
    `foreign` names its victim: "foreign:t5@K"."""
    faults: dict[int, tuple[str, ...]] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        kind, _, where = entry.partition("@")
        base, _, victim = kind.partition(":")
        if (
            base not in RELAY_FAULT_KINDS
            or bool(victim) != (base == "foreign")
            or not where.isdigit()
            or int(where) < 1
        ):
            raise ValueError(
                f"relay fault {entry!r}: expected KIND@K with KIND one of {RELAY_FAULT_KINDS} "
                "(foreign with its victim: foreign:t5@K) and K >= 1 (the edge's K-th new upload)"
            )
        faults[int(where)] = (*faults.get(int(where), ()), kind)
    return faults


class EdgeRelayStore:
    """An edge server's store of its terminals' uploads, in its mailbox (`RelayStore`)."""

    def __init__(self, mailbox: str | Path, terminal_names: list[str], faults: str = ""):
        self._store = RelayStore(mailbox)
        self._names = terminal_names
        self._index = {name: d for d, name in enumerate(terminal_names)}
        self._faults = parse_relay_faults(faults)
        self._signature: tuple[int, int, int] | None = None
        self._acks: dict[int, bytes] = {}
        self._held: dict[int, tuple[int, bytes]] = {}
        """Test faults: per terminal, an upload held back to be reordered."""
        self.taken = 0
        """New uploads taken (kept, or dropped by a test fault)."""
        self.faults_injected: dict[str, int] = {}

    def keep(self, terminal: int, post_id: int, blob: bytes) -> bool:
        name = self._names[terminal]
        if post_id <= self._store.acks().get(name, (0, b""))[0]:
            return False
        if not self._faults:
            kept = self._store.keep(name, post_id, blob)
            self.taken += kept
            return kept
        return self._keep_with_faults(name, terminal, post_id, blob)

    def _keep_with_faults(self, name: str, terminal: int, post_id: int, blob: bytes) -> bool:
        held = self._held.get(terminal)
        if held is not None and held[0] == post_id:  # sent again: still held back
            return True
        if held is not None:  # the next one came: keep both, their post ids swapped
            del self._held[terminal]
            self._store.keep(name, held[0], blob)
            self._store.keep(name, post_id, held[1])
            return True
        if self._store.holds(name, post_id):
            return False
        self.taken += 1
        kinds = self._faults.get(self.taken, ())
        for kind in kinds:
            base = kind.partition(":")[0]
            self.faults_injected[base] = self.faults_injected.get(base, 0) + 1
            if kind.startswith("foreign:"):
                self._store.keep(kind.partition(":")[2], post_id, blob)
        if "drop" in kinds:
            return True  # answered STORED, kept nowhere
        if "reorder" in kinds:
            self._held[terminal] = (post_id, blob)
            return True
        kept = self._store.keep(name, post_id, blob)
        if "duplicate" in kinds:
            self._store.keep(name, post_id, blob, copy=1)
        return kept

    def acks(self) -> dict[int, bytes]:
        try:
            stat = os.stat(self._store.acks_path)
        except FileNotFoundError:
            return self._acks
        signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if signature != self._signature:
            self._signature = signature
            self._acks = {
                self._index[name]: blob
                for name, (_, blob) in self._store.acks().items()
                if name in self._index
            }
        return self._acks

    def summary(self) -> dict[str, object]:
        return {
            "taken": self.taken,
            "backlog_at_end": self._store.backlog(),
            "test_faults_injected": self.faults_injected,
        }


def relay_store(config: EdgeConfig) -> EdgeRelayStore | None:
    """The upload store of a federated edge server in the relay uplink (None otherwise)."""
    federation = config.federation
    if federation is None or federation.uplink != "relay":
        return None
    names = list(config.run.topology().terminal_names)
    return EdgeRelayStore(federation.mailbox, names, federation.relay_faults)
