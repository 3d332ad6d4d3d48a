"""Topology files: the shipped ones load to the paper's parameters, overrides apply, and
every class of mistake in a file is reported with the file, the field path and the value."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from fl_crb.topology import Link, LinkSpec, Topology, TopologyError, load_topology
from fl_crb.topology.limits import MAX_FILE_BYTES
from fl_crb.topology.model import LinkOverride, TerminalGroup, TerminalOverride

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
PAPER_P = 2e6 * 0.1 / 3.5e6
"""Per-slot task probability of 2 Mbit/s offered in uniform [2, 5] Mbit tasks, 0.1 s slots."""


@pytest.fixture(scope="module")
def tiny_data() -> dict[str, Any]:
    return yaml.safe_load((TOPOLOGIES / "tiny.yaml").read_text())


@pytest.fixture
def write_tiny(tmp_path: Path, tiny_data: dict[str, Any]) -> Callable[..., Path]:
    """Write tiny.yaml, changed by `edit`, to a temporary file and return its path."""

    def write(edit: Callable[[dict[str, Any]], None]) -> Path:
        data = copy.deepcopy(tiny_data)
        edit(data)
        path = tmp_path / "edited.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def load_error(path: Path) -> str:
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    return str(caught.value)


def overrides_error(topo: Topology, **changes: Any) -> str:
    with pytest.raises(TopologyError) as caught:
        topo.with_overrides(**changes)
    return str(caught.value)


# ── the shipped topologies ──────────────────────────────────────────────────────────


@pytest.mark.parametrize("name", ["four-edge", "four-edge-hetero", "tiny"])
def test_shipped_topology_has_the_paper_per_terminal_parameters(name: str) -> None:
    params = load_topology(TOPOLOGIES / f"{name}.yaml").mec_params()
    assert params.slot_s == 0.1
    assert params.terminal_cpu_hz == 2.5e9
    assert params.uplink_bps == 14e6
    assert params.density_cycles_per_bit == 500.0
    assert params.deadline_slots == 12
    assert params.history_slots == 10
    assert params.task_probability == PAPER_P
    assert params.task_size_min_bits == 2e6
    assert params.task_size_max_bits == 5e6
    assert params.drop_reward == -36.0
    arrays = params.per_terminal(load_topology(TOPOLOGIES / f"{name}.yaml").terminal_count)
    assert arrays.uplink_bits_per_slot[0] == 14e6 * 0.1


def test_four_edge_is_the_paper_deployment() -> None:
    path = TOPOLOGIES / "four-edge.yaml"
    topo = load_topology(str(path))
    params = topo.mec_params()
    assert topo.source == path
    assert topo.name == "four-edge"
    assert params.edge_cpu_hz == (41.8e9,) * 4
    assert topo.edge_names == ["edge1", "edge2", "edge3", "edge4"]
    assert topo.terminal_count == 25
    assert topo.terminal_names == [f"t{i}" for i in range(1, 26)]
    assert params.managing_edge == tuple(i % 4 for i in range(25))
    assert topo.cloud_host == "cloud"
    assert topo.link_for("t1") == LinkSpec(14e6, 0.005, 0.0, 0.0)
    assert topo.link_for("edge3") == LinkSpec(100e6, 0.02, 0.0, 0.0)


def test_four_edge_hetero_differs_only_in_edge_cpus() -> None:
    hetero = load_topology(TOPOLOGIES / "four-edge-hetero.yaml")
    paper = load_topology(TOPOLOGIES / "four-edge.yaml")
    assert hetero.mec_params().edge_cpu_hz == (5e9, 10e9, 15e9, 20e9)
    same = {"edges", "name", "description", "source"}
    for field in set(vars(paper)) - same:
        assert getattr(hetero, field) == getattr(paper, field), field


def test_tiny_has_two_edges_and_four_terminals() -> None:
    topo = load_topology(TOPOLOGIES / "tiny.yaml")
    assert topo.edge_names == ["edge1", "edge2"]
    assert topo.terminal_names == ["t1", "t2", "t3", "t4"]
    assert topo.mec_params().managing_edge == (0, 1, 0, 1)


def test_links_wire_every_host_to_its_switches() -> None:
    topo = load_topology(TOPOLOGIES / "tiny.yaml")
    wiring = [(link.host, link.switch, link.spec is not None) for link in topo.links]
    assert wiring == [
        ("t1", "s1", True),
        ("t2", "s1", True),
        ("t3", "s1", True),
        ("t4", "s1", True),
        ("edge1", "s1", False),
        ("edge1", "s2", True),
        ("edge2", "s1", False),
        ("edge2", "s2", True),
        ("cloud", "s2", False),
    ]


# ── with_overrides ──────────────────────────────────────────────────────────────────


def test_with_overrides_changes_count_and_rate_and_keeps_the_original() -> None:
    topo = load_topology(TOPOLOGIES / "four-edge.yaml")
    changed = topo.with_overrides(terminals=15, arrival_rate_bps=3.0e6)
    assert isinstance(changed, Topology)
    assert changed.terminal_count == 15
    assert changed.terminal_names[-1] == "t15"
    params = changed.mec_params()
    assert params.task_probability == 3.0e6 * 0.1 / 3.5e6
    assert params.managing_edge == tuple(i % 4 for i in range(15))
    assert changed.source == topo.source
    assert topo.terminal_count == 25
    assert topo.mec_params().task_probability == PAPER_P


def test_with_overrides_of_nothing_is_equal() -> None:
    topo = load_topology(TOPOLOGIES / "tiny.yaml")
    assert topo.with_overrides() == topo


def test_with_overrides_rate_replaces_a_stated_probability(write_tiny: Callable) -> None:
    def probability(data: dict[str, Any]) -> None:
        workload = data["terminals"]["workload"]
        del workload["arrival_rate"]
        workload["task_probability"] = 0.5

    topo = load_topology(write_tiny(probability))
    assert topo.mec_params().task_probability == 0.5
    assert (
        topo.with_overrides(arrival_rate_bps=1e6).mec_params().task_probability == 1e6 * 0.1 / 3.5e6
    )


def test_with_overrides_cannot_stretch_an_explicit_managed_by_list(write_tiny: Callable) -> None:
    def explicit(data: dict[str, Any]) -> None:
        data["terminals"]["managed_by"] = ["edge2", "edge2", "edge1", "edge1"]

    topo = load_topology(write_tiny(explicit))
    assert topo.mec_params().managing_edge == (1, 1, 0, 0)
    message = overrides_error(topo, terminals=6)
    assert "edited.yaml with_overrides(terminals=6)" in message
    assert "terminals.managed_by" in message
    assert "round-robin" in message


def test_with_overrides_rejects_dropping_an_overridden_terminal(write_tiny: Callable) -> None:
    def override_t4(data: dict[str, Any]) -> None:
        data["terminals"]["overrides"] = {"t4": {"cpu": "1GHz"}}

    message = overrides_error(load_topology(write_tiny(override_t4)), terminals=3)
    assert "with_overrides(terminals=3)" in message
    assert "terminals.overrides.t4" in message
    assert "t1..t3" in message


def test_with_overrides_rejects_a_rate_implying_p_above_one() -> None:
    message = overrides_error(load_topology(TOPOLOGIES / "tiny.yaml"), arrival_rate_bps=50e6)
    assert "with_overrides(arrival_rate_bps=50000000.0)" in message
    assert "terminals.workload.arrival_rate" in message
    assert "p = 1.429" in message


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"terminals": 0}, "terminals.count"),
        ({"terminals": 2.5}, "terminals.count"),
        ({"arrival_rate_bps": -1.0}, "terminals.workload.arrival_rate"),
        ({"arrival_rate_bps": float("nan")}, "terminals.workload.arrival_rate"),
        ({"terminals": 20_000}, "terminals.count"),
        ({"terminals": 10**12}, "terminals.count"),  # refused before 10**12 names are made
        ({"arrival_rate_bps": math.inf}, "terminals.workload.arrival_rate"),
        ({"arrival_rate_bps": 200e9}, "terminals.workload.arrival_rate"),
    ],
)
def test_with_overrides_rejects_invalid_arguments(kwargs: dict[str, Any], path: str) -> None:
    topo = load_topology(TOPOLOGIES / "tiny.yaml")
    with pytest.raises(TopologyError, match=rf"tiny\.yaml with_overrides\(.*\): {path}: got"):
        topo.with_overrides(**kwargs)


def test_topology_built_in_code_has_no_source() -> None:
    topo = replace(load_topology(TOPOLOGIES / "tiny.yaml"), source=None)
    assert topo.source is None
    with pytest.raises(TopologyError, match=r"^<topology 'tiny'>: terminals.count"):
        replace(topo, terminals=replace(topo.terminals, count=0))


# ── thousands of terminals: validation stays linear ─────────────────────────────────


class CountedName(str):
    """A host name that counts how often it is compared for equality: a search of a list
    compares it with each element, a dict or set lookup with one."""

    comparisons = 0
    budget = 0
    """Comparisons allowed before the test fails at once (instead of running for minutes)."""

    def __eq__(self, other: object) -> bool:
        CountedName.comparisons += 1
        assert CountedName.comparisons <= CountedName.budget, "names compared quadratically"
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def with_terminals(count: int, names: Callable[[str], str] = str) -> Topology:
    """tiny.yaml with `count` terminals, each with its own cpu and link override."""
    topo = load_topology(TOPOLOGIES / "tiny.yaml")
    hosts = [names(f"t{i}") for i in range(1, count + 1)]
    terminals = replace(
        topo.terminals,
        count=count,
        managed_by=("edge1", "edge2") * (count // 2),
        overrides={name: TerminalOverride(cpu_hz=2e9) for name in hosts},
    )
    network = replace(
        topo.network, overrides={name: LinkOverride(latency_s=0.006) for name in hosts}
    )
    return replace(topo, terminals=terminals, network=network)


def test_5000_terminals_with_overrides_validate_with_a_few_lookups_per_name() -> None:
    CountedName.comparisons, CountedName.budget = 0, 20 * 5000  # quadratic: 12.5 million
    topo = with_terminals(5000, CountedName)
    params = topo.mec_params()
    links = topo.links
    assert params.terminal_cpu_hz == 2e9
    assert params.managing_edge == (0, 1) * 2500
    assert links[4999] == Link("t5000", "s1", LinkSpec(14e6, 0.006, 0.0, 0.0))
    assert topo.link_for("t5000") == LinkSpec(14e6, 0.006, 0.0, 0.0)
    assert CountedName.comparisons <= 20 * 5000


def test_the_terminal_names_are_listed_a_fixed_number_of_times_whatever_the_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lists = 0
    names = TerminalGroup.names.fget
    assert names is not None

    def counted(group: TerminalGroup) -> list[str]:
        nonlocal lists
        lists += 1
        return names(group)

    monkeypatch.setattr(TerminalGroup, "names", property(counted))

    def lists_made(count: int) -> int:
        nonlocal lists
        topo = with_terminals(count)
        lists = 0
        assert replace(topo, name="again").mec_params()
        assert topo.links
        return lists

    assert lists_made(5000) == lists_made(4)


def test_a_file_of_5000_terminals_loads(write_tiny: Callable) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["terminals"].update(count=5000, managed_by=["edge2", "edge1"] * 2500)

    topo = load_topology(write_tiny(edit))
    assert topo.terminal_names[-1] == "t5000"
    assert topo.mec_params().managing_edge == (1, 0) * 2500


# ── per-host overrides and optional fields ──────────────────────────────────────────


def test_terminal_overrides_make_per_terminal_parameters(write_tiny: Callable) -> None:
    def overrides(data: dict[str, Any]) -> None:
        data["terminals"]["overrides"] = {
            "t2": {"cpu": "1.5GHz"},
            "t3": {
                "workload": {
                    "deadline": "6slots",
                    "density": "1000cycles/bit",
                    "size": {"distribution": "constant", "value": "4Mbit"},
                }
            },
            "t4": {"workload": {"task_probability": 0.25}},
        }

    params = load_topology(write_tiny(overrides)).mec_params()
    assert params.terminal_cpu_hz == (2.5e9, 1.5e9, 2.5e9, 2.5e9)
    assert params.deadline_slots == (12, 12, 6, 12)
    assert params.density_cycles_per_bit == (500.0, 500.0, 1000.0, 500.0)
    assert params.task_size_min_bits == (2e6, 2e6, 4e6, 2e6)
    assert params.task_size_max_bits == (5e6, 5e6, 4e6, 5e6)
    assert params.task_probability == (PAPER_P, PAPER_P, 2e6 * 0.1 / 4e6, 0.25)
    assert params.drop_reward == -36.0


def test_link_overrides_change_that_host_only(write_tiny: Callable) -> None:
    def overrides(data: dict[str, Any]) -> None:
        data["network"]["links"]["overrides"] = {
            "t3": {"bandwidth": "7Mbps", "latency": "8ms"},
            "edge2": {"latency": "30ms", "loss": "0.5%", "jitter": "250us"},
        }

    topo = load_topology(write_tiny(overrides))
    assert topo.link_for("t3") == LinkSpec(7e6, 0.008, 0.0, 0.0)
    assert topo.link_for("t2") == LinkSpec(14e6, 0.005, 0.0, 0.0)
    assert topo.link_for("edge2") == LinkSpec(100e6, 0.03, 0.005, 250e-6)
    assert topo.mec_params().uplink_bps == (14e6, 14e6, 7e6, 14e6)


def test_explicit_drop_reward_and_default_loss_and_jitter(write_tiny: Callable) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["reward"] = {"drop": -50}
        data["network"]["links"]["terminal-edge"] = {"bandwidth": "14Mbps", "latency": "5ms"}

    topo = load_topology(write_tiny(edit))
    assert topo.mec_params().drop_reward == -50.0
    assert topo.link_for("t1") == LinkSpec(14e6, 0.005, 0.0, 0.0)


def test_default_drop_reward_follows_the_largest_deadline(write_tiny: Callable) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["terminals"]["overrides"] = {"t1": {"workload": {"deadline": "20slots"}}}

    assert load_topology(write_tiny(edit)).mec_params().drop_reward == -60.0


def test_link_for_names_unknown_hosts_and_the_unshaped_cloud() -> None:
    topo = load_topology(TOPOLOGIES / "tiny.yaml")
    with pytest.raises(TopologyError, match=r"no host named 'edge3'.*did you mean"):
        topo.link_for("edge3")
    with pytest.raises(TopologyError, match=r"cloud\.host: 'cloud' has no shaped link"):
        topo.link_for("cloud")


# ── one table: each class of mistake in a file, and what its error must say ─────────

Edit = Callable[[dict[str, Any]], None]


def _parent(data: dict[str, Any], path: str) -> tuple[Any, Any]:
    """The container holding the field at `path` (`edges[1].cpu`) and the field's key."""
    steps: list[Any] = [
        int(step[1:-1]) if step.startswith("[") else step
        for step in re.findall(r"\[\d+\]|[^.\[\]]+", path)
    ]
    for step in steps[:-1]:
        data = data[step]
    return data, steps[-1]


def at(path: str, value: object) -> Edit:
    """An edit setting the field at `path` to `value`."""

    def edit(data: dict[str, Any]) -> None:
        container, key = _parent(data, path)
        container[key] = value

    return edit


def drop(path: str) -> Edit:
    """An edit deleting the field at `path`."""

    def edit(data: dict[str, Any]) -> None:
        container, key = _parent(data, path)
        del container[key]

    return edit


def both(*edits: Edit) -> Edit:
    """The edits one after the other."""

    def edit(data: dict[str, Any]) -> None:
        for each in edits:
            each(data)

    return edit


def alias_bomb(levels: int) -> bytes:
    """A "billion laughs" file: each level an anchored list of ten aliases of the last."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines).encode()


P_ABOVE_ONE = {"t2": {"workload": {"size": {"distribution": "constant", "value": "100kbit"}}}}
MANAGED_BY_TYPO = ["edge1", "edge2", "edge1", "egde2"]

BAD_TOPOLOGIES: list[tuple[str, Edit | bytes, list[str]]] = [
    # (id, an edit of tiny.yaml's data or the whole file's bytes, what the error must say);
    # every error must also name the file.
    # -- the file and its YAML
    (
        "yaml-syntax-error",
        b"name: broken\nslot: 100ms\nedges: [\n  {name: edge1, cpu: 41.8GHz\nx: 1\n",
        ["line 5", "invalid YAML"],
    ),
    ("duplicate-key", b"name: a\nslot: 100ms\nname: b\n", ["line 3", "duplicate key 'name'"]),
    ("file-over-1-MiB", b"#" * (MAX_FILE_BYTES + 1), ["more than 1048576 bytes (1 MiB)"]),
    (
        "not-utf-8",
        b"name: tiny\nslot: 100ms\ndescription: caf\xe9\n",
        ["byte 39 (line 3) is b'\\xe9', which is not UTF-8", "save it as UTF-8"],
    ),
    ("control-character", b"name: t\x00ny\n", ["line 1: character #x0000 at offset 7"]),
    ("alias-bomb", alias_bomb(9), ["line 6, column", "expands to more than 1000000 values"]),
    (
        "too-many-aliases",
        b"a: &a 1\nb: [" + b", ".join([b"*a"] * 10_001) + b"]\n",
        ["line 2, column", "more than 10000 aliases"],
    ),
    ("alias-inside-its-anchor", b"a: &a [*a]\n", ["alias *a stands inside the value &a"]),
    ("nesting-too-deep", b"a: " + b"[" * 1000 + b"]" * 1000, ["nest more than 32 deep"]),
    ("number-of-5000-digits", b"name: " + b"7" * 5000, ["found a number of 5000 characters"]),
    ("base-60-number", b"load_history: 1" + b":0" * 1000, ["a number of 2001 characters"]),
    ("unreadable-bool", b"name: !!bool maybe\n", ["line 1, column 7", "cannot read 'maybe'"]),
    ("date", b"name: 2001-01-01\n", ["'2001-01-01' tagged !!timestamp", "quote a string"]),
    ("set-tag", b"name: !!set {a}\n", ["tagged !!set, which topology files do not use"]),
    # -- fields: presence, keys, types
    (
        "unknown-key",
        at("terminals.workload.dedline", "12slots"),
        ["terminals.workload.dedline", "did you mean 'deadline'"],
    ),
    (
        "missing-required-field",
        drop("terminals.cpu"),
        ["terminals.cpu: missing required field", "frequency such as '2.5GHz'"],
    ),
    (
        "missing-arrival-rate-and-probability",
        drop("terminals.workload.arrival_rate"),
        ["terminals.workload: missing arrival_rate"],
    ),
    (
        "both-arrival-rate-and-probability",
        at("terminals.workload.task_probability", 0.1),
        ["terminals.workload: gives both arrival_rate and task_probability"],
    ),
    (
        "size-distribution-a-list",
        at("terminals.workload.size.distribution", ["uniform"]),
        ["terminals.workload.size.distribution: got a list; expected 'uniform' or 'constant'"],
    ),
    (
        "wrong-type",
        at("terminals.workload", ["2Mbps"]),
        ["terminals.workload: got a list; expected a mapping with keys"],
    ),
    # -- quantities and their units
    (
        "wrong-kind-of-unit",
        at("edges[1].cpu", "5ms"),
        ["edges[1].cpu", "'5ms', which is a time", "expected a frequency"],
    ),
    (
        "bare-number",
        at("terminals.workload.size.max", 5),
        ["terminals.workload.size.max", "bare number 5", "data size such as '2Mbit'"],
    ),
    (
        "negative-quantity",
        at("network.links.edge-cloud.latency", "-20ms"),
        ["network.links.edge-cloud.latency", "'-20ms'", "cannot be negative"],
    ),
    (
        "quantity-beyond-a-float",
        at("terminals.workload.arrival_rate", "1e999Mbps"),
        ["terminals.workload.arrival_rate: got '1e999Mbps', a number too large for a float"],
    ),
    (
        "quantity-below-a-float",
        at("network.links.terminal-edge.jitter", "1e-999s"),
        ["network.links.terminal-edge.jitter", "too small for a float", "write 0s"],
    ),
    (
        "quantity-of-103-characters",
        at("terminals.cpu", "1" * 100 + "GHz"),
        ["terminals.cpu", "103 characters long", "at most 64 characters"],
    ),
    (
        "non-integer-deadline",
        at("terminals.workload.deadline", "12.5slots"),
        ["terminals.workload.deadline", "'12.5slots'", "whole number of slots >= 1"],
    ),
    # -- every number within its range, the reason stated
    ("slot-of-1ns", at("slot", "1ns"), ["slot: got '1ns'", "from 1ms to 10s", "timers"]),
    ("slot-of-1min", at("slot", "60s"), ["slot: got '60s'", "from 1ms to 10s"]),
    ("no-load-history", at("load_history", 0), ["load_history: got 0", "from 1 to 100"]),
    ("long-load-history", at("load_history", 101), ["load_history: got 101", "pool stores"]),
    ("no-terminals", at("terminals.count", 0), ["terminals.count: got 0", "from 1 to 10000"]),
    (
        "20000-terminals",
        at("terminals.count", 20_000),
        ["terminals.count: got 20000", "a whole number from 1 to 10000", "Python process"],
    ),
    ("10^30-terminals", at("terminals.count", 10**30), ["terminals.count: got 1" + "0" * 30]),
    (
        "300-edges",
        at("edges", [{"name": f"edge{i}", "cpu": "1GHz"} for i in range(300)]),
        ["edges: got a list of 300 edges; expected a whole number from 1 to 256", "learner"],
    ),
    ("edge-cpu-of-1Hz", at("edges[0].cpu", "1Hz"), ["edges[0].cpu: got '1Hz'", "from 1MHz"]),
    ("terminal-cpu-of-0", at("terminals.cpu", "0GHz"), ["terminals.cpu: got '0GHz'"]),
    (
        "override-cpu-of-1PHz",
        at("terminals.overrides", {"t1": {"cpu": "1000000GHz"}}),
        ["terminals.overrides.t1.cpu: got '1000000GHz'", "to 10000GHz", "cores x clock"],
    ),
    (
        "density-of-0",
        at("terminals.workload.density", "0cycles/bit"),
        ["terminals.workload.density: got '0cycles/bit'", "from 0.01cycles/bit"],
    ),
    (
        "deadline-of-0-slots",
        at("terminals.workload.deadline", "0slots"),
        ["terminals.workload.deadline: got '0slots'", "whole number of slots from 1 to 1000"],
    ),
    (
        "deadline-of-5000-slots",
        at("terminals.workload.deadline", "5000slots"),
        ["terminals.workload.deadline: got '5000slots'", "calendar"],
    ),
    (
        "task-of-0-bits",
        at("terminals.workload.size.min", "0bit"),
        ["terminals.workload.size.min: got '0bit'", "from 1bit to 8Gbit"],
    ),
    (
        "task-of-2GB",
        at("terminals.workload.size.max", "2GB"),
        ["terminals.workload.size.max: got '2GB'", "Raspberry Pi"],
    ),
    (
        "arrival-rate-of-1Tbps",
        at("terminals.workload.arrival_rate", "1000Gbps"),
        ["terminals.workload.arrival_rate: got '1000Gbps'", "from 0bps to 100Gbps"],
    ),
    (
        "arrival-rate-implies-p-above-one",
        at("terminals.workload.arrival_rate", "50Mbps"),
        ["terminals.workload.arrival_rate", "50Mbps", "p = 1.429", "expected p <= 1"],
    ),
    (
        "override-implies-p-above-one",
        at("terminals.overrides", P_ABOVE_ONE),
        ["terminals.overrides.t2.workload", "p = 2 per slot for t2"],
    ),
    (
        "task-probability-nan",
        both(
            drop("terminals.workload.arrival_rate"),
            at("terminals.workload.task_probability", math.nan),
        ),
        ["terminals.workload.task_probability: got nan; expected a number from 0 to 1"],
    ),
    (
        "task-probability-above-one",
        both(
            drop("terminals.workload.arrival_rate"), at("terminals.workload.task_probability", 1.5)
        ),
        ["terminals.workload.task_probability: got 1.5"],
    ),
    ("drop-reward-of-minus-inf", at("reward", {"drop": -math.inf}), ["reward.drop: got -inf"]),
    (
        "drop-reward-of-minus-1e6",
        at("reward", {"drop": -1e6}),
        ["reward.drop: got -1000000.0", "from -100000 to 0", "float32"],
    ),
    ("positive-drop-reward", at("reward", {"drop": 1}), ["reward.drop: got 1", "a cost"]),
    (
        "bandwidth-of-1bps",
        at("network.links.terminal-edge.bandwidth", "1bps"),
        ["network.links.terminal-edge.bandwidth: got '1bps'", "from 1kbps to 100Gbps", "HTB"],
    ),
    (
        "bandwidth-of-0",
        at("network.links.edge-cloud.bandwidth", "0Mbps"),
        ["network.links.edge-cloud.bandwidth: got '0Mbps'"],
    ),
    (
        "latency-of-3s",
        at("network.links.edge-cloud.latency", "3s"),
        ["network.links.edge-cloud.latency: got '3s'", "from 0s to 2s", "handshake"],
    ),
    (
        "loss-of-150%",
        at("network.links.terminal-edge.loss", "150%"),
        ["network.links.terminal-edge.loss: got '150%'", "from 0% to 100%"],
    ),
    (
        "jitter-of-3s",
        at("network.links.overrides", {"t1": {"jitter": "3s"}}),
        ["network.links.overrides.t1.jitter: got '3s'", "from 0s to 2s"],
    ),
    # -- names and what they refer to
    (
        "unknown-edge-in-managed-by",
        at("terminals.managed_by", MANAGED_BY_TYPO),
        ["terminals.managed_by[3]", "'egde2', which is not an edge", "did you mean 'edge2'"],
    ),
    (
        "managed-by-of-the-wrong-length",
        at("terminals.managed_by", ["edge1", "edge2"]),
        ["terminals.managed_by: lists 2 edge names; expected one per terminal (4)"],
    ),
    (
        "override-for-a-missing-terminal",
        at("terminals.overrides", {"t9": {"cpu": "1GHz"}}),
        ["terminals.overrides.t9", "no terminal 't9'", "t1..t4"],
    ),
    (
        "link-override-for-a-missing-host",
        at("network.links.overrides", {"edge7": {"latency": "1ms"}}),
        ["network.links.overrides.edge7", "no terminal or edge 'edge7'"],
    ),
    (
        "duplicate-host-names",
        at("edges[1].name", "edge1"),
        ["edges[1].name: gives name 'edge1', already used by edges[0].name"],
    ),
]


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [pytest.param(edit, fragments, id=name) for name, edit, fragments in BAD_TOPOLOGIES],
)
def test_bad_topology_is_refused_naming_file_field_and_value(
    tmp_path: Path, tiny_data: dict[str, Any], edit: Edit | bytes, fragments: list[str]
) -> None:
    path = tmp_path / "edited.yaml"
    if isinstance(edit, bytes):
        path.write_bytes(edit)
    else:
        data = copy.deepcopy(tiny_data)
        edit(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    message = load_error(path)
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert str(path) in load_error(path)


def test_topology_error_is_a_value_error() -> None:
    assert issubclass(TopologyError, ValueError)
