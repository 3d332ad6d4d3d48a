"""A party's clock offset against the authority's, measured as NTP does (four timestamps).

One sample: the party notes t1 as it sends a time request, the authority t2 as it
receives it and t3 as it answers, the party t4 as the answer arrives. With a symmetric
path, the authority's clock is ahead of the party's by

    offset = ((t2 − t1) + (t3 − t4)) / 2,   its uncertainty at most delay / 2,
    delay  = (t4 − t1) − (t3 − t2)          (the round trip's time on the network).

Of a few samples the one with the least delay is kept (queueing only ever adds delay
and asymmetry). The slotted runtime needs every party's clock within a small part of a
slot of the others' (NTP or PTP on real machines): the authority flags offsets above
`OFFSET_LIMIT_SLOTS` of a slot.
"""

from __future__ import annotations

from dataclasses import dataclass

OFFSET_LIMIT_SLOTS = 0.1
"""An offset above this fraction of a slot is flagged in the authority's summary."""


@dataclass(frozen=True)
class TimeSample:
    """One time request's four Unix times, in seconds."""

    sent_s: float
    """t1: the party's clock as it sent the request."""
    received_s: float
    """t2: the authority's clock as the request arrived."""
    answered_s: float
    """t3: the authority's clock as it answered."""
    returned_s: float
    """t4: the party's clock as the answer arrived."""

    @property
    def offset_s(self) -> float:
        """How far the authority's clock is ahead of the party's."""
        return ((self.received_s - self.sent_s) + (self.answered_s - self.returned_s)) / 2

    @property
    def delay_s(self) -> float:
        """The round trip's time on the network (the authority's own time taken out)."""
        return (self.returned_s - self.sent_s) - (self.answered_s - self.received_s)


@dataclass(frozen=True)
class ClockOffset:
    """A party's measured offset: what it reports in its hello."""

    offset_s: float
    """The authority's clock minus the party's."""
    delay_s: float
    """Round trip of the sample kept; the offset is known to within half of it."""
    samples: int
    """Samples taken."""


def best_offset(samples: list[TimeSample]) -> ClockOffset:
    """The offset of the sample with the least delay; ValueError without samples."""
    if not samples:
        raise ValueError("no time samples: the clock offset needs at least one")
    best = min(samples, key=lambda sample: sample.delay_s)
    return ClockOffset(best.offset_s, best.delay_s, len(samples))


def flagged(offset_s: float, slot_s: float) -> bool:
    """Whether an offset is too large for the slot clock (above a tenth of a slot)."""
    return abs(offset_s) > OFFSET_LIMIT_SLOTS * slot_s
