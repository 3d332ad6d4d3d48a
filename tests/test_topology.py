"""Topology files: the shipped ones load to the paper's parameters, overrides apply, and
every class of mistake in a file is reported with the file, the field path and the value."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from fl_crb.topology import LinkSpec, Topology, TopologyError, load_topology

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
    with pytest.raises(TopologyError) as caught:
        topo.with_overrides(terminals=6)
    message = str(caught.value)
    assert "edited.yaml with_overrides(terminals=6)" in message
    assert "terminals.managed_by" in message
    assert "round-robin" in message


def test_with_overrides_rejects_dropping_an_overridden_terminal(write_tiny: Callable) -> None:
    def override_t4(data: dict[str, Any]) -> None:
        data["terminals"]["overrides"] = {"t4": {"cpu": "1GHz"}}

    with pytest.raises(TopologyError) as caught:
        load_topology(write_tiny(override_t4)).with_overrides(terminals=3)
    message = str(caught.value)
    assert "with_overrides(terminals=3)" in message
    assert "terminals.overrides.t4" in message
    assert "t1..t3" in message


def test_with_overrides_rejects_a_rate_implying_p_above_one() -> None:
    topo = load_topology(TOPOLOGIES / "tiny.yaml")
    with pytest.raises(TopologyError) as caught:
        topo.with_overrides(arrival_rate_bps=50e6)
    message = str(caught.value)
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


# ── one test per class of mistake in a file ─────────────────────────────────────────


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nslot: 100ms\nedges: [\n  {name: edge1, cpu: 41.8GHz\nx: 1\n")
    message = load_error(path)
    assert str(path) in message
    assert "line 5" in message
    assert "invalid YAML" in message


def test_duplicate_key_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("name: a\nslot: 100ms\nname: b\n")
    message = load_error(path)
    assert str(path) in message
    assert "line 3" in message
    assert "duplicate key 'name'" in message


def test_unknown_key_is_an_error_with_a_suggestion(write_tiny: Callable) -> None:
    path = write_tiny(lambda d: d["terminals"]["workload"].update(dedline="12slots"))
    message = load_error(path)
    assert str(path) in message
    assert "terminals.workload.dedline" in message
    assert "did you mean 'deadline'" in message


def test_missing_required_field_is_an_error(write_tiny: Callable) -> None:
    path = write_tiny(lambda d: d["terminals"].pop("cpu"))
    message = load_error(path)
    assert str(path) in message
    assert "terminals.cpu: missing required field" in message
    assert "frequency such as '2.5GHz'" in message


def test_missing_arrival_rate_and_probability_is_an_error(write_tiny: Callable) -> None:
    path = write_tiny(lambda d: d["terminals"]["workload"].pop("arrival_rate"))
    message = load_error(path)
    assert str(path) in message
    assert "terminals.workload: missing arrival_rate" in message


def test_both_arrival_rate_and_probability_is_an_error(write_tiny: Callable) -> None:
    path = write_tiny(lambda d: d["terminals"]["workload"].update(task_probability=0.1))
    message = load_error(path)
    assert str(path) in message
    assert "terminals.workload: gives both arrival_rate and task_probability" in message


def test_wrong_kind_of_unit_is_an_error(write_tiny: Callable) -> None:
    path = write_tiny(lambda d: d["edges"][1].update(cpu="5ms"))
    message = load_error(path)
    assert str(path) in message
    assert "edges[1].cpu" in message
    assert "'5ms', which is a time" in message
    assert "expected a frequency" in message


def test_bare_number_is_an_error_naming_the_unit(write_tiny: Callable) -> None:
    path = write_tiny(lambda d: d["terminals"]["workload"]["size"].update(max=5))
    message = load_error(path)
    assert str(path) in message
    assert "terminals.workload.size.max" in message
    assert "bare number 5" in message
    assert "data size such as '2Mbit'" in message


def test_negative_quantity_is_an_error(write_tiny: Callable) -> None:
    path = write_tiny(lambda d: d["network"]["links"]["edge-cloud"].update(latency="-20ms"))
    message = load_error(path)
    assert str(path) in message
    assert "network.links.edge-cloud.latency" in message
    assert "'-20ms'" in message
    assert "cannot be negative" in message


def test_arrival_rate_implying_p_above_one_is_an_error(write_tiny: Callable) -> None:
    path = write_tiny(lambda d: d["terminals"]["workload"].update(arrival_rate="50Mbps"))
    message = load_error(path)
    assert str(path) in message
    assert "terminals.workload.arrival_rate" in message
    assert "50Mbps" in message
    assert "p = 1.429" in message
    assert "expected p <= 1" in message


def test_override_implying_p_above_one_names_the_override(write_tiny: Callable) -> None:
    def edit(data: dict[str, Any]) -> None:
        size = {"distribution": "constant", "value": "100kbit"}
        data["terminals"]["overrides"] = {"t2": {"workload": {"size": size}}}

    message = load_error(write_tiny(edit))
    assert "terminals.overrides.t2.workload" in message
    assert "p = 2 per slot for t2" in message


def test_non_integer_deadline_is_an_error(write_tiny: Callable) -> None:
    path = write_tiny(lambda d: d["terminals"]["workload"].update(deadline="12.5slots"))
    message = load_error(path)
    assert str(path) in message
    assert "terminals.workload.deadline" in message
    assert "'12.5slots'" in message
    assert "whole number of slots >= 1" in message


def test_unknown_edge_in_managed_by_is_an_error(write_tiny: Callable) -> None:
    managed_by = ["edge1", "edge2", "edge1", "egde2"]
    path = write_tiny(lambda d: d["terminals"].update(managed_by=managed_by))
    message = load_error(path)
    assert str(path) in message
    assert "terminals.managed_by[3]" in message
    assert "'egde2', which is not an edge" in message
    assert "did you mean 'edge2'" in message


def test_managed_by_of_the_wrong_length_is_an_error(write_tiny: Callable) -> None:
    path = write_tiny(lambda d: d["terminals"].update(managed_by=["edge1", "edge2"]))
    message = load_error(path)
    assert str(path) in message
    assert "terminals.managed_by: lists 2 edge names; expected one per terminal (4)" in message


def test_override_for_a_missing_terminal_is_an_error(write_tiny: Callable) -> None:
    path = write_tiny(lambda d: d["terminals"].update(overrides={"t9": {"cpu": "1GHz"}}))
    message = load_error(path)
    assert str(path) in message
    assert "terminals.overrides.t9" in message
    assert "no terminal 't9'" in message
    assert "t1..t4" in message


def test_link_override_for_a_missing_host_is_an_error(write_tiny: Callable) -> None:
    overrides = {"edge7": {"latency": "1ms"}}
    path = write_tiny(lambda d: d["network"]["links"].update(overrides=overrides))
    message = load_error(path)
    assert str(path) in message
    assert "network.links.overrides.edge7" in message
    assert "no terminal or edge 'edge7'" in message


def test_wrong_type_is_an_error(write_tiny: Callable) -> None:
    path = write_tiny(lambda d: d["terminals"].update(workload=["2Mbps"]))
    message = load_error(path)
    assert str(path) in message
    assert "terminals.workload: got a list; expected a mapping with keys" in message


def test_duplicate_host_names_are_an_error(write_tiny: Callable) -> None:
    path = write_tiny(lambda d: d["edges"][1].update(name="edge1"))
    message = load_error(path)
    assert str(path) in message
    assert "edges[1].name: gives name 'edge1', already used by edges[0].name" in message


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert str(path) in load_error(path)


def test_topology_error_is_a_value_error() -> None:
    assert issubclass(TopologyError, ValueError)
