"""Markdown tables of the reproduced figures, with the paper's numbers beside ours.

The comparison rule (the issue's): policy A is *at least as good as* B at a point if its
failure rate is lower by more than 0.5 percentage points, or, where the two failure rates
are within 0.5 points of each other, its average delay is no higher. Each sweep table
names, per point, the policies CRB-DRQN is not at least as good as.
"""

from __future__ import annotations

from fl_crb.experiments.paper_results import (
    CITATION,
    PAPER_CONVERGENCE_EPISODES,
    PAPER_NAME_OF,
    PAPER_VALUES,
)
from fl_crb.experiments.settings import POLICY_NOTES

FAILURE_TIE_POINTS = 0.005
"""Failure rates closer than this (0.5 percentage points) count as equal."""


def at_least_as_good(a: dict, b: dict) -> bool:
    """Whether summary row `a` is at least as good as `b` (rule in the module docstring)."""
    difference = a["failure_rate_mean"] - b["failure_rate_mean"]
    if abs(difference) <= FAILURE_TIE_POINTS:
        return a["avg_delay_s_mean"] <= b["avg_delay_s_mean"]
    return difference < 0


def sweep_tables(rows: list[dict], figure: str, x_label: str) -> str:
    """One table per topology: every policy's delay and failure at every point."""
    out = []
    for topology in dict.fromkeys(r["topology"] for r in rows):
        mine = [r for r in rows if r["topology"] == topology]
        policies = list(dict.fromkeys(r["policy"] for r in mine))
        xs = list(dict.fromkeys(r["x"] for r in mine))
        out.append(f"### {topology}\n")
        out.append("Average delay of finished tasks (s) / failure rate, mean ± std over seeds.\n")
        out.append("| " + " | ".join([x_label, *policies, "CRB-DRQN loses to"]) + " |")
        out.append("|" + "---|" * (len(policies) + 2))
        for x in xs:
            at_x = {r["policy"]: r for r in mine if r["x"] == x}
            cells = [_cell(at_x[p]) for p in policies]
            crb = at_x.get("crb-drqn")
            losses = (
                [p for p in policies if p != "crb-drqn" and not at_least_as_good(crb, at_x[p])]
                if crb is not None
                else []
            )
            out.append("| " + " | ".join([f"{x:g}", *cells, ", ".join(losses) or "—"]) + " |")
        out.append("")
        out.append(
            "Same-slot co-arrivals per offloaded task (other tasks sent to the same edge in "
            "the same slot, `fl_crb.mec.decision_spread`: how much the terminals herd), mean "
            "± std over seeds; — where a policy offloads nothing.\n"
        )
        out.append("| " + " | ".join([x_label, *policies]) + " |")
        out.append("|" + "---|" * (len(policies) + 1))
        for x in xs:
            at_x = {r["policy"]: r for r in mine if r["x"] == x}
            cells = [_mean_std(at_x[p], "same_slot_coarrivals", 2, "±") for p in policies]
            out.append("| " + " | ".join([f"{x:g}", *cells]) + " |")
        out.append("")
    out.append(_paper_beside_ours(rows, figure))
    return "\n".join(out)


def _cell(row: dict) -> str:
    return (
        f"{row['avg_delay_s_mean']:.3f}±{row['avg_delay_s_std']:.3f} / "
        f"{row['failure_rate_mean']:.3f}±{row['failure_rate_std']:.3f}"
    )


def _mean_std(row: dict, key: str, digits: int = 0, separator: str = " ± ") -> str:
    """`mean ± std` of `key` in a row; — where the mean is NaN (co-arrivals of a policy
    that offloads nothing, CPU times of runs trained before they were recorded)."""
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    return "—" if mean != mean else f"{mean:.{digits}f}{separator}{std:.{digits}f}"


def _paper_beside_ours(rows: list[dict], figure: str) -> str:
    """Every number the paper states for this figure, ours for the same cell beside it,
    then whether each ordering of two algorithms the paper states holds in ours."""
    topologies = list(dict.fromkeys(r["topology"] for r in rows))
    ours_of = {paper: ours for ours, paper in PAPER_NAME_OF.items()}
    header = ["metric", "x", "paper", "algorithm", *(f"ours, {t}" for t in topologies)]
    out = [
        "#### The paper's numbers beside ours\n",
        f"Paper: {CITATION}. Only cells where the paper states a number.\n",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    values = [v for v in PAPER_VALUES if v.figure == figure]
    for value in sorted(values, key=lambda v: (v.metric, v.x)):
        ours = ours_of[value.algorithm]
        line = [value.metric, f"{value.x:g}", _paper(value), _labelled(ours)]
        for topology in topologies:
            row = _row(rows, topology, ours, value.x)
            line.append(
                f"{row[value.metric + '_mean']:.3f}±{row[value.metric + '_std']:.3f}"
                if row
                else "not run"
            )
        out.append("| " + " | ".join(line) + " |")
    out.append("")
    out.append(_orderings(rows, values, topologies, ours_of))
    notes = [f"{name}: {note}" for name, note in POLICY_NOTES.items()]
    out.append("Labels: " + "; ".join(notes) + ".\n")
    return "\n".join(out)


def _orderings(rows: list[dict], values, topologies: list[str], ours_of: dict) -> str:
    """For each cell where the paper states two algorithms' numbers, whether ours order
    them the same way (a difference within `FAILURE_TIE_POINTS` for failure, or 0.01 s
    for delay, counts as a tie on either side)."""
    out = [
        "Orderings the paper states (per cell, each pair of algorithms with a number), and ours:\n",
        "| metric | x | paper | " + " | ".join(f"ours, {t}" for t in topologies) + " |",
        "|" + "---|" * (3 + len(topologies)),
    ]
    tally = {topology: [0, 0] for topology in topologies}  # [matching, compared]
    cells: dict[tuple[str, float], list] = {}
    for value in values:
        cells.setdefault((value.metric, value.x), []).append(value)
    for (metric, x), cell in sorted(cells.items()):
        tie = FAILURE_TIE_POINTS if metric == "failure_rate" else 0.01
        for i, a in enumerate(cell):
            for b in cell[i + 1 :]:
                paper = _order(a.algorithm, a.value, b.algorithm, b.value, tie)
                line = [metric, f"{x:g}", paper]
                for topology in topologies:
                    ra = _row(rows, topology, ours_of[a.algorithm], x)
                    rb = _row(rows, topology, ours_of[b.algorithm], x)
                    if ra is None or rb is None:
                        line.append("not run")
                        continue
                    mine = _order(
                        a.algorithm, ra[metric + "_mean"], b.algorithm, rb[metric + "_mean"], tie
                    )
                    line.append(("matches: " if mine == paper else "differs: ") + mine)
                    tally[topology][0] += mine == paper
                    tally[topology][1] += 1
                out.append("| " + " | ".join(line) + " |")
    out.append("")
    for topology, (matching, compared) in tally.items():
        out.append(f"{topology}: {matching} of {compared} orderings match the paper's.")
    return "\n".join(out) + "\n"


def _order(name_a: str, a: float, name_b: str, b: float, tie: float) -> str:
    if abs(a - b) <= tie + 1e-9:  # 0.057 − 0.052 is a tie at 0.005, whatever the rounding
        return f"{name_a} ≈ {name_b}"
    return f"{name_a} < {name_b}" if a < b else f"{name_b} < {name_a}"


def _row(rows: list[dict], topology: str, policy: str, x: float) -> dict | None:
    match = [r for r in rows if r["topology"] == topology and r["policy"] == policy and r["x"] == x]
    return match[0] if match else None


def _labelled(policy: str) -> str:
    return f"{policy} ({POLICY_NOTES[policy]})" if policy in POLICY_NOTES else policy


def _paper(value) -> str:
    return f"{value.value:g}" + (f" ({value.note})" if value.note else "")


def convergence_tables(figure4_rows: dict[str, dict[str, list[dict]]], final: int) -> str:
    """Figure 4: final rewards of every algorithm, and CRB-DRQN's convergence."""
    out = []
    for topology, parts in figure4_rows.items():
        rewards = parts["rewards"]
        terminals = rewards[0]["terminals"]
        out.append(f"### {topology}\n")
        out.append(
            f"Average reward per task over the last {final} training episodes at "
            f"{terminals} terminals (mean over seeds of the per-episode mean; exploration "
            "included for the learners):\n"
        )
        out.append("| policy | final average reward |")
        out.append("|---|---|")
        for policy in dict.fromkeys(r["policy"] for r in rewards):
            curve = [r["avg_reward_mean"] for r in rewards if r["policy"] == policy]
            tail = curve[-final:]
            out.append(f"| {policy} | {sum(tail) / len(tail):.2f} |")
        out.append("")
        out.append("CRB-DRQN convergence (episode from which the smoothed reward stays ")
        out.append("within 5% of its final value; the training's wall time and CPU time until ")
        out.append("then, — for runs trained before CPU time was recorded):\n")
        out.append("| terminals | convergence episode | wall time (s) | CPU time (s) |")
        out.append("|---|---|---|---|")
        for row in parts["convergence"]:
            out.append(
                f"| {row['terminals']} | {_mean_std(row, 'convergence_episode')} | "
                f"{_mean_std(row, 'convergence_time_s')} | {_mean_std(row, 'convergence_cpu_s')} |"
            )
        out.append("")
    paper = ", ".join(f"{k} {v} episodes" for k, v in PAPER_CONVERGENCE_EPISODES.items())
    out.append(f"Paper: convergence after about {paper}; CRB-DRQN's convergence time grows ")
    out.append("about linearly from 5 to 35 terminals (no numbers given).\n")
    return "\n".join(out)
