"""How the emulator scales: slot overruns, rounds, agreement and memory by terminal count.

Each row is one `fl-crb emulate` of a topology (four-edge by default) with a terminal count
and a mode, built by the command's own `configure` (so what runs is what the command line
runs: pre-trained CRB-DRQN from the cache, TLS on, the default deployment):

- `relay:N`: federated CRB-DRQN, terminals hand their uploads to their edge (`--uplink
  relay`; only the edges run SuperNodes; the coordinator's deployment);
- `direct:N`: federated, every terminal a SuperNode of its own (`--uplink direct`; the role
  commands' deployment);
- `data-plane:N`: round-robin, no federation (the data plane alone).

It prints one JSON line per row as it finishes, then a table: rounds and mean round
exchange, the share of slot boundaries handled late (overruns), outcome agreement with the
simulator on the run's own trace (and the simulator's own failure rate on it, which says how
loaded the setting is), uploads accepted of those posted, peak PSS, and the 1-minute load
average after the run. Issue 22's targets for a federated row: overruns under 1%, mean
round exchange at most 3 s, outcome agreement at least 99%; the exit status is 1 when a
federated row misses one (or a party failed).

    sudo .venv/bin/python benchmarks/emulation_scale.py              # relay 25, 50, 100; direct 25
    sudo .venv/bin/python benchmarks/emulation_scale.py --runs relay:25,relay:75 --duration 30s

Each run folder is kept under --out (default runs/scale-TIME/) for `round_breakdown.py`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from emulation.run import run_emulation
from fl_crb.commands.emulate import configure, register

ROOT = Path(__file__).resolve().parent.parent
MODES = ("relay", "direct", "data-plane")
OVERRUN_TARGET = 0.01
EXCHANGE_TARGET_S = 3.0
AGREEMENT_TARGET = 0.99


def parse_runs(text: str) -> list[tuple[str, int]]:
    """ "relay:25,direct:25" as [(mode, terminals)]; a clear error for anything else."""
    runs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        mode, _, count = item.partition(":")
        if mode not in MODES or not count.isdigit() or int(count) < 1:
            raise SystemExit(
                f"--runs: {item!r} is not MODE:TERMINALS with MODE one of {', '.join(MODES)} "
                "and TERMINALS a positive whole number"
            )
        runs.append((mode, int(count)))
    if not runs:
        raise SystemExit("--runs: no run given")
    return runs


def emulate_args(topology: str, mode: str, count: int, duration: str, out: Path):
    """The parsed `fl-crb emulate` command line of one row."""
    parser = argparse.ArgumentParser(prog="fl-crb")
    register(parser.add_subparsers())
    line = ["emulate", "--topology", topology, "--terminals", str(count)]
    line += ["--duration", duration, "--out", str(out)]
    line += ["--policy", "round-robin"] if mode == "data-plane" else ["--uplink", mode]
    return parser.parse_args(line)


def run_row(topology: str, mode: str, count: int, duration: str, out: Path) -> dict:
    """Run one emulation and condense its report into a row."""
    report = run_emulation(configure(emulate_args(topology, mode, count, duration, out)))
    summary, compare = report.summary, report.collected.compare
    federation = summary.get("federation") or {}
    row = {
        "mode": mode,
        "terminals": count,
        "run": str(out),
        "rounds": federation.get("rounds"),
        "mean_round_exchange_s": federation.get("mean_round_exchange_s"),
        "overrun_share": summary["overrun_share"],
        "overruns": summary["overruns"],
        "boundaries": summary["boundaries"],
        "outcome_agreement": compare["outcome_agreement"],
        "delay_agreement_within_1_slot": compare["delay_agreement_within_1_slot"],
        "sim_failure_rate": compare["simulator"]["failure_rate"],
        "live_failure_rate": compare["live"]["failure_rate"],
        "tasks": compare["tasks"],
        "uploads_accepted": federation.get("uploads_accepted"),
        "uploads_posted": federation.get("uploads_posted"),
        "peak_pss_mb": report.memory["peak_pss_mb"],
        "parties_start_s": round(report.timings["parties_start_s"], 1),
        "load_avg_1min_after": report.machine["load_avg_1min_after"],
        "failed_parties": summary["failed_parties"],
    }
    row["targets_met"] = targets_met(row)
    return row


def targets_met(row: dict) -> bool:
    """Issue 22's targets for a federated row; a data-plane row only needs its parties."""
    if row["failed_parties"]:
        return False
    if row["mode"] == "data-plane":
        return True
    exchange = row["mean_round_exchange_s"]
    return (
        row["overrun_share"] < OVERRUN_TARGET
        and exchange is not None
        and exchange <= EXCHANGE_TARGET_S
        and row["outcome_agreement"] >= AGREEMENT_TARGET
    )


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| mode | terminals | rounds | mean exchange | slot overruns | outcome agreement "
        "| sim failures | uploads accepted / posted | peak PSS | load avg after | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        exchange = r["mean_round_exchange_s"]
        uploads = (
            "-"
            if r["uploads_posted"] is None
            else f"{r['uploads_accepted']} / {r['uploads_posted']}"
        )
        lines.append(
            f"| {r['mode']} | {r['terminals']} | {r['rounds'] if r['rounds'] is not None else '-'} "
            f"| {'-' if exchange is None else f'{exchange:.2f} s'} "
            f"| {r['overruns']} of {r['boundaries']} ({r['overrun_share'] * 100:.2f}%) "
            f"| {r['outcome_agreement'] * 100:.1f}% | {r['sim_failure_rate'] * 100:.1f}% "
            f"| {uploads} | {r['peak_pss_mb'] / 1024:.1f} GB | {r['load_avg_1min_after']:.1f} "
            f"| {'met' if r['targets_met'] else 'missed'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topology", default=str(ROOT / "topologies" / "four-edge.yaml"))
    parser.add_argument(
        "--runs",
        default="relay:25,relay:50,relay:100,direct:25",
        help="comma-separated MODE:TERMINALS, MODE one of " + ", ".join(MODES),
    )
    parser.add_argument("--duration", default="60s", help="arrival time per run")
    parser.add_argument(
        "--out", type=Path, help="folder for the run folders (default runs/scale-TIME)"
    )
    args = parser.parse_args()
    runs = parse_runs(args.runs)
    out = args.out or ROOT / "runs" / f"scale-{time.strftime('%Y%m%d-%H%M%S')}"
    rows = []
    for mode, count in runs:
        row = run_row(args.topology, mode, count, args.duration, out / f"{mode}-{count}")
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(table(rows))
    return 0 if all(r["targets_met"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
