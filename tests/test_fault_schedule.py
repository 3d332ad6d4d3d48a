"""The fault schedule loader: good files, and every kind of bad input named by file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulation.faults.schedule import (
    NOT_RESTARTED_IN_ROLES,
    SUPERVISED,
    FaultContext,
    FaultScheduleError,
    load_fault_schedule,
)
from fl_crb.topology import load_topology

ROOT = Path(__file__).resolve().parent.parent
TINY = load_topology(ROOT / "topologies" / "tiny.yaml")
FOUR_EDGE = load_topology(ROOT / "topologies" / "four-edge.yaml")
LOCAL = FaultContext(TINY, 12.0, federated=False)
FEDERATED = FaultContext(TINY, 60.0, federated=True)


def _load(tmp_path: Path, text: str, context: FaultContext = LOCAL):
    path = tmp_path / "faults.yaml"
    path.write_text(text)
    return load_fault_schedule(path, context)


def _refused(tmp_path: Path, text: str, context: FaultContext = LOCAL) -> FaultScheduleError:
    with pytest.raises(FaultScheduleError) as caught:
        _load(tmp_path, text, context)
    assert str(tmp_path / "faults.yaml") in str(caught.value)
    return caught.value


def test_the_shipped_tiny_schedule_reads_in_time_order():
    schedule = load_fault_schedule(ROOT / "topologies" / "faults" / "tiny-blips.yaml", LOCAL)
    assert schedule.name == "tiny-blips"
    assert [(e.action, e.target, e.at_s, e.for_s) for e in schedule.events] == [
        ("link-down", "link t2", 2.0, 3.0),
        ("shape", "link t3", 3.0, 4.0),
        ("stop", "terminal t4", 4.0, 3.0),
        ("restart", "terminal t3", 5.0, None),
        ("shape", "link edge2", 6.0, 3.0),
        ("restart", "edge-server edge1", 7.0, None),
        ("partition", "partition t1", 8.0, 2.0),
        ("kill", "terminal t1", 10.0, None),
    ]
    assert schedule.supervised_hosts == ("t3", "edge1")
    narrowed, slowed = schedule.events[1], schedule.events[4]
    assert (narrowed.bandwidth_bps, narrowed.latency_s, narrowed.loss_fraction) == (2e6, None, None)
    assert (slowed.bandwidth_bps, slowed.latency_s, slowed.loss_fraction) == (None, 0.04, 0.02)


def test_the_chaos_schedule_does_every_kind_of_fault_on_four_edge():
    context = FaultContext(FOUR_EDGE, 120.0, federated=True)
    schedule = load_fault_schedule(ROOT / "topologies" / "faults" / "four-edge-chaos.yaml", context)
    actions = {e.action for e in schedule.events}
    assert actions == {"link-down", "shape", "partition", "kill", "stop", "restart"}
    assert {e.party for e in schedule.events if e.party} == {
        "terminal", "edge-server", "edge-learner", "supernode", "authority", "superlink"
    }  # fmt: skip
    shapes = [e for e in schedule.events if e.action == "shape"]
    assert any(e.bandwidth_bps for e in shapes) and any(e.latency_s for e in shapes)
    assert any(e.loss_fraction for e in shapes)
    assert {e.party for e in schedule.events if e.action == "restart"} == {
        "authority", "edge-learner", "terminal", "edge-server", "supernode"
    }  # fmt: skip
    assert schedule.supervised_hosts == ("t10", "edge1")
    assert not schedule.ends_superlink  # only stops it: its state may stay in memory
    assert all(e.end_s <= 120.0 for e in schedule.events)


@pytest.mark.parametrize(("action", "ends"), [("kill", True), ("restart", True), ("stop", False)])
def test_a_schedule_that_ends_the_superlink_asks_for_its_state_in_a_file(tmp_path, action, ends):
    context = FaultContext(FOUR_EDGE, 120.0, federated=True)
    duration = ", for: 2s" if action == "stop" else ""
    text = f"name: x\nevents:\n  - {{at: 5s, do: {action}, party: superlink{duration}}}\n"
    assert _load(tmp_path, text, context).ends_superlink is ends


def test_cloud_parties_need_no_host(tmp_path):
    schedule = _load(
        tmp_path,
        "name: x\nevents:\n  - {at: 1s, do: restart, party: authority}\n"
        "  - {at: 2s, for: 1s, do: stop, party: superlink, host: cloud}\n",
        FEDERATED,
    )
    assert [(e.party, e.host) for e in schedule.events] == [
        ("authority", "cloud"),
        ("superlink", "cloud"),
    ]


@pytest.mark.parametrize(
    ("events", "field", "words"),
    [
        ("  - {at: 1s, do: explode, link: t1}", "events[0].do", "'explode'"),
        ("  - {at: 1s, for: 1s, do: link-dwn, link: t1}", "events[0].do",
         "did you mean 'link-down'"),
        ("  - {at: 1s, for: 1s, do: link-down, link: t9}", "events[0].link", "'t9'"),
        ("  - {at: 1s, for: 1s, do: link-down, link: cloud}", "events[0].link", "terminal or edge"),
        ("  - {at: 1s, for: 1s, do: link-down}", "events[0].link", "missing required field"),
        ("  - {at: 1s, do: link-down, link: t1}", "events[0].for", "missing required field"),
        ("  - {at: 1s, for: 1s, do: link-down, link: t1, bandwidth: 1Mbps}", "events[0].bandwidth",
         "unknown key"),
        ("  - {at: 13s, for: 1s, do: link-down, link: t1}", "events[0].at", "within the run"),
        ("  - {at: -1s, for: 1s, do: link-down, link: t1}", "events[0].at", "cannot be negative"),
        ("  - {at: 10s, for: 5s, do: link-down, link: t1}", "events[0].for", "undone within"),
        ("  - {at: 1s, for: soon, do: link-down, link: t1}", "events[0].for", "time"),
        ("  - {at: 1s, for: 1Mbps, do: link-down, link: t1}", "events[0].for", "time"),
        ("  - {at: 1s, for: 1e999s, do: link-down, link: t1}", "events[0].for", ""),
        ("  - {at: 1s, for: 1s, do: shape, link: t1}", "events[0]", "bandwidth, latency or loss"),
        ("  - {at: 1s, for: 1s, do: shape, link: t1, bandwidth: 1bps}", "events[0].bandwidth",
         "1kbps"),
        ("  - {at: 1s, for: 1s, do: shape, link: t1, latency: 5s}", "events[0].latency", "2s"),
        ("  - {at: 1s, for: 1s, do: shape, link: t1, loss: 150%}", "events[0].loss", "100%"),
        ("  - {at: 1s, for: 1s, do: shape, link: t1, loss: 0.5}", "events[0].loss", "percentage"),
        ("  - {at: 1s, for: 1s, do: partition, hosts: []}", "events[0].hosts", "non-empty"),
        ("  - {at: 1s, for: 1s, do: partition, hosts: [t1, t1]}", "events[0].hosts[1]", "twice"),
        ("  - {at: 1s, for: 1s, do: partition, hosts: [t1, tx]}", "events[0].hosts[1]", "'tx'"),
        ("  - {at: 1s, for: 1s, do: partition, hosts: [t1, t2, t3, t4, edge1, edge2, cloud]}",
         "events[0].hosts", "every host"),
        ("  - {at: 1s, do: kill, party: terminal, host: edge1}", "events[0].host", "'edge1'"),
        ("  - {at: 1s, do: kill, party: termnal, host: t1}", "events[0].party", "did you mean"),
        ("  - {at: 1s, do: kill, party: authority}", "events[0].party", "federation"),
        ("  - {at: 1s, do: restart, party: terminal, host: t1}\n"
         "  - {at: 5s, do: kill, party: terminal, host: t1}", "events[1]", "events[0] restarts"),
        ("  - {at: 1s, for: 1s, do: kill, party: terminal, host: t1}", "events[0].for",
         "unknown key"),
        ("  - [1s, kill]", "events[0]", "a mapping"),
        ("  - {at: 1s, for: 5s, do: shape, link: t1, loss: 1%}\n"
         "  - {at: 3s, for: 1s, do: shape, link: t1, bandwidth: 1Mbps}", "events[1]", "overlaps"),
    ],
)  # fmt: skip
def test_bad_events_are_refused_naming_file_and_field(tmp_path, events, field, words):
    error = _refused(tmp_path, f"name: bad\nevents:\n{events}\n")
    assert error.path == field
    assert words in str(error)


def test_terminals_and_edge_servers_restart_under_the_coordinator_not_in_a_role_deployment(
    tmp_path,
):
    text = (
        "name: x\nevents:\n  - {at: 1s, do: restart, party: terminal, host: t2}\n"
        "  - {at: 2s, do: restart, party: edge-server, host: edge1}\n"
        "  - {at: 3s, do: kill, party: terminal, host: t3}\n"
        "  - {at: 4s, do: restart, party: terminal, host: t2}\n"
    )
    schedule = _load(tmp_path, text)
    assert [e.action for e in schedule.events] == ["restart", "restart", "kill", "restart"]
    assert schedule.supervised_hosts == ("t2", "edge1")  # t3 is killed for good
    roles = {k: v for k, v in SUPERVISED.items() if k not in NOT_RESTARTED_IN_ROLES}
    role_deployment = FaultContext(TINY, 12.0, federated=False, restartable=roles)
    error = _refused(tmp_path, text, role_deployment)
    assert error.path == "events[0].party"
    assert "cannot restart a terminal: in a role deployment" in str(error)


def test_restart_of_federation_parties_needs_the_federation_and_a_supervisor(tmp_path):
    text = "name: x\nevents:\n  - {at: 1s, do: restart, party: edge-learner, host: edge1}\n"
    assert _load(tmp_path, text, FEDERATED).events[0].party == "edge-learner"
    unfederated = FaultContext(TINY, 60.0, federated=False)
    assert "a party of the federation, but this run has none" in str(
        _refused(tmp_path, text, unfederated)
    )
    superlink = "name: x\nevents:\n  - {at: 1s, do: restart, party: superlink}\n"
    assert _load(tmp_path, superlink, FEDERATED).events[0].party == "superlink"
    roles = {k: v for k, v in SUPERVISED.items() if k not in NOT_RESTARTED_IN_ROLES}
    role_deployment = FaultContext(TINY, 60.0, True, roles)
    assert "`fl-crb authority` starts the SuperLink once" in str(
        _refused(tmp_path, superlink, role_deployment)
    )


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("events: []\nname: x\n", "events", "non-empty"),
        ("name: x\n", "events", "missing required field"),
        ("name: x\nevents: {}\nextra: 1\n", "extra", "unknown key"),
        ("- 1\n- 2\n", "", "a mapping"),
        ("name: x\nevents: &a [*a]\n", "", ""),
    ],
)
def test_bad_files_are_refused_naming_file_and_field(tmp_path, text, field, words):
    error = _refused(tmp_path, text)
    assert error.path == field
    assert words in str(error)


def test_non_utf8_and_alias_bombs_are_refused_naming_the_file(tmp_path):
    (tmp_path / "faults.yaml").write_bytes(b"name: \xff\nevents: []\n")
    with pytest.raises(FaultScheduleError, match="not UTF-8"):
        load_fault_schedule(tmp_path / "faults.yaml", LOCAL)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    error = _refused(tmp_path, bomb)
    assert "values" in str(error) or "alias" in str(error)


@settings(max_examples=60, deadline=None)
@given(
    at=st.floats(min_value=0, max_value=20, allow_nan=False),
    length=st.floats(min_value=0, max_value=20, allow_nan=False),
)
def test_an_event_is_accepted_exactly_when_it_lies_within_the_run(tmp_path_factory, at, length):
    tmp_path = tmp_path_factory.mktemp("p")
    text = f"name: x\nevents:\n  - {{at: {at!r}s, for: {length!r}s, do: link-down, link: t1}}\n"
    inside = at <= 12.0 and 1e-3 <= length <= 12.0 - at
    if inside:
        event = _load(tmp_path, text).events[0]
        assert (event.at_s, event.for_s) == (at, length)
    else:
        error = _refused(tmp_path, text)
        assert error.path in ("events[0].at", "events[0].for")
