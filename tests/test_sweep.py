"""`fl-crb sweep`: the grid (flags and file), the cache key, resuming, and the same
numbers from one process, two workers and a two-node Ray cluster."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from fl_crb.cli import main
from fl_crb.experiments.cells import run_key
from fl_crb.experiments.sweep_grid import GridError, SweepGrid, read_grid_file, train_config
from fl_crb.topology import load_topology
from fl_crb.training.config import TrainConfig

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
TINY = str(TOPOLOGIES / "tiny.yaml")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = [
    "--topology", TINY, "--algo", "crb-drqn,round-robin", "--terminals", "3,4",
    "--seeds", "0-1", "--episodes", "2", "--eval-episodes", "1", "--slots", "20",
    "--train-option", "learner.hidden=8", "--train-option", "learner.lstm_hidden=4",
]  # fmt: skip
"""A sweep of 2 points × 2 policies × 2 seeds = 8 cells (4 of them trained), in seconds."""


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def sweep(out: Path, *flags: str) -> int:
    return main(["sweep", "--out", str(out), *SMALL, *flags])


# The grid ------------------------------------------------------------------------------


def test_flags_make_the_grid_of_every_axis(tmp_path: Path):
    from fl_crb.cli import build_parser
    from fl_crb.commands.sweep import grid_arguments

    args = build_parser().parse_args(
        ["sweep", "--out", str(tmp_path), "--topology", TINY, "--algo", "crb-drqn",
         "--algo", "independent-drqn,local-only", "--terminals", "10,15", "--rate", "2Mbps",
         "--point", "15:2.5Mbps", "--seeds", "0-2,5", "--train-option", "hidden=64,128"]
    )  # fmt: skip
    grid = grid_arguments(args)
    assert grid.algorithms == ("crb-drqn", "independent-drqn", "local-only")
    assert grid.points == ((10, 2e6), (15, 2e6), (15, 2.5e6))
    assert grid.seeds == (0, 1, 2, 5)
    assert grid.option_sets() == [{"hidden": "64"}, {"hidden": "128"}]
    assert (grid.episodes, grid.evaluation_episodes, grid.slots) == (200, 20, 100)


def test_a_grid_file_is_checked_field_by_field_and_flags_replace_its_fields(tmp_path: Path):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(
        "algorithms: [crb-drqn]\ntopologies: [tiny.yaml]\npoints: ['4:1Mbps']\n"
        "seeds: 0-1\ntrain_options: {hidden: [8, 16]}\nepisodes: 3\n"
    )
    fields = read_grid_file(grid_file)
    assert fields["topologies"] == (tmp_path / "tiny.yaml",)
    assert SweepGrid(**fields).points == ((4, 1e6),)

    for text, message in (
        ("algorithm: [crb-drqn]\n", "grid.yaml: algorithm: unknown field; known: algorithms,"),
        ("rates: [2Mbs]\n", "grid.yaml: rates: '2Mbs': "),
        ("points: ['15-2Mbps']\n", "grid.yaml: points: '15-2Mbps' is not terminals:rate"),
        ("seeds: [a]\n", "grid.yaml: seeds: 'a' is not a seed or a range like 0-2"),
        ("episodes: many\n", "grid.yaml: episodes: 'many' is not an integer"),
    ):
        grid_file.write_text(text)
        with pytest.raises(GridError, match=re.escape(f"{tmp_path}/{message}")):
            read_grid_file(grid_file)

    grid_file.write_text("algorithms: [crb-drqn, lottery]\ntopologies: [tiny.yaml]\n")
    with pytest.raises(GridError, match=r"grid.yaml: algorithms: unknown 'lottery'"):
        SweepGrid(**read_grid_file(grid_file))


def test_training_options_are_those_of_fl_crb_train_or_config_fields():
    config = train_config("crb-drqn", 2, 20, {"hidden": "128", "learner.batch_trajectories": "15"})
    assert config == replace(
        TrainConfig(seed=2, arrival_slots=20),
        learner=replace(TrainConfig().learner, hidden=128, batch_trajectories=15),
    )
    with pytest.raises(GridError, match=r"train_options\.hidden: applies to crb-drqn and "):
        train_config("qmix", 0, 20, {"hidden": "128"})
    with pytest.raises(ValueError, match=r"train_options\.widht: no option 'widht'; choose from "):
        train_config("crb-drqn", 0, 20, {"widht": "128"})
    with pytest.raises(ValueError, match=r"train_options\.hidden: 'wide' is not a int"):
        train_config("crb-drqn", 0, 20, {"hidden": "wide"})


def test_the_run_key_changes_with_anything_that_changes_the_training():
    tiny = load_topology(TINY)
    config = TrainConfig(arrival_slots=20)
    key = run_key(tiny, config)
    assert key == run_key(load_topology(TINY), TrainConfig(arrival_slots=20))  # stable
    other_learner = replace(config, learner=replace(config.learner, hidden=128))
    faster_edge = replace(tiny, edges=(replace(tiny.edges[0], cpu_hz=50e9), *tiny.edges[1:]))
    variants = [
        run_key(tiny, replace(config, seed=1)),
        run_key(tiny, other_learner),
        run_key(tiny, TrainConfig(algo="independent-drqn", arrival_slots=20)),
        run_key(tiny.with_overrides(terminals=3), config),
        run_key(tiny.with_overrides(arrival_rate_bps=1e6), config),
        run_key(faster_edge, config),
    ]
    assert len({key, *variants}) == 1 + len(variants)


# Running --------------------------------------------------------------------------------


def test_a_sweep_writes_one_row_per_cell_and_seed_and_resumes(tmp_path: Path, capsys):
    out = tmp_path / "sweep"
    assert sweep(out, "--jobs", "1") == 0
    table = rows(out / "sweep.csv")
    assert [(r["terminals"], r["policy"], r["seed"]) for r in table] == [
        (t, p, s) for t in ("3", "4") for p in ("crb-drqn", "round-robin") for s in ("0", "1")
    ]
    assert {r["learner.hidden"] for r in table} == {"8", ""}  # baselines take no options
    assert all(float(r["rate_mbps"]) == 2.0 and r["topology"] == "tiny" for r in table)
    runs = sorted(p.name for p in (out / "cache" / "runs").iterdir())
    assert runs == sorted(f"crb-drqn-{r['key']}" for r in table if r["policy"] == "crb-drqn")
    markdown = (out / "sweep.md").read_text()
    assert "| tiny | 3 | 2.0 | crb-drqn | 8 | 4 | 2 |" in markdown
    assert (out / "sweep_tiny_2Mbps.png").read_bytes()[:4] == b"\x89PNG"
    assert "8/8 (0 cached)" in capsys.readouterr().err

    # Interrupted after all but one cell: only that one runs again, to the same numbers.
    before = (out / "sweep.csv").read_text()
    [evaluation] = [
        p for p in (out / "cache" / "evaluations").iterdir() if p.name.startswith("crb-drqn")
    ][:1]
    evaluation.unlink()
    assert sweep(out, "--jobs", "1") == 0
    assert "1/1 (7 cached)" in capsys.readouterr().err
    assert (out / "sweep.csv").read_text() == before

    # Fewer episodes than a cached run holds are refused: its weights are not theirs.
    assert sweep(out, "--jobs", "1", "--episodes", "1") == 2
    assert "holds 2 training episodes, more than the 1 asked for" in capsys.readouterr().err


def test_two_workers_give_the_numbers_of_one(tmp_path: Path):
    assert sweep(tmp_path / "one", "--jobs", "1") == 0
    assert sweep(tmp_path / "two", "--jobs", "2") == 0
    assert (tmp_path / "two" / "sweep.csv").read_bytes() == (
        tmp_path / "one" / "sweep.csv"
    ).read_bytes()


# A Ray cluster of two nodes on this machine ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(process_groups: list[int]) -> None:
    """End the Ray processes the `ray start`s left (their own process groups, nothing
    else): SIGTERM, then SIGKILL to what is left after a few seconds."""
    for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        alive = list(process_groups)
        deadline = time.monotonic() + wait_s
        for group in alive:
            _signal(group, sig)
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = [group for group in alive if _signal(group, 0)]
        if not alive:
            return


def _signal(process_group: int, sig: int) -> bool:
    """Send `sig` to the group; False if the group has no process left."""
    try:
        os.killpg(process_group, sig)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def ray_cluster():
    """(About 35 s with the test on the shared 2-core machine, 80 s at its busiest.)
    A head node and a second node, one CPU each, on loopback; yields the address. Each
    `ray start` runs in a session of its own, whose process group holds every process
    it started, so the cluster is stopped by those group ids (not `ray stop`, which
    would end any Ray on the machine)."""
    pytest.importorskip("ray")
    ray = str(Path(sys.executable).with_name("ray"))
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must be short
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    groups = []
    try:
        for node in (
            ["--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", temp_dir],
            ["--address", address],
        ):
            start = subprocess.Popen(
                [ray, "start", *node, *common],
                env=env,
                start_new_session=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            groups.append(start.pid)
            output, _ = start.communicate(timeout=120)
            assert start.returncode == 0, output
        yield address
    finally:
        _stop(groups)
        subprocess.run(["rm", "-rf", temp_dir], check=False)


def test_a_two_node_ray_cluster_gives_the_numbers_of_one_process(tmp_path: Path, ray_cluster: str):
    import ray

    assert sweep(tmp_path / "one", "--jobs", "1") == 0
    assert sweep(tmp_path / "ray", "--ray", ray_cluster) == 0
    assert not ray.is_initialized()  # the driver disconnected
    assert (tmp_path / "ray" / "sweep.csv").read_bytes() == (
        tmp_path / "one" / "sweep.csv"
    ).read_bytes()
    trained = [
        json.loads((d / "run.json").read_text()) for d in (tmp_path / "ray").glob("cache/runs/*")
    ]
    assert len(trained) == 4
