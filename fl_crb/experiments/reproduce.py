"""Run the figures and write their outputs into one directory; or draw them again.

For figure N in {4, 5, 6} the output directory gets:
- `figN.csv` (Figure 4: `fig4_rewards.csv` and `fig4_convergence.csv`): every row of
  every topology;
- `figN_<topology>.png`: the plots, one file per topology;
- `figN.md`: the tables, with the paper's numbers beside ours.
plus `runs/` (training runs) and `evaluations/` (cached evaluations) shared by figures,
and `settings.json` recording the scale of the reproduction.

Each figure is made in three steps: the cells it needs (`Figure.needs`: training runs and
evaluations, `fl_crb.experiments.cells`), run unless cached by an executor (this process,
local workers or a Ray cluster; the figures of one call share one batch of cells); its
rows from that cache, written as the CSV tables; then its drawing (PNGs and markdown)
from those rows alone.
`reproduce` does both; `replot` reads the CSV tables a reproduction wrote and does only
the drawing, with the same function, so it trains and evaluates nothing.

The figure, plot and run modules (torch, matplotlib) are imported when a reproduction
runs, not when this module is: `fl-crb --help` reads `FIGURES` from here; a replot never
imports torch.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fl_crb.experiments.settings import ALL_POLICIES, ReproduceSettings

if TYPE_CHECKING:
    from fl_crb.experiments.executors import Executor
    from fl_crb.experiments.runs import Experiments, Need

FIGURES = ("fig4", "fig5", "fig6")

Tables = tuple[list[dict], ...]
"""A figure's rows, one list per CSV file of the figure (`Figure.csv_files`), in order."""


@dataclass(frozen=True)
class Figure:
    """How one figure is made: its rows, the CSV files they go to, and its drawing."""

    csv_files: tuple[str, ...]
    """The CSV tables of the figure, in the output directory."""
    rows: Callable[[Experiments, list[str]], Tables]
    """The rows of these topologies (training and evaluating as needed)."""
    draw: Callable[[Tables, ReproduceSettings, Path], list[Path]]
    """Write the PNGs and the markdown of the topologies in the rows; returns the files."""
    points_column: tuple[str, str]
    """The CSV file and column holding the figure's sweep points."""
    points: Callable[[ReproduceSettings], tuple[float, ...]]
    """The sweep points at a scale (full or quick), as that column holds them."""
    needs: Callable[[Experiments, list[str]], list[Need]]
    """The cells `rows` reads for these topologies: run first, in parallel."""


def reproduce(
    figures: list[str],
    out: str | Path,
    settings: ReproduceSettings,
    topologies: list[str],
    topology_dir: str | Path,
    executor: Executor | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_done: Callable | None = None,
) -> list[Path]:
    """Make `figures` for `topologies`, running their cells through `executor` (default:
    one after another in this process); returns the files written (CSV, PNG, markdown).
    `on_start(cells to run, cells cached)` and `on_done(cell)` are for a progress bar."""
    _check_figures(figures)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "settings.json").write_text(json.dumps(asdict(settings), indent=2) + "\n")
    from fl_crb.experiments.executors import LocalExecutor
    from fl_crb.experiments.runs import Experiments

    exp = Experiments(out, topology_dir, settings)
    needs = [need for name in figures for need in FIGURE_OF[name].needs(exp, topologies)]
    exp.run_needs(needs, executor or LocalExecutor(1), on_start, on_done)
    written: list[Path] = []
    for name in figures:
        figure = FIGURE_OF[name]
        tables = figure.rows(exp, topologies)
        for csv_file, rows in zip(figure.csv_files, tables, strict=True):
            write_csv(out / csv_file, rows)
            written.append(out / csv_file)
        written += figure.draw(tables, settings, out)
    return written


def replot(
    figures: list[str],
    out: str | Path,
    settings: ReproduceSettings,
    topologies: list[str] | None = None,
) -> list[Path]:
    """Draw `figures` again (PNGs and markdown) from the CSV tables a reproduction wrote
    into `out`, for `topologies` (default: every topology in the tables), labelled with
    the scale of `settings`; trains and evaluates nothing. Returns the files written.

    Every table is read before anything is drawn: a missing or empty CSV file, a topology
    the tables lack, or tables at the sweep points of another scale are refused by name."""
    _check_figures(figures)
    out = Path(out)
    tables = {}
    for name in figures:
        figure = FIGURE_OF[name]
        tables[name] = tuple(_rows_of(out / f, topologies) for f in figure.csv_files)
        _check_scale(figure, tables[name], settings, out)
    written: list[Path] = []
    for name, figure_tables in tables.items():
        written += FIGURE_OF[name].draw(figure_tables, settings, out)
    return written


def _check_figures(figures: list[str]) -> None:
    unknown = [f for f in figures if f not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figures {unknown}; choose from {', '.join(FIGURES)} or all")


def _check_scale(figure: Figure, tables: Tables, settings: ReproduceSettings, out: Path) -> None:
    """Refuse to title the tables of one scale (full or quick) with the other's: their
    sweep points must be those of `settings`."""
    csv_file, column = figure.points_column
    rows = tables[figure.csv_files.index(csv_file)]
    found = sorted(set(r[column] for r in rows))
    expected = sorted(set(figure.points(settings)))
    if found != expected:
        raise ValueError(
            f"{out / csv_file} is at the sweep points {column} = {_listed(found)}, not at the "
            f"{settings.name} reproduction's {_listed(expected)}: replot at the scale that "
            "wrote it (with or without --quick)"
        )


def _listed(points: list[float]) -> str:
    return ", ".join(f"{x:g}" for x in points)


def _rows_of(path: Path, topologies: list[str] | None) -> list[dict]:
    """The rows of a figure's CSV file, of `topologies` only if given."""
    if not path.is_file():
        raise ValueError(
            f"{path} not found: a replot draws the figures from the CSV tables a "
            f"reproduction wrote; run `fl-crb reproduce` into {path.parent} first"
        )
    rows = read_csv(path)
    if not rows:
        raise ValueError(f"{path} has no rows: run `fl-crb reproduce` into {path.parent} again")
    if topologies is None:
        return rows
    present = list(dict.fromkeys(r["topology"] for r in rows))
    missing = [t for t in topologies if t not in present]
    if missing:
        raise ValueError(
            f"{path} has no rows of topology {', '.join(missing)} (it has {', '.join(present)})"
        )
    return [r for r in rows if r["topology"] in topologies]


# CSV tables --------------------------------------------------------------------------


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows (dicts with the same keys, values str, int or float) as a CSV file with a
    header; `read_csv` gives them back equal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict]:
    """The rows `write_csv` wrote, each cell back to the int, float or str it was."""
    with open(path, newline="") as file:
        return [{key: _value(cell) for key, cell in row.items()} for row in csv.DictReader(file)]


def _value(cell: str) -> int | float | str:
    """A CSV cell as the value `str()` wrote it from: `str(int)` has only digits (and a
    sign), `str(float)` a '.', an 'e', 'nan' or 'inf', so the first that parses is it and
    a float comes back to the same bits."""
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    return cell


def made_by(figure: str, settings: ReproduceSettings, rows: list[dict]) -> str:
    """The paragraph naming the command that regenerates a figure's markdown from its rows'
    topologies and policies at this scale, so that a table copied elsewhere still names it."""
    shown = {row["policy"] for row in rows}
    words = ["fl-crb reproduce", figure, "--out OUT"]
    words += ["--quick"] if settings.name == "quick" else []
    words += [f"--topology {topology}" for topology in dict.fromkeys(r["topology"] for r in rows)]
    if shown != set(ALL_POLICIES):
        words.append("--policies " + ",".join(p for p in ALL_POLICIES if p in shown))
    return (
        f"Made by `{' '.join(words)}`: it trains and evaluates what `OUT` does not hold yet; "
        f"`--replot` redraws this file from the CSV tables beside it.\n\n"
    )


# Figure 4: reward curves and convergence --------------------------------------------


def _fig4_rows(exp: Experiments, topologies: list[str]) -> Tables:
    from fl_crb.experiments.figures import figure4

    parts = [figure4(exp, topology) for topology in topologies]
    return (
        [row for part in parts for row in part["rewards"]],
        [row for part in parts for row in part["convergence"]],
    )


def _draw_fig4(tables: Tables, settings: ReproduceSettings, out: Path) -> list[Path]:
    from fl_crb.experiments.plots import plot_rewards
    from fl_crb.experiments.report import convergence_tables

    rewards, convergence = tables
    parts = {
        topology: {
            "rewards": [r for r in rewards if r["topology"] == topology],
            "convergence": [r for r in convergence if r["topology"] == topology],
        }
        for topology in dict.fromkeys(r["topology"] for r in rewards)
    }
    files = []
    for topology, part in parts.items():
        png = out / f"fig4_{topology}.png"
        title = f"Figure 4 ({topology}): average reward and CRB-DRQN convergence"
        plot_rewards(part["rewards"], part["convergence"], title, png)
        files.append(png)
    markdown = out / "fig4.md"
    markdown.write_text(
        f"## Figure 4: convergence ({settings.name} reproduction)\n\n"
        + made_by("fig4", settings, rewards)
        + convergence_tables(parts, settings.convergence_final_episodes)
    )
    return [*files, markdown]


# Figures 5 and 6: sweeps -------------------------------------------------------------


def _needs(needs_function: str) -> Callable[[Experiments, list[str]], list[Need]]:
    def needs(exp: Experiments, topologies: list[str]) -> list[Need]:
        from fl_crb.experiments import figures

        make_needs = getattr(figures, needs_function)
        return [need for topology in topologies for need in make_needs(exp, topology)]

    return needs


def _sweep_rows(row_function: str) -> Callable[[Experiments, list[str]], Tables]:
    def rows(exp: Experiments, topologies: list[str]) -> Tables:
        from fl_crb.experiments import figures

        make_rows = getattr(figures, row_function)
        return ([row for topology in topologies for row in make_rows(exp, topology)],)

    return rows


def _sweep_drawer(
    figure: str, x_label: str, what: Callable[[ReproduceSettings], str]
) -> Callable[[Tables, ReproduceSettings, Path], list[Path]]:
    """The drawing of a sweep figure; `what` is its title after the figure and topology."""

    def draw(tables: Tables, settings: ReproduceSettings, out: Path) -> list[Path]:
        from fl_crb.experiments.plots import plot_sweep
        from fl_crb.experiments.report import sweep_tables

        [rows] = tables
        files = []
        for topology in dict.fromkeys(r["topology"] for r in rows):
            png = out / f"{figure}_{topology}.png"
            title = f"Figure {figure[-1]} ({topology}): {what(settings)}"
            plot_sweep([r for r in rows if r["topology"] == topology], x_label, title, png)
            files.append(png)
        markdown = out / f"{figure}.md"
        markdown.write_text(
            f"## Figure {figure[-1]}: {what(settings)} ({settings.name} reproduction)\n\n"
            + made_by(figure, settings, rows)
            + sweep_tables(rows, figure, x_label)
        )
        return [*files, markdown]

    return draw


FIGURE_OF = {
    "fig4": Figure(
        ("fig4_rewards.csv", "fig4_convergence.csv"),
        _fig4_rows,
        _draw_fig4,
        ("fig4_convergence.csv", "terminals"),
        lambda s: s.convergence_terminals,
        _needs("figure4_needs"),
    ),
    "fig5": Figure(
        ("fig5.csv",),
        _sweep_rows("figure5"),
        _sweep_drawer(
            "fig5",
            "terminals",
            lambda s: (
                "delay and failure rate vs terminals at "
                f"{s.terminal_sweep_rate_bps / 1e6:g} Mbit/s per terminal"
            ),
        ),
        ("fig5.csv", "x"),
        lambda s: s.terminal_sweep,
        _needs("figure5_needs"),
    ),
    "fig6": Figure(
        ("fig6.csv",),
        _sweep_rows("figure6"),
        _sweep_drawer(
            "fig6",
            "offered load per terminal (Mbit/s)",
            lambda s: (
                f"delay and failure rate vs offered load at {s.rate_sweep_terminals} terminals"
            ),
        ),
        ("fig6.csv", "x"),
        lambda s: tuple(rate_bps / 1e6 for rate_bps in s.rate_sweep_bps),
        _needs("figure6_needs"),
    ),
}
"""Every figure, by its name in `FIGURES`."""
