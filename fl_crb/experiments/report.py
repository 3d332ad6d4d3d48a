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
    paper_value,
)

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
    out.append(_paper_beside_ours(rows, figure))
    return "\n".join(out)


def _cell(row: dict) -> str:
    return (
        f"{row['avg_delay_s_mean']:.3f}±{row['avg_delay_s_std']:.3f} / "
        f"{row['failure_rate_mean']:.3f}±{row['failure_rate_std']:.3f}"
    )


def _paper_beside_ours(rows: list[dict], figure: str) -> str:
    """The paper's numbers for this figure, and ours for the same cells."""
    topologies = list(dict.fromkeys(r["topology"] for r in rows))
    cells = sorted({(v.metric, v.x) for v in PAPER_VALUES if v.figure == figure})
    header = ["metric", "x", "paper: CRB-DRQN", *(f"ours: crb-drqn, {t}" for t in topologies)]
    header += ["paper: Local-Only", *(f"ours: local-only, {t}" for t in topologies)]
    header += ["paper: other algorithms"]
    out = [
        "#### The paper's numbers beside ours\n",
        f"Paper: {CITATION}. Empty: the paper states no number there.\n",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for metric, x in cells:
        line = [metric, f"{x:g}"]
        for ours in ("crb-drqn", "local-only"):
            paper = paper_value(figure, metric, x, PAPER_NAME_OF[ours])
            line.append(f"{paper.value:g}" if paper else "")
            for topology in topologies:
                match = [
                    r
                    for r in rows
                    if r["topology"] == topology and r["policy"] == ours and r["x"] == x
                ]
                line.append(
                    f"{match[0][metric + '_mean']:.3f}±{match[0][metric + '_std']:.3f}"
                    if match
                    else "not run"
                )
        others = [
            f"{v.algorithm} {v.value:g}" + (f" ({v.note})" if v.note else "")
            for v in PAPER_VALUES
            if (v.figure, v.metric, v.x) == (figure, metric, x)
            and v.algorithm not in PAPER_NAME_OF.values()
        ]
        out.append("| " + " | ".join([*line, "; ".join(others)]) + " |")
    return "\n".join(out) + "\n"


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
        out.append("within 5% of its final value; time = training wall time until then):\n")
        out.append("| terminals | convergence episode | convergence time (s) |")
        out.append("|---|---|---|")
        for row in parts["convergence"]:
            out.append(
                f"| {row['terminals']} | {row['convergence_episode_mean']:.0f} ± "
                f"{row['convergence_episode_std']:.0f} | {row['convergence_time_s_mean']:.0f} ± "
                f"{row['convergence_time_s_std']:.0f} |"
            )
        out.append("")
    paper = ", ".join(f"{k} {v} episodes" for k, v in PAPER_CONVERGENCE_EPISODES.items())
    out.append(f"Paper: convergence after about {paper}; CRB-DRQN's convergence time grows ")
    out.append("about linearly from 5 to 35 terminals (no numbers given).\n")
    return "\n".join(out)
