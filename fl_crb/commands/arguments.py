"""Checked `type=` functions for the command line's numbers, quantities and folders.

Every numeric flag of every subcommand parses through one of these, so a bad value is
refused while the arguments are parsed, before anything is loaded or started, with
argparse's usual `fl-crb CMD: error: argument --FLAG: got VALUE; expected ...: reason`
and exit status 2. The ranges hold what the programs can carry out; a value outside is
a typo or a lost unit, and the message says why the bound is there.

| function           | accepts                                                          |
| ------------------ | ---------------------------------------------------------------- |
| `int_in(lo, hi)`   | a whole number in [lo, hi] (no `1e3`, no `5.0`)                  |
| `float_in(lo, hi)` | a finite number in [lo, hi] (or (lo, hi] / [lo, hi)); no NaN     |
| `quantity(...)`    | a number with a unit (`fl_crb.topology.units`) in a range, as SI |
| `SEED`, `EPISODES`, `SLOTS`, `THREADS`, `TERMINALS`, `RATE`, `DURATION`: the shared ones |
| `out_folder`       | a path that is a folder or can become one (not an existing file) |
| `existing_folder`  | a path that is a folder already                                  |

`add_party_pacing_arguments` adds the runtime parties' pacing and scheduling flags
(`--no-pacing`, `--pace-ticks`, `--realtime`) to `run-local` and to `authority`, which
serves them to every party.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from fl_crb.runtime.local_run import LocalRunConfig
from fl_crb.topology import limits
from fl_crb.topology.units import (
    BANDWIDTH,
    TIME,
    Dimension,
    UnitError,
    format_quantity,
    parse_quantity,
    shown,
)
from fl_crb.training.config import MAX_SEED

MAX_NUMBER_CHARS = 64
"""Longest number accepted (`int()` of a megabyte of digits costs quadratic time)."""


def _got(text: str) -> str:
    return f"got {shown(text)}"


def int_in(low: int, high: int, reason: str = "") -> Callable[[str], int]:
    """A `type=` function for a whole number in [low, high]; `reason` says why the bound."""

    def parse(text: str) -> int:
        expected = f"a whole number from {low} to {high}"
        stripped = text.strip()
        if len(stripped) > MAX_NUMBER_CHARS:
            raise argparse.ArgumentTypeError(f"{_got(text)}, too long; expected {expected}")
        try:
            value = int(stripped, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_got(text)}; expected {expected}") from None
        if not low <= value <= high:
            why = f": {reason}" if reason else ""
            raise argparse.ArgumentTypeError(f"{_got(text)}; expected {expected}{why}")
        return value

    parse.__name__ = "whole number"  # argparse names the type in some messages
    return parse


def float_in(
    low: float,
    high: float,
    reason: str = "",
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Callable[[str], float]:
    """A `type=` function for a finite number in [low, high] (an end is excluded when
    `low_open` / `high_open`); NaN and infinity are refused."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    expected = f"a number in {left}{low:g}, {high:g}{right}"

    def parse(text: str) -> float:
        stripped = text.strip()
        if len(stripped) > MAX_NUMBER_CHARS:
            raise argparse.ArgumentTypeError(f"{_got(text)}, too long; expected {expected}")
        try:
            value = float(stripped)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{_got(text)}; expected {expected}") from None
        inside = (
            math.isfinite(value)
            and (low < value if low_open else low <= value)
            and (value < high if high_open else value <= high)
        )
        if not inside:
            why = f": {reason}" if reason else ""
            raise argparse.ArgumentTypeError(f"{_got(text)}; expected {expected}{why}")
        return value

    parse.__name__ = "number"
    return parse


def quantity(
    dimension: Dimension, low: float, high: float, reason: str = "", *, low_open: bool = False
) -> Callable[[str], float]:
    """A `type=` function for a number with a unit of `dimension` (e.g. `60s`), returned
    in SI units, in [low, high] (or (low, high] when `low_open`)."""
    lowest = format_quantity(low, dimension)
    highest = format_quantity(high, dimension)
    expected = (
        f"a {dimension.name} above {lowest}, up to {highest}"
        if low_open
        else f"a {dimension.name} from {lowest} to {highest}"
    )

    def parse(text: str) -> float:
        try:
            value = parse_quantity(text, dimension)
        except UnitError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        if not ((low < value) if low_open else (low <= value)) or not value <= high:
            why = f": {reason}" if reason else ""
            raise argparse.ArgumentTypeError(f"{_got(text)}; expected {expected}{why}")
        return value

    parse.__name__ = dimension.name
    return parse


def out_folder(text: str) -> str:
    """A `type=` function for an output folder: one that exists, or can be made (no file
    in the way, neither the path itself nor any folder above it)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("got an empty path; expected a folder")
    path = Path(text)
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            if candidate.is_dir():
                return text
            what = "it" if candidate == path else f"{candidate}"
            raise argparse.ArgumentTypeError(
                f"got {shown(text)}, but {what} is a file, not a folder; give a folder "
                "(new, or one this command wrote before)"
            )
    return text


def existing_folder(text: str) -> str:
    """A `type=` function for a folder that must exist already (a key bundle)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("got an empty path; expected a folder")
    path = Path(text)
    if not path.is_dir():
        what = "a file" if path.exists() else "missing"
        raise argparse.ArgumentTypeError(f"got {shown(text)}, which is {what}; expected a folder")
    return text


# ── the flags several commands share ────────────────────────────────────────────────

SEED = int_in(
    0,
    MAX_SEED - 1,
    "a run's episodes draw arrival seeds seed x 1e6 + episode, which keeps the seeds of "
    "training, validation and evaluation apart (fl_crb.training.config)",
)
EPISODES = int_in(1, MAX_SEED - 1, "episode indices stay below 1e6, like the seeds")
SLOTS = int_in(
    1,
    1_000_000,
    "an episode of a million arrival slots is over a day of traffic at the paper's 100ms slot",
)
JOBS = int_in(1, 1024, "worker processes, one torch thread each; more than the cores only queue")
THREADS = int_in(1, 1024, "torch's CPU threads; more than the machine has only slows it down")
TERMINALS = int_in(int(limits.TERMINALS.low), int(limits.TERMINALS.high), limits.TERMINALS.reason)
RATE = quantity(
    BANDWIDTH, limits.ARRIVAL_RATE.low, limits.ARRIVAL_RATE.high, limits.ARRIVAL_RATE.reason
)
DURATION = quantity(
    TIME,
    0,
    7 * 24 * 3600,
    "a live run of more than a week (604800s) is a lost unit",
    low_open=True,
)
REALTIME_PRIORITY = int_in(1, 99, "SCHED_FIFO priorities run from 1 to 99")
"""`run-local --realtime`, `authority --realtime`."""
EMULATION_PRIORITY = int_in(0, 99, "SCHED_FIFO priorities run from 1 to 99; 0 is normal scheduling")
"""`emulate --realtime`."""
PACE_TICKS = int_in(
    1,
    1000,
    "steps per slot of a paced uplink: 1000 steps of a 100ms slot are 0.1ms apart, finer "
    "than asyncio's timers keep",
)
"""`run-local --pace-ticks`, `authority --pace-ticks`."""


def add_party_pacing_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, realtime_needs: str
) -> None:
    """`--no-pacing`, `--pace-ticks` and `--realtime`: how the runtime parties pace their
    uplinks and whether they run with SCHED_FIFO (`LocalRunConfig.pace_uplink`,
    `pace_ticks_per_slot`, `realtime_priority`); `realtime_needs` says what taking the
    priority needs where the parties run."""
    parser.add_argument(
        "--no-pacing",
        action="store_true",
        help="terminals do not pace their uplinks at the link rate (only when something "
        "else shapes the links, such as an emulated network)",
    )
    ticks = LocalRunConfig.pace_ticks_per_slot
    parser.add_argument(
        "--pace-ticks",
        type=PACE_TICKS,
        default=ticks,
        help=f"steps per slot of a paced uplink (default {ticks})",
    )
    parser.add_argument(
        "--realtime",
        type=REALTIME_PRIORITY,
        metavar="PRIORITY",
        help="the runtime parties run with SCHED_FIFO at this priority (1-99) so that other "
        f"programs on their hosts do not delay their slots; {realtime_needs}; keep it below "
        "a network emulator's own real-time daemons",
    )
