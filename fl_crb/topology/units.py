"""Quantity strings with units (`14Mbps`, `100ms`, `41.8GHz`, `1.5MB`) parsed to SI floats.

Topology files state every physical quantity with its unit so that a reader never has to
guess whether `14` means bit/s or Mbit/s. Each `Dimension` lists the units it accepts and
their exact scale to the SI unit; parsing multiplies exact rationals (`fractions.Fraction`)
and rounds once, so `100ms` is exactly the float `0.1` and `41.8GHz` exactly `41.8e9`.

Prefixes are decimal (k = 1e3, M = 1e6, G = 1e9) unless binary is spelled out (KiB = 1024
bytes, MiB = 1024² bytes). Bytes count as 8 bits. Units are case-sensitive: `kB` is a
kilobyte, `KB` is rejected as ambiguous, `Mb` is rejected in favour of `Mbit`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction


class UnitError(ValueError):
    """A quantity string that does not parse as the expected dimension."""


@dataclass(frozen=True)
class Dimension:
    """A kind of quantity (bandwidth, time, ...) and the units it may be written in."""

    name: str
    """What the quantity is, for messages ("bandwidth")."""
    si_unit: str
    """The SI unit every value of this dimension is converted to ("bit/s")."""
    example: str
    """A valid example, quoted in error messages ("14Mbps")."""
    units: Mapping[str, Fraction] = field(compare=False)
    """Accepted unit symbols and the exact factor from that unit to `si_unit`."""
    display: tuple[str, ...]
    """Units `format_quantity` writes values in, smallest first (decimal prefixes only)."""

    def describe(self) -> str:
        """`a bandwidth such as '14Mbps' (units: bps, kbps, ...)`: what a field expects."""
        return f"a {self.name} such as {self.example!r} (units: {', '.join(self.units)})"


def _binary(power: int) -> Fraction:
    return Fraction(1024**power)


BANDWIDTH = Dimension(
    "bandwidth",
    "bit/s",
    "14Mbps",
    {
        "bps": Fraction(1),
        "kbps": Fraction(10**3),
        "Mbps": Fraction(10**6),
        "Gbps": Fraction(10**9),
        "bit/s": Fraction(1),
        "kbit/s": Fraction(10**3),
        "Mbit/s": Fraction(10**6),
        "Gbit/s": Fraction(10**9),
    },
    ("bps", "kbps", "Mbps", "Gbps"),
)
TIME = Dimension(
    "time",
    "s",
    "100ms",
    {
        "s": Fraction(1),
        "ms": Fraction(1, 10**3),
        "us": Fraction(1, 10**6),
        "µs": Fraction(1, 10**6),
        "ns": Fraction(1, 10**9),
    },
    ("ns", "us", "ms", "s"),
)
FREQUENCY = Dimension(
    "frequency",
    "Hz",
    "2.5GHz",
    {
        "Hz": Fraction(1),
        "kHz": Fraction(10**3),
        "MHz": Fraction(10**6),
        "GHz": Fraction(10**9),
    },
    ("Hz", "kHz", "MHz", "GHz"),
)
DATA = Dimension(
    "data size",
    "bit",
    "2Mbit",
    {
        "bit": Fraction(1),
        "kbit": Fraction(10**3),
        "Mbit": Fraction(10**6),
        "Gbit": Fraction(10**9),
        "Kibit": _binary(1),
        "Mibit": _binary(2),
        "Gibit": _binary(3),
        "B": Fraction(8),
        "kB": Fraction(8 * 10**3),
        "MB": Fraction(8 * 10**6),
        "GB": Fraction(8 * 10**9),
        "KiB": 8 * _binary(1),
        "MiB": 8 * _binary(2),
        "GiB": 8 * _binary(3),
    },
    ("bit", "kbit", "Mbit", "Gbit"),
)
PERCENT = Dimension("percentage", "fraction", "0.5%", {"%": Fraction(1, 100)}, ("%",))
DENSITY = Dimension(
    "processing density",
    "cycles/bit",
    "500cycles/bit",
    {"cycles/bit": Fraction(1)},
    ("cycles/bit",),
)
SLOTS = Dimension(
    "slot count", "slots", "12slots", {"slots": Fraction(1), "slot": Fraction(1)}, ("slots",)
)

DIMENSIONS: tuple[Dimension, ...] = (BANDWIDTH, TIME, FREQUENCY, DATA, PERCENT, DENSITY, SLOTS)
"""Every dimension, used to tell a wrong kind of unit (`5ms` for a bandwidth) from a typo."""

_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s?(?P<unit>\S(?:.*\S)?)?"
)


def parse_quantity(value: object, dimension: Dimension) -> float:
    """Parse `value` (e.g. "14Mbps") as `dimension` and return it in SI units.

    Raises `UnitError` for a bare number (the unit is never implied), a unit of another
    dimension, an unknown unit (with the closest known one suggested), a negative value,
    or anything that is not a number followed by a unit.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UnitError(f"got {value!r}; expected {dimension.describe()}")
    if isinstance(value, int | float):
        raise UnitError(
            f"got bare number {value!r} without a unit; expected {dimension.describe()}"
        )
    match = _QUANTITY.fullmatch(value.strip())
    if match is None:
        raise UnitError(
            f"got {value!r}, which is not a number with a unit; expected {dimension.describe()}"
        )
    unit = match["unit"]
    if unit is None:
        raise UnitError(
            f"got bare number {value!r} without a unit; expected {dimension.describe()}"
        )
    scale = dimension.units.get(unit)
    if scale is None:
        raise UnitError(_unknown_unit_message(value, unit, dimension))
    number = Fraction(match["number"])
    if number < 0:
        raise UnitError(f"got {value!r}; a {dimension.name} cannot be negative")
    return float(number * scale)


def _unknown_unit_message(value: str, unit: str, dimension: Dimension) -> str:
    """Explain a unit that `dimension` does not accept: another dimension's, or a typo."""
    for other in DIMENSIONS:
        if unit in other.units:
            return f"got {value!r}, which is a {other.name}; expected {dimension.describe()}"
    close = difflib.get_close_matches(unit, list(dimension.units), n=2, cutoff=0.5)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return f"got {value!r} with unknown unit {unit!r}{hint}; expected {dimension.describe()}"


def format_quantity(value_si: float, dimension: Dimension) -> str:
    """Write an SI value with the largest display unit it is at least 1 of ("3.5Mbit").

    For messages, so that a derived number reads like the file it came from.
    """
    unit = next((u for u in dimension.display if dimension.units[u] == 1), dimension.display[0])
    for candidate in dimension.display:
        if abs(value_si) >= dimension.units[candidate]:
            unit = candidate
    return f"{value_si / dimension.units[unit]:g}{unit}"
