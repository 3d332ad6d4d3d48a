"""Quantity strings with units (`14Mbps`, `100ms`, `41.8GHz`, `1.5MB`) parsed to SI floats.

Topology files state every physical quantity with its unit so that a reader never has to
guess whether `14` means bit/s or Mbit/s. Each `Dimension` lists the units it accepts and
their exact scale to the SI unit; parsing multiplies exact rationals (`fractions.Fraction`)
and rounds once, so `100ms` is exactly the float `0.1` and `41.8GHz` exactly `41.8e9`.

Prefixes are decimal (k = 1e3, M = 1e6, G = 1e9) unless binary is spelled out (KiB = 1024
bytes, MiB = 1024² bytes). Bytes count as 8 bits. Units are case-sensitive: `kB` is a
kilobyte, `KB` is rejected as ambiguous, `Mb` is rejected in favour of `Mbit`.

Only what a float holds is a quantity: `1e999Mbps` (beyond the largest float) and
`1e-999s` (a nonzero value below the smallest) are refused rather than read as infinity or
zero; there is no spelling of NaN or infinity. Whether a value makes sense for its field
(a slot of 1 ns, a CPU of 1 Hz) is decided by the field's range in
`fl_crb.topology.limits`.
"""

from __future__ import annotations

import difflib
import re
import reprlib
import sys
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


_DECIMAL = {"": Fraction(1), "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9)}
_BINARY = {"Ki": Fraction(1024), "Mi": Fraction(1024**2), "Gi": Fraction(1024**3)}


def _prefixed(unit: str, prefixes: Mapping[str, Fraction], scale: int = 1) -> dict[str, Fraction]:
    """`unit` under every prefix, with its factor to SI: `_prefixed("B", _DECIMAL, 8)`
    gives B, kB, MB and GB at 8, 8e3, 8e6 and 8e9 bits."""
    return {prefix + unit: scale * factor for prefix, factor in prefixes.items()}


BANDWIDTH = Dimension(
    "bandwidth",
    "bit/s",
    "14Mbps",
    {**_prefixed("bps", _DECIMAL), **_prefixed("bit/s", _DECIMAL)},
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
    "frequency", "Hz", "2.5GHz", _prefixed("Hz", _DECIMAL), ("Hz", "kHz", "MHz", "GHz")
)
DATA = Dimension(
    "data size",
    "bit",
    "2Mbit",
    {
        **_prefixed("bit", _DECIMAL),
        **_prefixed("bit", _BINARY),
        **_prefixed("B", _DECIMAL, scale=8),
        **_prefixed("B", _BINARY, scale=8),
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

MAX_QUANTITY_CHARS = 64
"""Longest quantity string (`41.8GHz` has 7 characters). The bound keeps parsing cheap: a
megabyte-long string of digits would otherwise cost the regex quadratic time and the exact
arithmetic a gigantic integer."""
_MAX_EXPONENT = 400
"""A decimal exponent beyond ±400 puts any number of at most `MAX_QUANTITY_CHARS` digits
outside the float range (about 1e-324 to 1.8e308) whatever its unit; such a number is
refused before exact arithmetic would build 10**exponent."""
_LARGEST_FLOAT = Fraction(sys.float_info.max)

_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?P<mantissa>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE](?P<exponent>[+-]?[0-9]+))?)"
    r"\s?(?P<unit>\S(?:.*\S)?)?"
)
"""A decimal number (ASCII digits only), at most one blank, then the unit."""


class _ShortRepr(reprlib.Repr):
    """`reprlib.Repr` that also survives integers too long for `repr`."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 4 * self.maxlong:  # its digits would be cut anyway, and repr
            return f"<an integer of {x.bit_length()} bits>"  # refuses past 4300 digits
        return super().repr_int(x, level)


_SHORT = _ShortRepr()
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 60
_SHORT.maxlist = _SHORT.maxdict = _SHORT.maxtuple = _SHORT.maxset = 6
_SHORT.maxlevel = 3


def shown(value: object) -> str:
    """`repr(value)` for an error message, cut to a line: long strings and lists are
    abbreviated, so a message about a megabyte-long value stays readable."""
    return _SHORT.repr(value)


def parse_quantity(value: object, dimension: Dimension) -> float:
    """Parse `value` (e.g. "14Mbps") as `dimension` and return it in SI units.

    Raises `UnitError` for a bare number (the unit is never implied), a unit of another
    dimension, an unknown unit (with the closest known one suggested), a negative value, a
    number no float holds, a string over `MAX_QUANTITY_CHARS`, or anything that is not a
    number followed by a unit. It raises nothing else, whatever `value` is.
    """
    expected = dimension.describe()
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UnitError(f"got {shown(value)}; expected {expected}")
    if isinstance(value, int | float):
        raise UnitError(f"got bare number {shown(value)} without a unit; expected {expected}")
    text = value.strip()
    if len(text) > MAX_QUANTITY_CHARS:
        raise UnitError(
            f"got {shown(value)}, {len(text)} characters long; expected {expected}, "
            f"at most {MAX_QUANTITY_CHARS} characters (write long numbers with an exponent)"
        )
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise UnitError(
            f"got {shown(value)}, which is not a number with a unit; expected {expected}"
        )
    unit = match["unit"]
    if unit is None:
        raise UnitError(f"got bare number {shown(value)} without a unit; expected {expected}")
    scale = dimension.units.get(unit)
    if scale is None:
        raise UnitError(_unknown_unit_message(value, unit, dimension))
    if not any(digit in "123456789" for digit in match["mantissa"]):
        return 0.0  # zero in any spelling (`0ms`, `-0.0e999s`)
    if match["number"].startswith("-"):
        raise UnitError(f"got {shown(value)}; a {dimension.name} cannot be negative")
    exponent = int(match["exponent"] or "0")
    if abs(exponent) <= _MAX_EXPONENT:
        exact = Fraction(match["number"]) * scale
        if exact <= _LARGEST_FLOAT and float(exact) > 0:
            return float(exact)
        too_large = exact > _LARGEST_FLOAT
    else:
        too_large = exponent > 0
    if too_large:
        raise UnitError(
            f"got {shown(value)}, a number too large for a float (above "
            f"{sys.float_info.max:.4g} {dimension.si_unit}); expected {expected}"
        )
    raise UnitError(
        f"got {shown(value)}, a nonzero number too small for a float (below "
        f"{5e-324:g} {dimension.si_unit}); write 0{unit} if zero is meant"
    )


def _unknown_unit_message(value: str, unit: str, dimension: Dimension) -> str:
    """Explain a unit that `dimension` does not accept: another dimension's, or a typo."""
    for other in DIMENSIONS:
        if unit in other.units:
            return f"got {shown(value)}, which is a {other.name}; expected {dimension.describe()}"
    close = difflib.get_close_matches(unit, list(dimension.units), n=2, cutoff=0.5)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return (
        f"got {shown(value)} with unknown unit {shown(unit)}{hint}; expected {dimension.describe()}"
    )


def format_quantity(value_si: float, dimension: Dimension) -> str:
    """Write an SI value with the largest display unit it is at least 1 of ("3.5Mbit").

    For messages, so that a derived number reads like the file it came from.
    """
    unit = next((u for u in dimension.display if dimension.units[u] == 1), dimension.display[0])
    for candidate in dimension.display:
        if abs(value_si) >= dimension.units[candidate]:
            unit = candidate
    return f"{float(value_si) / dimension.units[unit]:g}{unit}"
