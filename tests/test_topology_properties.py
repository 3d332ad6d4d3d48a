"""Properties of the topology reader on arbitrary input: a quantity parses to its exact
value or raises `UnitError`; a file, whatever its bytes, loads to a usable `Topology` or
raises `TopologyError`. Never another exception, a hang or a silently absurd value."""

from __future__ import annotations

import copy
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fl_crb.topology import Topology, TopologyError, load_topology
from fl_crb.topology.units import (
    DIMENSIONS,
    Dimension,
    UnitError,
    format_quantity,
    parse_quantity,
)

TINY = Path(__file__).resolve().parent.parent / "topologies" / "tiny.yaml"
TINY_TEXT = TINY.read_text()
TINY_DATA: dict[str, Any] = yaml.safe_load(TINY_TEXT)

FAST = settings(
    max_examples=60,
    deadline=None,
    database=None,  # the repository keeps no .hypothesis folder
    suppress_health_check=[HealthCheck.too_slow],
)


# ── quantities ──────────────────────────────────────────────────────────────────────


@st.composite
def decimals(draw: st.DrawFn) -> str:
    """A decimal number as a topology file writes it: `12`, `0.5`, `.25`, `3e-6`."""
    whole = draw(st.integers(0, 10**12))
    fraction = draw(st.one_of(st.none(), st.integers(0, 10**6)))
    exponent = draw(st.one_of(st.none(), st.integers(-20, 20)))
    text = str(whole) if fraction is None else f"{whole}.{fraction}"
    if fraction is not None and draw(st.booleans()) and whole == 0:
        text = text[1:]  # `.25`
    return text if exponent is None else f"{text}e{exponent}"


@FAST
@given(dimension=st.sampled_from(DIMENSIONS), number=decimals(), data=st.data())
def test_a_number_with_a_unit_parses_to_its_exact_si_value(
    dimension: Dimension, number: str, data: st.DataObject
) -> None:
    unit = data.draw(st.sampled_from(sorted(dimension.units)))
    blank = data.draw(st.sampled_from(["", " "]))
    expected = float(Fraction(number) * dimension.units[unit])
    assert parse_quantity(f"{number}{blank}{unit}", dimension) == expected


@FAST
@given(
    dimension=st.sampled_from(DIMENSIONS),
    value=st.floats(min_value=1e-12, max_value=1e15, allow_nan=False, allow_infinity=False),
)
def test_a_formatted_quantity_parses_back_to_its_value(dimension: Dimension, value: float) -> None:
    text = format_quantity(value, dimension)
    assert parse_quantity(text, dimension) == pytest.approx(value, rel=1e-5)


NEAR_QUANTITIES = st.from_regex(
    r"[ +\-]?[0-9.]{0,6}([eE][+\-]?[0-9]{0,5})?[ \t\n]?"
    r"(Mbps|ms|GHz|Mbit|%|cycles/bit|slots|MiB|µs|Mb|KB|nan|inf|x)?\s?",
    fullmatch=True,
)
"""Strings close to quantities: signs, dots, exponents, near-miss units."""


@FAST
@given(
    value=st.one_of(
        st.text(),
        NEAR_QUANTITIES,
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.lists(st.text(max_size=5), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    ),
    dimension=st.sampled_from(DIMENSIONS),
)
@example(value="1e999999999999Mbps", dimension=DIMENSIONS[0])
@example(value="1e-999999999999s", dimension=DIMENSIONS[1])
@example(value="1" * 5000 + "x\n", dimension=DIMENSIONS[0])
@example(value=10**5000, dimension=DIMENSIONS[0])
def test_any_value_parses_to_a_finite_quantity_or_raises_unit_error(
    value: object, dimension: Dimension
) -> None:
    try:
        result = parse_quantity(value, dimension)
    except UnitError as error:
        assert str(error).startswith("got ")
        return
    assert isinstance(result, float)
    assert math.isfinite(result)
    assert result >= 0


# ── whole files ─────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("topology-properties") / "topology.yaml"


def load_or_refuse(path: Path) -> None:
    """Load `path`: a refusal must be a `TopologyError` naming the file; an accepted
    topology must be usable by the simulator and the emulator."""
    try:
        topo = load_topology(path)
    except TopologyError as error:
        assert str(error).startswith(f"{path}: ")
        return
    assert isinstance(topo, Topology)
    params = topo.mec_params()
    assert 0 <= min(t.task_probability for t in topo.resolved_terminals()) <= 1
    assert params.per_terminal(topo.terminal_count) is not None
    assert len(topo.links) == topo.terminal_count + 2 * len(topo.edges) + 1


YAML_PIECES = [
    *("name", "slot", "edges", "terminals", "count", "cpu", "a", "b", "x"),
    *(": ", ":", " ", "\n", "  ", "- ", "-", "[", "]", "{", "}", ", ", "? ", "#", "|", ">"),
    *("&a ", "*a", "&b ", "*b", "<<: ", "!!int ", "!!bool ", "!!str ", "!!map ", "!!seq "),
    *("!!set ", "!!binary ", "!!timestamp ", "!!float ", "!!python/object:os.system "),
    *("---\n", "...\n", "%YAML 1.1\n", "'", '"', "\\", "\t", "~", "null", "true", "="),
    *("1", "0", "-1", "1e999", "1.0e999", ".nan", "-.inf", "0x1F", "1:0:0", "2001-01-01"),
    *("100ms", "2.5GHz", "14Mbps", "1e999Mbps", "-5ms", "12slots", "é", "\ufeff", "\x00"),
]


@FAST
@given(st.lists(st.sampled_from(YAML_PIECES), max_size=40).map("".join))
@example("a: &a [*a]")
@example("!!float ")
@example("a: !!int")
@example("a: " + "[" * 200)
def test_any_yaml_ish_text_loads_or_raises_topology_error(scratch: Path, text: str) -> None:
    scratch.write_text(text, encoding="utf-8")
    load_or_refuse(scratch)


@FAST
@given(st.binary(max_size=300))
@example(b"\xff\xfe\x00n\x00a\x00m\x00e")
def test_any_bytes_load_or_raise_topology_error(scratch: Path, data: bytes) -> None:
    scratch.write_bytes(data)
    load_or_refuse(scratch)


@FAST
@given(
    start=st.integers(0, len(TINY_TEXT)),
    length=st.integers(0, 40),
    insert=st.lists(st.sampled_from(YAML_PIECES), max_size=4).map("".join),
)
def test_tiny_yaml_with_a_stretch_of_text_replaced_loads_or_raises_topology_error(
    scratch: Path, start: int, length: int, insert: str
) -> None:
    scratch.write_text(TINY_TEXT[:start] + insert + TINY_TEXT[start + length :])
    load_or_refuse(scratch)


def field_paths(data: object, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `data` (mapping keys and list indices)."""
    paths = [path]
    if isinstance(data, dict):
        for key, value in data.items():
            paths += field_paths(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            paths += field_paths(value, (*path, i))
    return paths


TINY_PATHS = field_paths(TINY_DATA)[1:]

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),
    st.text(max_size=12),
    NEAR_QUANTITIES,
    st.sampled_from(
        ["0ms", "1e999Mbps", "1e-999s", "0Hz", "100%", "-1GHz", "1slot", "0bit", "t1", "edge1"]
    ),
    st.sampled_from(["s1", "s2", "cloud", "round-robin", "uniform", "constant", "1000GHz"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


@st.composite
def tiny_mutations(draw: st.DrawFn) -> dict[str, Any]:
    """tiny.yaml's data with one to three fields replaced, deleted, or added."""
    data = copy.deepcopy(TINY_DATA)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(TINY_PATHS))
        try:
            parent = data
            for step in path[:-1]:
                parent = parent[step]
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                parent[path[-1]] = draw(VALUES)
            elif action == "delete":
                del parent[path[-1]]
            elif isinstance(parent, dict):
                parent[draw(st.text(max_size=8))] = draw(VALUES)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    return data


@FAST
@given(tiny_mutations())
def test_tiny_yaml_with_mutated_fields_loads_or_raises_topology_error(
    scratch: Path, data: dict[str, Any]
) -> None:
    scratch.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    load_or_refuse(scratch)
