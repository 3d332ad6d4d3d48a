"""What the emulation report says about partial participation, the weights' age and the
parties' memory."""

from emulation.report import (
    _federation_section,
    _memory_by_role_row,
    _participation_lines,
    _weights_age_section,
)


def test_the_report_names_nodes_that_missed_rounds_and_those_lost_with_their_uploads():
    federation = {
        "participation": {
            "t1": {"missed_rounds": 2, "reconnections": 1},
            "t2": {"missed_rounds": 0, "reconnections": 0},
            "t3": {"missed_rounds": 5, "reconnections": 0},
        },
        "lost_nodes": {"t3": {"uploads_held": 4}},
        "round_deadline_s": 20.0,
    }
    text = "\n".join(_participation_lines(federation))
    assert "1 of 3 nodes answered every round" in text
    assert "| t1 | 2 | 1 |  |" in text
    assert "| t3 | 5 | 0 | yes (4) |" in text
    assert "| t2 |" not in text


def test_the_report_shows_the_weights_age_from_the_edge_beside_the_cloud_path():
    age = {
        "decisions": 10,
        "age_slots_mean": 19.25,
        "age_slots_p50": 16.0,
        "age_slots_p95": 60.0,
        "age_slots_max": 71,
        "versions_behind_mean": 0.086,
        "versions_behind_max": 1,
    }
    relayed = {
        **age,
        "age_slots_mean": 55.3,
        "versions_behind_mean": 1.56,
        "versions_behind_max": 3,
    }
    text = "\n".join(_weights_age_section({"weights_age": age, "relayed_weights_age": relayed}))
    assert "| from the edge (as run) | 10 | 19.2 | 16 | 60 | 71 | 0.086 | 1 |" in text
    assert "| through the cloud's rounds only | 10 | 55.3 |" in text
    assert _weights_age_section({"weights_age": {"decisions": 0}}) == []


def test_the_report_gives_each_roles_memory_and_its_share_per_host():
    memory = {
        "pss_by_role": {
            "cloud": {"hosts": 1, "peak_pss_mb": 0.0, "pss_per_host_mb": 0.0, "peak_processes": 0},
            "edge": {
                "hosts": 2,
                "peak_pss_mb": 933.0,
                "pss_per_host_mb": 466.5,
                "peak_processes": 10,
            },
            "terminal": {
                "hosts": 4,
                "peak_pss_mb": 974.8,
                "pss_per_host_mb": 243.7,
                "peak_processes": 15,
            },
        }
    }
    [(label, text)] = _memory_by_role_row(memory)
    assert label == "memory by role"
    assert text.startswith("edge 933 MB (2 × 466 MB), terminal 975 MB (4 × 244 MB) PSS")
    assert "cloud" not in text  # a role with no process (a baseline's cloud) is left out
    assert _memory_by_role_row({"peak_pss_mb": 1.0}) == []  # a run from before it was kept


def _bytes(wire_up: int, wire_down: int, requests: int) -> dict:
    return {
        "wire_up_bytes": wire_up,
        "wire_down_bytes": wire_down,
        "wire_requests": requests,
        "up_plaintext_bytes": 900,
        "down_plaintext_bytes": 0,
        "encryption_overhead_bytes": 80,
    }


def _federation(counts: dict) -> dict:
    return {
        "rounds": 3,
        "mean_round_exchange_s": 2.5,
        "uploads_accepted": 4,
        "uploads_rejected": 0,
        "pool_size": 4,
        "edge_versions": {"edge1": 2},
        "authority_restarts": 0,
        "bytes": {"query.collect": counts},
    }


def test_the_report_never_shows_wire_bytes_it_did_not_measure_as_zero():
    unmetered = "\n".join(_federation_section(_federation(_bytes(0, 0, 0))))
    assert "| query.collect | not metered | not metered | not metered | 900 | 0 | 80 |" in (
        unmetered
    )
    assert "No wire meter ran" in unmetered
    tls = "\n".join(_federation_section(_federation(_bytes(5000, 1200, 0))))
    assert "| query.collect | 5000 | 1200 | n/a (TLS) | 900 | 0 | 80 |" in tls
    assert "No wire meter ran" not in tls
    insecure = "\n".join(_federation_section(_federation(_bytes(5000, 1200, 14))))
    assert "| query.collect | 5000 | 1200 | 14 | 900 | 0 | 80 |" in insecure
