"""`fl-crb reproduce`: the quick mode end to end, the replot from its CSV tables, and the
measures the figures rest on."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fl_crb.cli import main
from fl_crb.experiments.convergence import convergence_episode, smoothed
from fl_crb.experiments.paper_results import PAPER_VALUES, paper_value
from fl_crb.experiments.report import at_least_as_good
from fl_crb.experiments.reproduce import write_csv
from fl_crb.experiments.runs import SPREAD_KEY, Experiments, Point
from fl_crb.experiments.settings import ALL_POLICIES, QUICK

TOPOLOGIES = str(Path(__file__).resolve().parent.parent / "topologies")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


CSV_FILES = ("fig4_rewards.csv", "fig4_convergence.csv", "fig5.csv", "fig6.csv")
"""The CSV tables a reproduction of every figure writes."""


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def quick_reproduction(tmp_path_factory) -> Path:
    """One quick reproduction of every figure on both topologies, the only one this module
    trains; a test that changes its outputs works on a copy."""
    out = tmp_path_factory.mktemp("quick") / "repro"
    assert main(["reproduce", "all", "--quick", "--out", str(out), "--topologies", TOPOLOGIES]) == 0
    return out


def test_reproduce_all_quick_writes_every_figure_for_both_topologies(
    quick_reproduction: Path, tmp_path: Path
):
    out = tmp_path / "repro"
    shutil.copytree(quick_reproduction, out)
    topologies = {"four-edge", "four-edge-hetero"}
    policies = set(ALL_POLICIES)
    for figure, x_values in (
        ("fig5", {str(d) for d in QUICK.terminal_sweep}),
        ("fig6", {f"{r / 1e6:g}" for r in QUICK.rate_sweep_bps}),
    ):
        rows = read_csv(out / f"{figure}.csv")
        assert {r["topology"] for r in rows} == topologies
        assert {r["policy"] for r in rows} == policies
        assert {f"{float(r['x']):g}" for r in rows} == x_values
        assert all(int(r["seeds"]) == len(QUICK.seeds) for r in rows)
        for row in rows:
            assert 0 <= float(row["failure_rate_mean"]) <= 1
            assert float(row["avg_reward_mean"]) < 0
        markdown = (out / f"{figure}.md").read_text()
        assert "The paper's numbers beside ours" in markdown and "CRB-DRQN loses to" in markdown
        assert (
            f"Made by `fl-crb reproduce {figure} --out OUT --quick --topology four-edge "
            "--topology four-edge-hetero`:" in markdown
        )
    assert "| failure_rate | 25 | 0.017 |" in (out / "fig5.md").read_text()

    rewards = read_csv(out / "fig4_rewards.csv")
    assert {r["policy"] for r in rewards} == policies
    assert {int(r["episode"]) for r in rewards} == set(range(QUICK.train_episodes))
    convergence = read_csv(out / "fig4_convergence.csv")
    assert {int(r["terminals"]) for r in convergence} == set(QUICK.convergence_terminals)
    assert all(float(r["convergence_cpu_s_mean"]) > 0 for r in convergence)
    for name in ("fig4", "fig5", "fig6"):
        for topology in topologies:
            assert (out / f"{name}_{topology}.png").read_bytes()[:8] == PNG_SIGNATURE

    runs_dir = out / "runs" / "four-edge-hetero"
    assert all((run / "best.json").is_file() for run in runs_dir.iterdir())  # validated

    # A second call finds every run and evaluation cached, and writes the same tables.
    before = (out / "fig6.md").read_text()
    runs = sorted(p.name for p in (out / "runs" / "four-edge-hetero").iterdir())
    assert (
        main(["reproduce", "fig6", "--quick", "--out", str(out), "--topologies", TOPOLOGIES]) == 0
    )
    assert (out / "fig6.md").read_text() == before
    assert sorted(p.name for p in (out / "runs" / "four-edge-hetero").iterdir()) == runs

    # A run trained before CPU time was recorded: its convergence CPU time is unknown (—),
    # not a sum over the episodes that happen to have it.
    terminals = QUICK.convergence_terminals[0]
    point = Point("four-edge-hetero", terminals, QUICK.terminal_sweep_rate_bps)
    old_run = Experiments(out, TOPOLOGIES, QUICK).run_directory(point, "crb-drqn", 0)
    metrics = [json.loads(line) for line in (old_run / "metrics.jsonl").read_text().splitlines()]
    metrics[0].pop("cpu_s")
    (old_run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    assert (
        main(["reproduce", "fig4", "--quick", "--out", str(out), "--topologies", TOPOLOGIES]) == 0
    )
    rows = read_csv(out / "fig4_convergence.csv")
    [unknown] = [
        r for r in rows if r["topology"] == "four-edge-hetero" and r["terminals"] == str(terminals)
    ]
    assert np.isnan(float(unknown["convergence_cpu_s_mean"]))
    assert float(unknown["convergence_time_s_mean"]) > 0
    assert f"| {terminals} | " in (out / "fig4.md").read_text()
    assert " | — |" in (out / "fig4.md").read_text()


def test_one_process_reproduces_the_tables_of_the_default_workers(
    quick_reproduction: Path, tmp_path: Path, capsys
):
    """The module's reproduction ran its cells on every core (`--jobs` unset); the cells
    of Figure 5 run one after another give the same table."""
    out = tmp_path / "serial"
    capsys.readouterr()
    command = ["reproduce", "fig5", "--quick", "--out", str(out), "--topologies", TOPOLOGIES]
    assert main([*command, "--jobs", "1"]) == 0
    assert (out / "fig5.csv").read_bytes() == (quick_reproduction / "fig5.csv").read_bytes()
    cells = 2 * len(QUICK.terminal_sweep) * len(QUICK.policies) * len(QUICK.seeds)
    assert f"{cells}/{cells} (0 cached)" in capsys.readouterr().err
    assert main([*command, "--jobs", "1", "--ray", "auto"]) == 2
    assert "--jobs and --ray exclude each other" in capsys.readouterr().err


def copy_csv_tables(reproduction: Path, out: Path, missing: str | None = None) -> None:
    """Only the CSV tables of `reproduction` (all but `missing`) into a new directory `out`."""
    out.mkdir()
    for name in CSV_FILES:
        if name != missing:
            shutil.copy(reproduction / name, out / name)


def test_replot_draws_the_same_files_from_the_csv_tables_alone_and_trains_nothing(
    quick_reproduction: Path, tmp_path: Path, monkeypatch, capsys
):
    def no_experiments(*args, **kwargs):
        raise AssertionError("a replot built Experiments, which trains and evaluates")

    monkeypatch.setattr(Experiments, "__init__", no_experiments)
    out = tmp_path / "replot"
    copy_csv_tables(quick_reproduction, out)  # no runs/, evaluations/ or settings.json
    capsys.readouterr()
    assert main(["reproduce", "all", "--quick", "--out", str(out), "--replot"]) == 0

    drawn = [
        f"{figure}{suffix}"
        for figure in ("fig4", "fig5", "fig6")
        for suffix in ("_four-edge.png", "_four-edge-hetero.png", ".md")
    ]
    assert capsys.readouterr().out.split() == [str(out / name) for name in drawn]
    assert sorted(p.name for p in out.iterdir()) == sorted([*drawn, *CSV_FILES])
    assert sorted(
        p.name for p in quick_reproduction.iterdir() if p.suffix in (".png", ".md")
    ) == sorted(drawn)
    # The pipeline's own files, byte for byte: the same tables, titles, labels and plots.
    for name in [*drawn, *CSV_FILES]:
        assert (out / name).read_bytes() == (quick_reproduction / name).read_bytes(), name


@pytest.mark.parametrize("missing", CSV_FILES)
def test_replot_names_a_missing_csv_table_and_draws_nothing(
    missing: str, quick_reproduction: Path, tmp_path: Path, capsys
):
    out = tmp_path / "replot"
    copy_csv_tables(quick_reproduction, out, missing)
    assert main(["reproduce", "all", "--quick", "--out", str(out), "--replot"]) == 2
    assert f"{out / missing} not found: a replot draws the figures from the CSV" in (
        capsys.readouterr().err
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(set(CSV_FILES) - {missing})


@pytest.mark.parametrize(
    ("figure", "csv_file", "points"),
    [
        (
            "fig4",
            "fig4_convergence.csv",
            "terminals = 5, 10, not at the full reproduction's 5, 10, 15, 20, 25, 30, 35",
        ),
        ("fig5", "fig5.csv", "x = 5, 10, not at the full reproduction's 5, 10, 15, 20, 25"),
        ("fig6", "fig6.csv", "x = 1, 3, not at the full reproduction's 1, 1.5, 2, 2.5, 3"),
    ],
)
def test_replot_refuses_to_title_quick_tables_as_a_full_reproduction(
    figure: str, csv_file: str, points: str, quick_reproduction: Path, tmp_path: Path, capsys
):
    out = tmp_path / "replot"
    copy_csv_tables(quick_reproduction, out)
    assert main(["reproduce", figure, "--out", str(out), "--replot"]) == 2  # no --quick
    assert f"{out / csv_file} is at the sweep points {points}: replot at the scale" in (
        capsys.readouterr().err
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(CSV_FILES)


def test_replot_draws_the_topologies_asked_of_the_tables_and_refuses_policies(
    quick_reproduction: Path, tmp_path: Path, capsys
):
    out = tmp_path / "replot"
    copy_csv_tables(quick_reproduction, out)
    replot = ["reproduce", "fig5", "--out", str(out), "--replot"]
    capsys.readouterr()
    assert main([*replot, "--quick", "--policies", "crb-drqn"]) == 2
    assert "--replot draws the policies of the CSV tables" in capsys.readouterr().err

    assert main([*replot, "--quick", "--topology", "four-edge"]) == 0
    assert capsys.readouterr().out.split() == [
        str(out / "fig5_four-edge.png"),
        str(out / "fig5.md"),
    ]
    assert "### four-edge\n" in (out / "fig5.md").read_text()
    assert "### four-edge-hetero" not in (out / "fig5.md").read_text()
    assert (
        "`fl-crb reproduce fig5 --out OUT --quick --topology four-edge`"
        in (out / "fig5.md").read_text()
    )

    rows = read_csv(out / "fig5.csv")
    write_csv(out / "fig5.csv", [r for r in rows if r["topology"] == "four-edge"])
    assert main([*replot, "--quick", "--topology", "four-edge-hetero"]) == 2
    assert f"{out / 'fig5.csv'} has no rows of topology four-edge-hetero (it has four-edge)" in (
        capsys.readouterr().err
    )


def test_reproduce_names_a_missing_topology_directory(tmp_path: Path, capsys):
    code = main(["reproduce", "fig5", "--quick", "--out", str(tmp_path), "--topologies", "nope"])
    assert code == 2
    assert "nope/four-edge.yaml not found" in capsys.readouterr().err


def test_convergence_episode_is_where_the_smoothed_curve_stays_in_the_band():
    rng = np.random.default_rng(0)
    # Reward climbs from -20 to -8 over 60 episodes, then stays at -8 with small noise.
    rewards = np.concatenate([np.linspace(-20, -8, 60), np.full(140, -8.0)])
    rewards += rng.normal(0, 0.05, rewards.size)
    k = convergence_episode(rewards, tolerance=0.05, window=10, final_episodes=20)
    curve = smoothed(rewards, 10)
    final = rewards[-20:].mean()
    assert np.all(np.abs(curve[k:] - final) <= 0.05 * abs(final))
    assert abs(curve[k - 1] - final) > 0.05 * abs(final)
    assert 55 <= k <= 70
    # A late excursion outside the band moves the convergence episode past it.
    rewards[150] = -30.0
    assert convergence_episode(rewards, window=10, final_episodes=20) >= 160
    rewards[-1] = -30.0  # outside the band at the very end: not settled in this run
    assert convergence_episode(rewards, window=10, final_episodes=20) == rewards.size
    with pytest.raises(ValueError, match="too short"):
        convergence_episode(rewards[:25], window=10, final_episodes=20)


def test_comparison_rule_uses_failure_first_then_delay_within_half_a_point():
    def row(failure: float, delay: float) -> dict:
        return {"failure_rate_mean": failure, "avg_delay_s_mean": delay}

    assert at_least_as_good(row(0.040, 0.90), row(0.050, 0.50))  # 1 point fewer failures
    assert not at_least_as_good(row(0.050, 0.50), row(0.040, 0.90))
    assert at_least_as_good(row(0.044, 0.60), row(0.040, 0.61))  # tie: lower delay
    assert not at_least_as_good(row(0.040, 0.62), row(0.044, 0.61))  # tie: higher delay


def test_paper_numbers_are_the_reference_table():
    assert paper_value("fig5", "failure_rate", 25, "CRB-DRQN").value == 0.017
    assert paper_value("fig6", "avg_delay_s", 3.0, "CRB-DRQN").value == 0.73
    assert paper_value("fig6", "failure_rate", 1.0, "Local-Only").value == 0.014
    assert paper_value("fig5", "avg_delay_s", 15, "CRB-DRQN") is None
    cells = [(v.figure, v.metric, v.x, v.algorithm) for v in PAPER_VALUES]
    assert len(cells) == len(set(cells)) == 31


def test_reproduce_policies_limits_the_figures_and_refuses_unknown_names(tmp_path, capsys):
    out = tmp_path / "repro"
    command = ["reproduce", "fig5", "--quick", "--out", str(out), "--topologies", TOPOLOGIES]
    assert main([*command, "--topology", "four-edge", "--policies", "local-only,crb-drqn"]) == 0
    rows = read_csv(out / "fig5.csv")
    assert [r["policy"] for r in rows[:2]] == ["local-only", "crb-drqn"]  # plotting order
    assert {r["policy"] for r in rows} == {"local-only", "crb-drqn"}
    # How much the terminals herd: local-only offloads nothing, CRB-DRQN's tasks meet others.
    for row in rows:
        coarrivals = float(row["same_slot_coarrivals_mean"])
        assert np.isnan(coarrivals) if row["policy"] == "local-only" else coarrivals >= 0
    assert "Same-slot co-arrivals per offloaded task" in (out / "fig5.md").read_text()
    assert (
        "`fl-crb reproduce fig5 --out OUT --quick --topology four-edge "
        "--policies local-only,crb-drqn`" in (out / "fig5.md").read_text()
    )
    assert sorted(p.name.split("-")[0] for p in (out / "runs" / "four-edge").iterdir()) == [
        "crb"
    ] * len(QUICK.seeds) * len(QUICK.terminal_sweep)
    capsys.readouterr()
    assert main([*command, "--policies", "crb-drqn,lottery"]) == 2
    assert "unknown policies ['lottery']" in capsys.readouterr().err
    assert main([*command, "--policies", "random,local-only"]) == 2
    assert "must include crb-drqn" in capsys.readouterr().err


def test_an_evaluation_cached_without_the_spread_is_replayed_checked_and_completed(tmp_path):
    experiments = Experiments(tmp_path, TOPOLOGIES, QUICK)
    point = Point("four-edge-hetero", QUICK.terminal_sweep[0], QUICK.terminal_sweep_rate_bps)
    fresh = experiments.evaluate(point, "round-robin", 0)
    [cache] = (tmp_path / "evaluations").rglob("*.json")
    older = {k: v for k, v in fresh.items() if k not in (SPREAD_KEY, "action_shares")}
    cache.write_text(json.dumps(older))

    assert experiments.evaluate(point, "round-robin", 0) == fresh
    assert json.loads(cache.read_text()) == fresh

    cache.write_text(json.dumps({**older, "avg_delay_s": older["avg_delay_s"] + 0.001}))
    with pytest.raises(RuntimeError, match="other metrics than the cached ones"):
        experiments.evaluate(point, "round-robin", 0)
