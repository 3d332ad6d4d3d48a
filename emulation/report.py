"""The emulation's run folder outputs: JSON, CSV tables, figures, report.md, summary table.

`write_report` adds to the data plane's run folder:

    emulation.json     everything below plus the run's settings, timings and machine load
    compare-sim.json   `fl-crb compare-sim` on the run's own trace
    interfaces.csv     bytes and packets per host interface over the run (kernel counters)
    terminals.csv      per terminal: tasks, offloaded, payload bytes, interface bytes
    timeline.csv       per window: tasks, delay, failure rate, weight versions
    report.md          the report a researcher can cite, with plots/*.png (with a fault
                       schedule: the faults on the timeline and in a table, and the
                       accounting of tasks and uploads after them; a run a signal
                       stopped says so at the top: which signal, when, what it cut off)

`summary_table` is the table the command prints at the end.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from emulation import plots
from emulation.collect import AGREEMENT_TARGET, Collected
from emulation.verify import LinkReport, summarize_daemon


@dataclass
class EmulationReport:
    """What one emulation run measured."""

    config: dict[str, object]
    """The `EmulationConfig` it ran with."""
    topology: str
    """Topology name."""
    terminals: int
    """Terminal count."""
    summary: dict[str, object]
    """The data plane's summary.json."""
    links: LinkReport
    """The link check before the run."""
    interfaces: list[dict[str, object]]
    """Per host interface: bytes and packets each way over the run."""
    collected: Collected
    """Timeline, per-terminal bytes, compare-sim and its reasons."""
    network: dict[str, object]
    """The run slot, latency mechanism and each host's network-namespace inode."""
    memory: dict[str, object]
    """Peak summed RSS and process count of the parties."""
    delay_daemon: dict | None
    """The delay daemon's load over the run (None with netem)."""
    timings: dict[str, float]
    """Seconds per phase: network build, link check, party start, run, teardown, collect."""
    machine: dict[str, object]
    """CPUs and load average before and after."""
    notes: list[str]
    """How the run was set up, in sentences (e.g. where the policy came from)."""

    def to_dict(self) -> dict[str, object]:
        """JSON form (emulation.json)."""
        return {
            "topology": self.topology,
            "terminals": self.terminals,
            "config": self.config,
            "notes": self.notes,
            "network": self.network,
            "timings_s": self.timings,
            "machine": self.machine,
            "memory": self.memory,
            "links": self.links.to_dict(),
            "summary": self.summary,
            "delay_daemon_during_run": self.delay_daemon,
            "compare_sim": self.collected.compare,
            "transfer_lag_slots": self.collected.transfer_lag,
            "agreement_reasons": self.collected.reasons,
            "terminals_bytes": self.collected.terminals,
            "timeline": self.collected.timeline,
        }


def write_report(out: Path, report: EmulationReport) -> None:
    """Write every output file of the report into the run folder `out`."""
    collected = report.collected
    (out / "emulation.json").write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    (out / "compare-sim.json").write_text(json.dumps(collected.compare, indent=1) + "\n")
    _write_csv(out / "interfaces.csv", report.interfaces)
    _write_csv(out / "terminals.csv", collected.terminals)
    _write_csv(out / "timeline.csv", collected.timeline)
    figures = out / "plots"
    figures.mkdir(exist_ok=True)
    if collected.timeline:
        faults = report.summary.get("faults")
        plots.plot_timeline(
            collected.timeline,
            figures / "timeline.png",
            faults if isinstance(faults, list) else [],
            collected.rounds,
        )
        plots.plot_weight_versions(collected.timeline, figures / "weights_version.png")
    plots.plot_bytes_per_terminal(collected.terminals, figures / "bytes_per_terminal.png")
    plots.plot_links(report.links, figures / "links.png")
    (out / "report.md").write_text(markdown(report))


def summary_rows(report: EmulationReport) -> list[tuple[str, str]]:
    """(what, value) pairs of the end-of-run summary."""
    s, c = report.summary, report.collected.compare
    terminal_tx = sum(r["interface_tx_bytes"] for r in report.collected.terminals)
    payload = sum(r["payload_bytes"] for r in report.collected.terminals)
    lat = max((abs(x.error_fraction or 0) for x in report.links.latency), default=0.0)
    bw = max((abs(x.error_fraction or 0) for x in report.links.bandwidth), default=0.0)
    sim = c["simulator"]
    machine, memory = report.machine, report.memory
    timings = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in report.timings.items())
    return [
        ("topology", f"{report.topology}, {report.terminals} terminals"),
        ("policy", str(s["policy"])),
        ("links", f"{report.links.mechanism}; worst error RTT {lat:.1%}, bandwidth {bw:.1%}"),
        (
            "tasks",
            f"{s['tasks']} ({s['finished']} finished, {s['dropped']} dropped, "
            f"{s['unresolved']} unresolved)",
        ),
        ("average delay", _seconds(s["avg_delay_s"])),
        ("failure rate", _share(s["failure_rate"])),
        (
            "sim: average delay / failure",
            f"{_seconds(sim['avg_delay_s'])} / {_share(sim['failure_rate'])}",
        ),
        (
            "agreement with simulator",
            f"outcome {_share(c['outcome_agreement'])}, delay ±1 slot "
            f"{_share(c['delay_agreement_within_1_slot'])}, exact {_share(c['exact_agreement'])}",
        ),
        (
            "slot overruns",
            f"{s['overruns']} of {s['boundaries']} boundaries ({_share(s['overrun_share'])}), "
            f"worst {s['worst_lateness_ms']} ms",
        ),
        (
            "terminal bytes",
            f"{terminal_tx / 1e6:.1f} MB on the wire for {payload / 1e6:.1f} MB of task payload",
        ),
        (
            "parties' memory",
            f"{memory['peak_pss_mb']} MB PSS at the peak ({memory['peak_summed_rss_mb']} MB "
            f"summed RSS), {memory['peak_processes']} processes",
        ),
        *_memory_by_role_row(memory),
        *_faults_row(s),
        ("timings", timings),
        (
            "load average",
            f"{machine['load_avg_1min_before']} → {machine['load_avg_1min_after']} "
            f"on {machine['cpus']} CPUs",
        ),
    ]


def _memory_by_role_row(memory: dict) -> list[tuple[str, str]]:
    """Each role's own peak PSS and its share per host (absent in runs before it was kept)."""
    by_role = memory.get("pss_by_role")
    if not by_role:
        return []
    parts = [
        f"{role} {r['peak_pss_mb']:.0f} MB ({r['hosts']} × {r['pss_per_host_mb']:.0f} MB)"
        for role, r in by_role.items()
        if r["peak_processes"]
    ]
    return [("memory by role", ", ".join(parts) + " PSS, each role at its own peak")]


def _faults_row(summary: dict[str, object]) -> list[tuple[str, str]]:
    """The fault schedule's line of the summary: faults applied, failed, and what the
    accounting found after them (none without a schedule)."""
    faults, books = summary.get("faults"), summary.get("accounting")
    if not isinstance(faults, list) or not isinstance(books, dict):
        return []
    failed = sum(1 for f in faults if f["error"])
    lost = books["acknowledged_uploads_lost"]
    uploads = "no uploads" if lost is None else f"{lost} acknowledged uploads lost"
    return [
        (
            "faults",
            f"{len(faults) - failed} of {len(faults)} applied ({failed} failed); "
            f"{books['tasks_unaccounted']} tasks unaccounted, {uploads}",
        )
    ]


def summary_table(report: EmulationReport) -> str:
    """The end-of-run summary as aligned text."""
    rows = summary_rows(report)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:>{width}}  {v}" for k, v in rows)


def markdown(report: EmulationReport) -> str:
    """report.md."""
    c = report.collected.compare
    lines = [
        f"# Emulation of `{report.topology}`: {report.terminals} terminals, "
        f"{report.summary['policy']}",
        "",
        *_interrupted_lines(report.summary),
        *(f"- {note}" for note in report.notes),
        "",
        "## Summary",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in summary_rows(report)),
        "",
        "## Links: measured vs configured",
        "",
        report.links.table(),
        "",
        summarize_daemon(report.links.delay_daemon) + " (during the link check).",
        "",
        "![links](plots/links.png)",
        "",
        "## Delay and failure over time",
        "",
        *(
            [
                "Top: the faults of the schedule, one lane each while in force (a cross: a "
                "party killed), numbered as in the table below."
            ]
            if report.summary.get("faults")
            else []
        ),
        *(
            ["Bottom: the federation's rounds, each at its start, by its exchange time."]
            if report.collected.rounds
            else []
        ),
        "",
        "![timeline](plots/timeline.png)",
        "",
        *_faults_section(report.summary),
        "## Weight versions over time",
        "",
        "The version of the weights that decided each task (the task log's `decided_by`); "
        "a baseline has none.",
        "",
        "![weights](plots/weights_version.png)",
        "",
        "## Bytes per terminal",
        "",
        "Payload bytes of the offloaded tasks beside what the terminal's interface counted "
        "(TCP/IP headers, the protocol's frames, acknowledgements and load reports come on "
        "top).",
        "",
        "![bytes](plots/bytes_per_terminal.png)",
        "",
        "## The simulator on the same trace (compare-sim)",
        "",
        f"Outcome agreement {_share(c['outcome_agreement'])}, delay within one slot "
        f"{_share(c['delay_agreement_within_1_slot'])} (target {AGREEMENT_TARGET:.0%}), "
        f"exact {_share(c['exact_agreement'])}, decisions "
        f"{_share(c['decision_agreement'])}.",
        "",
        *(f"- {reason}" for reason in report.collected.reasons or ["every task agrees"]),
        "",
        "Offloaded tasks by how many slots after the model's uplink their last byte reached "
        "the edge: "
        + (", ".join(f"{k}: {v}" for k, v in report.collected.transfer_lag.items()) or "none")
        + ". (With unpaced uplinks the terminal writes a task's bytes when it starts, so "
        "compare-sim's `late_receipts` counts every transfer longer than a slot.)",
        "",
        "```json",
        json.dumps(c["departures"], indent=1),
        "```",
        "",
        *_federation_section(report.summary.get("federation")),
        *_weights_age_section(report.summary),
        "## The delay daemon during the run",
        "",
        summarize_daemon(report.delay_daemon) if report.delay_daemon else "netem: no daemon.",
        "",
        "Files: emulation.json, compare-sim.json, tasks.csv, summary.json, interfaces.csv, "
        "terminals.csv, timeline.csv, links.md/json, network.log, logs/, parties/.",
        "",
    ]
    return "\n".join(lines)


def _interrupted_lines(summary: dict[str, object]) -> list[str]:
    """The top of the report of a run a signal stopped: which, when, and what that leaves
    out (nothing for a run that ran to its end)."""
    at = summary.get("interrupted_at")
    if not isinstance(at, dict):
        return []
    return [
        f"**Interrupted by {summary['interrupted_by']}** {at['run_s']:.1f} s into the run "
        f"(slot {at['slot']} of {at['end_slot']}): the parties were stopped and everything "
        "below covers the part that ran. "
        f"{summary['tasks_cut_by_interrupt']} tasks were cut off unresolved (their deadline "
        "had not passed when the signal came); the arrivals after the stop never happened, "
        "and compare-sim counts them as missing tasks.",
        "",
    ]


def _faults_section(summary: dict[str, object]) -> list[str]:
    """The fault schedule's events as applied, and the accounting after them."""
    faults, books = summary.get("faults"), summary.get("accounting")
    if not isinstance(faults, list) or not isinstance(books, dict):
        return []
    lines = [
        "## Faults",
        "",
        "| # | fault | target | scheduled (s) | applied (s) | undone (s) | rounds during | "
        "effect |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in faults:
        scheduled = f"{f['at_s']:g}" + (f" for {f['for_s']:g}" if f["for_s"] is not None else "")
        undone = f["undone_s"] if f["undone_s"] is not None else f.get("restarted_s")
        effect = f["effect"] + (f"; then {f['undo_effect']}" if f["undo_effect"] else "")
        if f["error"]:
            effect = f"**failed**: {f['error']}" + (f" ({effect})" if f["effect"] else "")
        lines.append(
            f"| {f['event']} | {f['kind']} | {f['target']} | {scheduled} | "
            f"{_maybe(f['applied_s'])} | {_maybe(undone)} | {_rounds(f)} | "
            f"{effect} |"
        )
    lost = books["acknowledged_uploads_lost"]
    lines += [
        "",
        f"Accounting: {books['tasks_unaccounted']} tasks unaccounted (neither finished, "
        "dropped at their deadline, nor counted as lost to a fault); "
        + (
            "no federation, so no uploads"
            if lost is None
            else f"{lost} of {books['acknowledged_uploads']} acknowledged uploads missing "
            "from the authority's durable pool"
        )
        + "; restarts "
        + (", ".join(f"{k} {v}" for k, v in books["restarts"].items()) or "none")
        + "; dead parties "
        + (", ".join(str(d["party"]) for d in books["dead_parties"]) or "none")
        + ".",
        "",
    ]
    return lines


def _rounds(fault: dict) -> str:
    """Rounds that ran while a timed fault was in force, and whether the authority was
    down meanwhile (blank for kills and restarts, and without the federation)."""
    if "rounds_during" not in fault:
        return ""
    return str(fault["rounds_during"]) + ("" if fault["authority_up"] else " (authority down)")


def _maybe(value: object) -> str:
    return "" if value is None else f"{float(value):.2f}"


def _federation_section(federation: object) -> list[str]:
    """Rounds, uploads, weight versions and bytes per message type of a federated run."""
    if not isinstance(federation, dict):
        return []
    if "rounds" not in federation:  # given up or stopped before it wrote its summary
        return [
            "## The federation",
            "",
            "The authority did not finish (given up, see authority/supervisor.log, or the "
            "run was stopped before it wrote its summary): no federation figures; "
            "authority restarts "
            f"{federation.get('authority_restarts', 'n/a')}.",
            "",
        ]
    lines = [
        "## The federation",
        "",
        f"{federation['rounds']} rounds, mean round exchange "
        f"{federation['mean_round_exchange_s']:.2f} s; uploads accepted "
        f"{federation['uploads_accepted']}, rejected {federation['uploads_rejected'] or 0}; "
        f"pool {federation['pool_size']} trajectories; edge weight versions "
        f"{federation['edge_versions']}; authority restarts {federation['authority_restarts']}.",
        "",
        "| message type | wire up (B) | wire down (B) | requests | plaintext up (B) | "
        "plaintext down (B) | encryption overhead (B) |",
        "|---|---|---|---|---|---|---|",
    ]
    counted = federation["bytes"].values()
    metered = any(b["wire_up_bytes"] or b["wire_down_bytes"] for b in counted)
    requests_counted = any(b["wire_requests"] for b in counted)
    for kind, b in federation["bytes"].items():
        requests = b["wire_requests"] if requests_counted else "n/a (TLS)"
        wire = (
            f"{b['wire_up_bytes']} | {b['wire_down_bytes']} | {requests}"
            if metered
            else "not metered | not metered | not metered"
        )
        lines.append(
            f"| {kind} | {wire} | {b['up_plaintext_bytes']} | {b['down_plaintext_bytes']} | "
            f"{b['encryption_overhead_bytes']} |"
        )
    if not metered:
        lines += [
            "",
            "No wire meter ran between the nodes and the SuperLink (the role deployment "
            "has none: each host speaks TLS to the cloud's SuperLink directly), so the "
            "wire bytes per message type are not measured; each host's link bytes are "
            "(the interface counters above).",
        ]
    return [*lines, "", *_relay_lines(federation), *_participation_lines(federation)]


def _relay_lines(federation: dict) -> list[str]:
    """The relay uplink's account (`--uplink relay`): what each edge carried, the sequence
    gaps and uploads refused as not managed; nothing in the direct uplink."""
    relay = federation.get("relay")
    if not isinstance(relay, dict):
        return []
    carried = ", ".join(
        f"{edge} {e['uploads_relayed']} (store {e['store_backlog_at_end']} at the end)"
        for edge, e in relay["edges"].items()
    )
    gaps = sum(relay["sequence_gaps_by_terminal"].values())
    return [
        f"Relay uplink (no SuperNode on the terminals): uploads carried by {carried}; "
        f"{gaps} sequence gaps, {relay['not_managed_refused']} uploads refused as relayed "
        "for a terminal the edge does not manage.",
        "",
    ]


def _participation_lines(federation: dict) -> list[str]:
    """The nodes that missed rounds or came back (partial participation), and those lost
    by the end with the uploads they still held."""
    nodes = federation.get("participation") or {}
    uneven = {
        name: node
        for name, node in nodes.items()
        if node.get("missed_rounds") or node.get("reconnections")
    }
    lost = federation.get("lost_nodes") or {}
    deadline = federation.get("round_deadline_s")
    lines = [
        f"Round deadline {_seconds(deadline)}; {len(nodes) - len(uneven)} of {len(nodes)} "
        "nodes answered every round."
    ]
    if uneven:
        lines += ["", "| node | missed rounds | reconnections | lost (uploads held) |"]
        lines.append("|---|---|---|---|")
        for name, node in sorted(uneven.items()):
            held = lost[name].get("uploads_held") if name in lost else None
            gone = "" if name not in lost else f"yes ({held if held is not None else 'n/a'})"
            lines.append(
                f"| {name} | {node.get('missed_rounds', 0)} | {node.get('reconnections', 0)} | "
                f"{gone} |"
            )
    return [*lines, ""]


def _weights_age_section(summary: dict) -> list[str]:
    """How old the weights were that terminals decided with: handed out by their edge,
    beside the version the cloud's rounds alone would have given them in the same run."""
    direct, relayed = summary.get("weights_age"), summary.get("relayed_weights_age")
    if not isinstance(direct, dict) or not direct.get("decisions"):
        return []
    rows = [("from the edge (as run)", direct), ("through the cloud's rounds only", relayed)]
    lines = [
        "## The weights' age at decision time",
        "",
        "| weights | decisions | age mean (slots) | p50 | p95 | max | versions behind mean | max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, age in rows:
        if not isinstance(age, dict) or not age.get("decisions"):
            lines.append(f"| {label} | 0 | | | | | | |")
            continue
        lines.append(
            f"| {label} | {age['decisions']} | {age['age_slots_mean']:.1f} | "
            f"{age['age_slots_p50']:g} | {age['age_slots_p95']:g} | {age['age_slots_max']} | "
            f"{age['versions_behind_mean']:.3f} | {age['versions_behind_max']} |"
        )
    return [*lines, ""]


def _write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="") as file:
        if not rows:
            return
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _seconds(value: object) -> str:
    return "n/a" if value is None else f"{float(value):.3f} s"


def _share(value: object) -> str:
    return "n/a" if value is None else f"{float(value):.1%}"
