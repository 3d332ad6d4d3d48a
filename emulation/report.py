"""The emulation's run folder outputs: JSON, CSV tables, figures, report.md, summary table.

`write_report` adds to the data plane's run folder:

    emulation.json     everything below plus the run's settings, timings and machine load
    compare-sim.json   `fl-crb compare-sim` on the run's own trace
    interfaces.csv     bytes and packets per host interface over the run (kernel counters)
    terminals.csv      per terminal: tasks, offloaded, payload bytes, interface bytes
    timeline.csv       per window: tasks, delay, failure rate, weight versions
    report.md          the report a researcher can cite, with plots/*.png

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
        plots.plot_timeline(collected.timeline, figures / "timeline.png")
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
        ("timings", timings),
        (
            "load average",
            f"{machine['load_avg_1min_before']} → {machine['load_avg_1min_after']} "
            f"on {machine['cpus']} CPUs",
        ),
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
        "![timeline](plots/timeline.png)",
        "",
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
        "## The delay daemon during the run",
        "",
        summarize_daemon(report.delay_daemon) if report.delay_daemon else "netem: no daemon.",
        "",
        "Files: emulation.json, compare-sim.json, tasks.csv, summary.json, interfaces.csv, "
        "terminals.csv, timeline.csv, links.md/json, network.log, logs/, parties/.",
        "",
    ]
    return "\n".join(lines)


def _federation_section(federation: object) -> list[str]:
    """Rounds, uploads, weight versions and bytes per message type of a federated run."""
    if not isinstance(federation, dict):
        return []
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
    for kind, b in federation["bytes"].items():
        lines.append(
            f"| {kind} | {b['wire_up_bytes']} | {b['wire_down_bytes']} | {b['wire_requests']} | "
            f"{b['up_plaintext_bytes']} | {b['down_plaintext_bytes']} | "
            f"{b['encryption_overhead_bytes']} |"
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
