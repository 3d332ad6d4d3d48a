"""The relay uplink's two ends in the runtime: what a terminal hands its edge, what an edge keeps.

In the relay uplink (`--uplink relay`) a terminal runs no node of its own towards the
cloud: it hands each upload to its managing edge over the connection it already holds
(UPLOAD frames, `protocol`), the edge keeps it durably and answers STORED, and the
acknowledgements the edge is given for the terminal come back as ACK frames. The runtime
moves these blobs without opening them; the layer above supplies both ends (the
federation's sealed envelopes and authenticated acks, `fl_crb.federation.relay`):

- `UploadOutbox`, the terminal's side (its decider offers one, `RelaysUploads`): the
  uploads to hand over, and the acknowledgements to check;
- `UploadStore`, the edge's side: keeps what its managed terminals hand it, and gives
  the newest acknowledgement of each.

A terminal sends its whole unacknowledged outbox again on every new connection to its
edge (an edge keeps a post id once, and drops one it was told is acknowledged already),
so an upload the edge never stored, or lost, goes again; at its end it waits (at most
`RELAY_DRAIN_S`) until the edge has answered STORED for every upload it handed over.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

RELAY_DRAIN_S = 5.0
"""After its last slot, how long a relaying terminal waits for its edge's STORED answers
to the uploads it handed over (the edge's node carries them on after the terminal ends)."""


class UploadOutbox(Protocol):
    """A terminal's uploads for the relay uplink (supplied by the layer that seals them)."""

    def unacknowledged(self) -> list[tuple[int, bytes]]:
        """Every upload not acknowledged yet, oldest first, as (post id, blob): what a
        new connection to the edge carries first."""
        ...

    def posted_since(self, final: bool = False) -> list[tuple[int, bytes]]:
        """The uploads to hand over now, of those posted since the last call (or since
        `unacknowledged`), oldest first: the outbox may hold a few back to hand them over
        together (fewer segments and acknowledgements on the terminal's link); `final`
        (the run's end) releases all it holds."""
        ...

    def ack_arrived(self, blob: bytes) -> None:
        """The edge passed on an acknowledgement: check it, and drop what a valid one
        acknowledges (an invalid one is counted, never trusted)."""
        ...


@runtime_checkable
class RelaysUploads(Protocol):
    """A decider whose uploads go through the terminal's managing edge."""

    def upload_outbox(self) -> UploadOutbox | None:
        """Its outbox for the relay uplink; None when its uploads go another way."""
        ...


class UploadStore(Protocol):
    """Where an edge keeps its terminals' uploads until they are acknowledged (supplied by
    the layer that carries them on, `fl_crb.federation.relay`)."""

    def keep(self, terminal: int, post_id: int, blob: bytes) -> bool:
        """Keep one upload of terminal `terminal` (0-based) durably before returning;
        False when it needs no keeping (acknowledged already, or kept before)."""
        ...

    def acks(self) -> dict[int, bytes]:
        """The newest acknowledgement for each terminal that has one; cheap when nothing
        changed. May raise OSError or ValueError (the edge logs it and looks again)."""
        ...

    def summary(self) -> dict[str, object]:
        """Counts for the edge's summary."""
        ...
