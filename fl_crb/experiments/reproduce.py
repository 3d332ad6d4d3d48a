"""Run the figures and write their outputs into one directory.

For figure N in {4, 5, 6} the output directory gets:
- `figN.csv` (Figure 4: `fig4_rewards.csv` and `fig4_convergence.csv`): every row of
  every topology;
- `figN_<topology>.png`: the plots, one file per topology;
- `figN.md`: the tables, with the paper's numbers beside ours.
plus `runs/` (training runs) and `evaluations/` (cached evaluations) shared by figures,
and `settings.json` recording the scale of the reproduction.

The figure, plot and run modules (torch, matplotlib) are imported when a reproduction
runs, not when this module is: `fl-crb --help` reads `FIGURES` from here.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from fl_crb.experiments.settings import ReproduceSettings

if TYPE_CHECKING:
    from fl_crb.experiments.runs import EpisodeCallback, Experiments

FIGURES = ("fig4", "fig5", "fig6")


def reproduce(
    figures: list[str],
    out: str | Path,
    settings: ReproduceSettings,
    topologies: list[str],
    topology_dir: str | Path,
    on_episode: EpisodeCallback | None = None,
) -> list[Path]:
    """Make `figures` for `topologies`; returns the files written (CSV, PNG, markdown)."""
    unknown = [f for f in figures if f not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figures {unknown}; choose from {', '.join(FIGURES)} or all")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "settings.json").write_text(json.dumps(asdict(settings), indent=2) + "\n")
    from fl_crb.experiments.runs import Experiments

    exp = Experiments(out, topology_dir, settings, on_episode)
    written: list[Path] = []
    for figure in figures:
        written += _FIGURE_WRITERS[figure](exp, topologies, out)
    return written


def _write_fig4(exp: Experiments, topologies: list[str], out: Path) -> list[Path]:
    from fl_crb.experiments.figures import figure4, write_csv
    from fl_crb.experiments.plots import plot_rewards
    from fl_crb.experiments.report import convergence_tables

    parts = {topology: figure4(exp, topology) for topology in topologies}
    files = [out / "fig4_rewards.csv", out / "fig4_convergence.csv"]
    write_csv(files[0], [row for part in parts.values() for row in part["rewards"]])
    write_csv(files[1], [row for part in parts.values() for row in part["convergence"]])
    for topology, part in parts.items():
        png = out / f"fig4_{topology}.png"
        title = f"Figure 4 ({topology}): average reward and CRB-DRQN convergence"
        plot_rewards(part["rewards"], part["convergence"], title, png)
        files.append(png)
    markdown = out / "fig4.md"
    final = exp.settings.convergence_final_episodes
    markdown.write_text(
        f"## Figure 4: convergence ({exp.settings.name} reproduction)\n\n"
        + convergence_tables(parts, final)
    )
    return [*files, markdown]


def _sweep_writer(figure: str, row_function: str, x_label: str, what):
    def write(exp: Experiments, topologies: list[str], out: Path) -> list[Path]:
        from fl_crb.experiments import figures
        from fl_crb.experiments.plots import plot_sweep
        from fl_crb.experiments.report import sweep_tables

        make_rows = getattr(figures, row_function)
        rows = [row for topology in topologies for row in make_rows(exp, topology)]
        files = [out / f"{figure}.csv"]
        figures.write_csv(files[0], rows)
        for topology in topologies:
            png = out / f"{figure}_{topology}.png"
            title = f"Figure {figure[-1]} ({topology}): {what(exp.settings)}"
            plot_sweep([r for r in rows if r["topology"] == topology], x_label, title, png)
            files.append(png)
        markdown = out / f"{figure}.md"
        markdown.write_text(
            f"## Figure {figure[-1]}: {what(exp.settings)} ({exp.settings.name} reproduction)\n\n"
            + sweep_tables(rows, figure, x_label)
        )
        return [*files, markdown]

    return write


_FIGURE_WRITERS = {
    "fig4": _write_fig4,
    "fig5": _sweep_writer(
        "fig5",
        "figure5",
        "terminals",
        lambda s: (
            "delay and failure rate vs terminals at "
            f"{s.terminal_sweep_rate_bps / 1e6:g} Mbit/s per terminal"
        ),
    ),
    "fig6": _sweep_writer(
        "fig6",
        "figure6",
        "offered load per terminal (Mbit/s)",
        lambda s: f"delay and failure rate vs offered load at {s.rate_sweep_terminals} terminals",
    ),
}
