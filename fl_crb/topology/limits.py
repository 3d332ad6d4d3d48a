"""The range every number in a topology file may take, and why; and the size of the file.

A value outside its range is not another experiment but a mistake (a unit typed wrong, an
exponent lost) or a deployment the programs cannot carry out (more terminals than a
machine holds, a slot shorter than a timer can keep). Each `Range` states its reason, and
the error for a value outside it quotes the reason, so that whoever meets the bound knows
whether to fix the file or to question the bound.

The loader (`fl_crb.topology.load`) checks every field against its range; `Topology`
itself checks the terminal count again, because `Topology.with_overrides` changes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fl_crb.topology.units import (
    BANDWIDTH,
    DATA,
    DENSITY,
    FREQUENCY,
    PERCENT,
    SLOTS,
    TIME,
    Dimension,
    format_quantity,
)


@dataclass(frozen=True)
class Range:
    """The closed interval [low, high] a field's value must lie in, in SI units."""

    low: float
    """Smallest allowed value, in the SI unit of `dimension`."""
    high: float
    """Largest allowed value, in the SI unit of `dimension`."""
    dimension: Dimension | None
    """The field's unit; None for a plain number (a count, a probability, a reward)."""
    reason: str
    """Why values outside the range are refused; quoted in the error."""
    whole: bool = False
    """Whether only whole numbers are allowed (counts, slots)."""

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high  # False for NaN

    def expected(self) -> str:
        """`a time from 1ms to 10s`, `a whole number of slots from 1 to 1000`: what the
        field must hold."""
        if self.dimension is None or self.whole:
            what = "a whole number" if self.whole else "a number"
            unit = f" of {self.dimension.si_unit}" if self.dimension is not None else ""
            return f"{what}{unit} from {self.low:g} to {self.high:g}"
        low = format_quantity(self.low, self.dimension)
        high = format_quantity(self.high, self.dimension)
        return f"a {self.dimension.name} from {low} to {high}"

    def problem(self, got: str) -> str:
        """The error text for a value outside the range; `got` shows the value as given."""
        return f"got {got}; expected {self.expected()}: {self.reason}"


# ── the file ────────────────────────────────────────────────────────────────────────

MAX_FILE_BYTES = 1024 * 1024
"""A topology file is a few kB; 1 MiB holds 10 000 terminals with an override each. A
larger file is the wrong file, and reading it whole would cost memory for nothing."""
MAX_YAML_NODES = 1_000_000
"""Values the document may expand to, counting every use of an alias (`*name`) as the
whole value it stands for. A 1 MiB file written out holds at most about 500 000 (each
value takes a character and a separator); aliases may double that, but not multiply it
into a "billion laughs" expansion that exhausts memory."""
MAX_YAML_ALIASES = 10_000
"""Aliases (`*name`) in one file: sharing a link or workload override among many hosts
needs one per host, and 10 000 is the most terminals (`TERMINALS`)."""
MAX_YAML_DEPTH = 32
"""Nesting depth of mappings and lists: the schema nests 6 deep
(`terminals.overrides.t1.workload.size.min`); PyYAML builds nested values by recursion,
which a few hundred levels would exhaust."""
MAX_NUMBER_CHARS = 64
"""Longest integer or float written in the file: PyYAML converts `1:0:0:…` (base 60) in
quadratic time and refuses integers over 4300 digits with an exception of its own."""

# ── the counts ──────────────────────────────────────────────────────────────────────

TERMINALS = Range(
    1,
    10_000,
    None,
    "each terminal is emulated as a host of its own running a Python process of tens of MB, "
    "so 10000 terminals already need hundreds of GB; the simulator and learners keep state "
    "per terminal too",
    whole=True,
)
EDGES = Range(
    1,
    256,
    None,
    "every edge server runs its own learner (a torch process of hundreds of MB) and adds an "
    "action to every terminal's Q-network",
    whole=True,
)
LOAD_HISTORY_SLOTS = Range(
    1,
    100,
    None,
    "the trajectory pool stores the C x E load history twice per step: 20000 trajectories "
    "of 4 steps with 4 edges take 2.56 MB per slot of history, 256 MB at C = 100 "
    "(the paper uses 10)",
    whole=True,
)

# ── time ────────────────────────────────────────────────────────────────────────────

SLOT = Range(
    1e-3,
    10.0,
    TIME,
    "the live runtime keeps the slot clock with asyncio timers, good to about a "
    "millisecond, and a run lasts (arrival slots) x (slot): below 1ms a second of traffic "
    "is thousands of slots, above 10s a 600-slot run lasts over 1.5 hours (the paper uses "
    "100ms)",
)
DEADLINE = Range(
    1,
    1000,
    SLOTS,
    "the simulator keeps a calendar of deadline + 1 slots with 4 entries per terminal "
    "(320 MB at 1000 slots and 10000 terminals); the default drop reward is -3 x deadline "
    "(the paper uses 12slots)",
    whole=True,
)

# ── the terminals' and edges' computing ─────────────────────────────────────────────

CPU = Range(
    1e6,
    1e13,
    FREQUENCY,
    "below 1MHz the paper's 3.5Mbit task at 500cycles/bit takes half an hour; an edge "
    "server's frequency is cores x clock, and 10THz is thousands of cores",
)
PROCESSING_DENSITY = Range(
    1e-2,
    1e6,
    DENSITY,
    "measured workloads need about 10 to 10000 cycles/bit (the paper uses 500); a value "
    "100 times beyond either end is a mistyped unit",
)

# ── the workload ────────────────────────────────────────────────────────────────────

ARRIVAL_RATE = Range(
    0,
    100e9,
    BANDWIDTH,
    "no terminal offers more than the fastest link the emulator shapes (100Gbps); the "
    "rate must also give at most one task per slot, which is checked with the task sizes",
)
TASK_PROBABILITY = Range(0, 1, None, "a probability per slot, as at most one task arrives per slot")
TASK_SIZE = Range(
    1,
    8e9,
    DATA,
    "a task carries at least one bit, and the live runtime holds a task's whole payload "
    "in the memory of a terminal (a Raspberry Pi): 1GB at the most",
)

# ── the reward ──────────────────────────────────────────────────────────────────────

DROP_REWARD = Range(
    -1e5,
    0,
    None,
    "a drop is a cost (<= 0), and the learners' float32 Q-values scale with it: at "
    "-1e5 / (1 - gamma) = 1e7 (gamma = 0.99) float32 steps are 1, too coarse to tell "
    "tasks one slot apart",
)

# ── the network ─────────────────────────────────────────────────────────────────────

LINK_BANDWIDTH = Range(
    1e3,
    100e9,
    BANDWIDTH,
    "tc HTB shapes whole bits per second, and below 1kbps one 1500-byte frame takes 12s, "
    "past the runtime's 10s handshake timeout; above 100Gbps a veth pair cannot carry what "
    "the file asks",
)
LINK_LATENCY = Range(
    0,
    2.0,
    TIME,
    "a terminal's handshake with its edge takes four one-way trips and must end within "
    "the runtime's connect timeout, and a task's upload would outlast any deadline of a "
    "few slots",
)
LINK_JITTER = Range(
    0,
    2.0,
    TIME,
    "jitter is the standard deviation of the delay, bounded as the delay itself",
)
LINK_LOSS = Range(0, 1, PERCENT, "a fraction of the packets")
