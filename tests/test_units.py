"""Quantity strings parse to exact SI values, and every malformed one is refused clearly."""

import math
import sys

import pytest

from fl_crb.topology.units import (
    BANDWIDTH,
    DATA,
    DENSITY,
    FREQUENCY,
    PERCENT,
    SLOTS,
    TIME,
    Dimension,
    UnitError,
    format_quantity,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "dimension", "expected"),
    [
        ("14Mbps", BANDWIDTH, 14e6),
        ("1Gbps", BANDWIDTH, 1e9),
        ("500kbps", BANDWIDTH, 500e3),
        ("9600bps", BANDWIDTH, 9600.0),
        ("100Mbit/s", BANDWIDTH, 100e6),
        ("14 Mbps", BANDWIDTH, 14e6),
        ("5ms", TIME, 0.005),
        ("100ms", TIME, 0.1),
        ("1.2s", TIME, 1.2),
        ("250us", TIME, 250e-6),
        ("250µs", TIME, 250e-6),
        ("0ms", TIME, 0.0),
        ("-0ms", TIME, 0.0),
        ("0e999ms", TIME, 0.0),
        ("1e-300s", TIME, 1e-300),
        ("41.8GHz", FREQUENCY, 41.8e9),
        ("2.5GHz", FREQUENCY, 2.5e9),
        ("800MHz", FREQUENCY, 800e6),
        ("2Mbit", DATA, 2e6),
        ("500kbit", DATA, 500e3),
        ("1.5MB", DATA, 12e6),
        ("1kB", DATA, 8000.0),
        ("1MiB", DATA, 8.0 * 1024**2),
        ("1KiB", DATA, 8192.0),
        ("1Kibit", DATA, 1024.0),
        ("1%", PERCENT, 0.01),
        ("0.5%", PERCENT, 0.005),
        ("0%", PERCENT, 0.0),
        ("500cycles/bit", DENSITY, 500.0),
        ("12slots", SLOTS, 12.0),
        ("1slot", SLOTS, 1.0),
        ("1e3Mbps", BANDWIDTH, 1e9),
        ("1.7976931348623157e308bps", BANDWIDTH, sys.float_info.max),
    ],
)
def test_valid_quantities_parse_to_exact_si_values(
    text: str, dimension: Dimension, expected: float
) -> None:
    assert parse_quantity(text, dimension) == expected


@pytest.mark.parametrize(
    ("value", "dimension", "fragments"),
    [
        (14, BANDWIDTH, ["bare number 14", "bandwidth such as '14Mbps'"]),
        ("14", BANDWIDTH, ["bare number '14'", "bandwidth"]),
        (0.1, TIME, ["bare number 0.1", "time such as '100ms'"]),
        ("5ms", BANDWIDTH, ["'5ms', which is a time", "expected a bandwidth"]),
        ("2Mbps", DATA, ["which is a bandwidth", "expected a data size"]),
        ("14Mbs", BANDWIDTH, ["unknown unit 'Mbs'", "did you mean 'Mbps'"]),
        ("1KB", DATA, ["unknown unit 'KB'", "did you mean"]),
        ("fast", BANDWIDTH, ["'fast', which is not a number with a unit"]),
        ("", TIME, ["not a number with a unit"]),
        ("-5Mbps", BANDWIDTH, ["'-5Mbps'", "cannot be negative"]),
        ("-1ms", TIME, ["cannot be negative"]),
        (True, TIME, ["got True"]),
        (None, FREQUENCY, ["got None", "frequency"]),
        (["2Mbit"], DATA, ["got ['2Mbit']"]),
        ("nanMbps", BANDWIDTH, ["not a number with a unit"]),
        ("infMbps", BANDWIDTH, ["not a number with a unit"]),
        ("\u0663Mbps", BANDWIDTH, ["not a number with a unit"]),  # ٣, an Arabic-Indic 3
        (math.inf, TIME, ["bare number inf"]),
        (math.nan, TIME, ["bare number nan"]),
        pytest.param(
            10**5000, BANDWIDTH, ["bare number <an integer of 16610 bits>"], id="5001-digits"
        ),
        ("1e999Mbps", BANDWIDTH, ["'1e999Mbps', a number too large for a float", "bit/s"]),
        ("1e400bps", BANDWIDTH, ["too large for a float"]),
        ("1e308GHz", FREQUENCY, ["too large for a float (above 1.798e+308 Hz)"]),
        ("1e-999s", TIME, ["'1e-999s', a nonzero number too small for a float", "write 0s"]),
        ("1e-330ms", TIME, ["too small for a float"]),
        ("1" * 100 + "Mbps", BANDWIDTH, ["104 characters long", "at most 64 characters"]),
        ("1\n" * 40 + "Mbps", BANDWIDTH, ["characters long"]),
    ],
)
def test_invalid_quantities_are_refused_with_what_was_expected(
    value: object, dimension: Dimension, fragments: list[str]
) -> None:
    with pytest.raises(UnitError) as caught:
        parse_quantity(value, dimension)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_unit_error_is_a_value_error() -> None:
    assert issubclass(UnitError, ValueError)


@pytest.mark.parametrize(
    ("value_si", "dimension", "expected"),
    [
        (2e6, BANDWIDTH, "2Mbps"),
        (3.5e6, DATA, "3.5Mbit"),
        (0.1, TIME, "100ms"),
        (0.005, PERCENT, "0.5%"),
        (0.0, TIME, "0s"),
        (250e-6, TIME, "250us"),
        (0, TIME, "0s"),
        (1000, DATA, "1kbit"),
    ],
)
def test_format_quantity_uses_the_largest_decimal_unit(
    value_si: float, dimension: Dimension, expected: str
) -> None:
    assert format_quantity(value_si, dimension) == expected
