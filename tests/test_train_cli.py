"""`fl-crb train` and `fl-crb evaluate`: run directories, resuming, held-out evaluation."""

import json
from pathlib import Path

import pytest

from fl_crb.cli import main
from fl_crb.mec.simulator import MECSimulator
from fl_crb.policies.evaluation import evaluate_policy
from fl_crb.topology import load_topology
from fl_crb.training.checkpoint import load_networks
from fl_crb.training.config import TrainConfig, validation_seed
from fl_crb.training.run import TrainingRun, read_metrics
from fl_crb.training.trained_policy import learned_policy

TINY = str(Path(__file__).resolve().parent.parent / "topologies" / "tiny.yaml")
TRAIN = ["train", "--topology", TINY, "--slots", "20", "--seed", "3"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_train_writes_a_run_and_resumes_it(tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--episodes", "3", "--checkpoint-every", "2", "--out", str(out)]) == 0
    setup = json.loads((out / "run.json").read_text())
    assert setup["terminals"] == 4 and setup["config"]["algo"] == "crb-drqn"
    assert setup["config"]["seed"] == 3 and setup["config"]["arrival_slots"] == 20
    metrics = read_metrics(out)
    assert [m["episode"] for m in metrics] == [0, 1, 2]
    for key in ("avg_reward", "avg_delay_s", "failure_rate", "epsilon", "pool_trajectories"):
        assert key in metrics[0]
    assert (out / "checkpoint" / "state.json").is_file()
    assert "3/3" in capsys.readouterr().err  # the progress bar

    assert main([*TRAIN, "--episodes", "5", "--out", str(out)]) == 0
    assert "resuming" in capsys.readouterr().err
    assert [m["episode"] for m in read_metrics(out)] == [0, 1, 2, 3, 4]


def test_interrupted_run_resumes_from_its_checkpoint_and_matches_an_uninterrupted_one(
    tmp_path: Path,
):
    topology = load_topology(TINY)
    config = TrainConfig(seed=1, arrival_slots=30, min_pool_trajectories=4)
    setup = (topology.name, topology.mec_params(), 4, config)

    straight = TrainingRun.open(tmp_path / "straight", *setup)
    straight.train(4, checkpoint_every=2)
    assert read_metrics(tmp_path / "straight")[-1]["train_steps"] > 0

    class Interrupt(Exception):
        pass

    def stop_after_third(metrics) -> None:
        if metrics.episode == 2:
            raise Interrupt  # episode 2 is in metrics.jsonl, the checkpoint holds 0..1

    interrupted = TrainingRun.open(tmp_path / "cut", *setup)
    with pytest.raises(Interrupt):
        interrupted.train(4, checkpoint_every=2, on_episode=stop_after_third)
    assert len(read_metrics(tmp_path / "cut")) == 3
    resumed = TrainingRun.open(tmp_path / "cut", *setup)
    assert resumed.trainer.episode == 2
    assert len(read_metrics(tmp_path / "cut")) == 2  # episode 2 will run again
    resumed.train(4, checkpoint_every=2)

    def without_time(rows):
        return [{k: v for k, v in row.items() if k not in ("wall_s", "cpu_s")} for row in rows]

    assert without_time(read_metrics(tmp_path / "cut")) == without_time(
        read_metrics(tmp_path / "straight")
    )


def test_resuming_with_another_setup_is_refused(tmp_path: Path, capsys):
    out = str(tmp_path / "run")
    assert main([*TRAIN, "--episodes", "1", "--out", out]) == 0
    assert main([*TRAIN, "--episodes", "2", "--out", out, "--terminals", "6"]) == 2
    assert "cannot resume" in capsys.readouterr().err
    assert main([*TRAIN, "--episodes", "2", "--out", out, "--algo", "independent-drqn"]) == 2
    assert "config.algo" in capsys.readouterr().err


def test_train_refuses_a_foreign_non_empty_directory(tmp_path: Path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main([*TRAIN, "--episodes", "1", "--out", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err


def evaluate(capsys, *args: str) -> dict:
    assert main(["evaluate", "--topology", TINY, "--episodes", "2", "--json", *args]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1  # exactly one JSON object
    return json.loads(lines[0])


def test_evaluate_a_trained_run_and_a_baseline_on_the_same_held_out_arrivals(
    tmp_path: Path, capsys
):
    out = tmp_path / "run"
    assert main([*TRAIN, "--episodes", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    learned = evaluate(capsys, "--policy", str(out), "--seed", "5")
    baseline = evaluate(capsys, "--policy", "local-only", "--seed", "5")
    for report in (learned, baseline):
        for key in ("policy", "episodes", "tasks", "avg_delay_s", "failure_rate", "avg_reward"):
            assert key in report
        assert report["episodes"] == 2 and report["first_seed"] >= 2**40
    assert learned["policy"] == "crb-drqn" and baseline["policy"] == "local-only"
    assert learned["tasks"] == baseline["tasks"] > 0  # same arrivals
    # Where the tasks went: local-only keeps all of them and never meets anyone at an edge.
    assert baseline["action_shares"][0] == 1.0 and sum(baseline["action_shares"]) == 1.0
    assert baseline["same_slot_coarrivals"] != baseline["same_slot_coarrivals"]  # NaN
    assert sum(learned["action_shares"]) == pytest.approx(1.0)
    # A CRB-DRQN run serves any terminal count through the managing edges.
    assert evaluate(capsys, "--policy", str(out), "--terminals", "6")["terminals"] == 6


def test_evaluate_rejects_an_unknown_policy(tmp_path: Path, capsys):
    code = main(["evaluate", "--topology", TINY, "--policy", str(tmp_path / "nothing")])
    assert code == 2
    error = capsys.readouterr().err
    assert f"--policy '{tmp_path / 'nothing'}': not a policy name, a training run folder" in error
    assert "give a baseline (" in error and "a training run folder (fl-crb train --out" in error


def test_an_independent_drqn_run_evaluates_with_its_own_terminal_count_only(tmp_path: Path, capsys):
    out = tmp_path / "independent"
    args = [*TRAIN, "--algo", "independent-drqn", "--episodes", "2", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    report = evaluate(capsys, "--policy", str(out))
    assert report["policy"] == "independent-drqn" and report["tasks"] > 0
    code = main(["evaluate", "--topology", TINY, "--policy", str(out), "--terminals", "6"])
    assert code == 2
    assert "cannot act for 6 terminals" in capsys.readouterr().err


def test_a_run_keeps_the_weights_that_validate_best_and_evaluation_uses_them(
    tmp_path: Path, capsys
):
    topology = load_topology(TINY)
    config = TrainConfig(
        seed=2,
        arrival_slots=30,
        min_pool_trajectories=4,
        epsilon_decay_episodes=2,
        validation_every_episodes=2,
        validation_episodes=2,
    )
    run = TrainingRun.open(tmp_path / "run", topology.name, topology.mec_params(), 4, config)
    run.train(6)
    rows = [json.loads(line) for line in (tmp_path / "run" / "validation.jsonl").open()]
    assert [row["episode"] for row in rows] == [1, 3, 5]  # after episodes 2, 4, 6
    best_rows = [row for row in rows if row["best"]]
    assert best_rows[0] == rows[0]
    rewards = [row["avg_reward"] for row in best_rows]
    assert rewards == sorted(rewards)  # each kept snapshot beat the one before
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best == best_rows[-1]
    # Playing the kept weights on the validation episodes reproduces their score.
    policy = learned_policy(tmp_path / "run", topology.mec_params(), 4)
    simulator = MECSimulator(topology.mec_params(), 4)
    replayed = evaluate_policy(simulator, policy, 2, 30, validation_seed(2, 0))
    assert replayed.avg_reward == best["avg_reward"]
    report = evaluate(capsys, "--policy", str(tmp_path / "run"))
    assert report["weights"] == f"validated best, after episode {best['episode']}"


def test_a_run_with_terminal_codes_records_them_and_its_networks_read_them(tmp_path: Path, capsys):
    out = tmp_path / "coded"
    args = [*TRAIN, "--terminal-code-bits", "3", "--episodes", "2", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    config = json.loads((out / "run.json").read_text())["config"]
    assert config["learner"]["terminal_code_bits"] == 3
    for saved in load_networks(out / "checkpoint"):  # scalars: η, μcomp, μtran, q per edge
        assert saved["evaluation"]["scalar_fc.weight"].shape[1] == 3 + 2 + 3  # E = 2, code
    assert evaluate(capsys, "--policy", str(out))["tasks"] > 0
    # Resuming with the paper's state (no codes) is another setup, and says which field.
    assert main([*TRAIN, "--episodes", "3", "--out", str(out)]) == 2
    assert "terminal_code_bits" in capsys.readouterr().err


def test_a_run_without_codes_records_the_paper_state_as_before(tmp_path: Path, capsys):
    assert main([*TRAIN, "--episodes", "1", "--out", str(tmp_path / "run")]) == 0
    config = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert "terminal_code_bits" not in config["learner"]  # older runs still match


def test_a_run_of_other_widths_records_them_and_its_networks_have_them(tmp_path: Path, capsys):
    out = tmp_path / "wide"
    args = [*TRAIN, "--hidden", "24", "--lstm-hidden", "8", "--episodes", "2", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    learner = json.loads((out / "run.json").read_text())["config"]["learner"]
    assert (learner["hidden"], learner["lstm_hidden"]) == (24, 8)
    for saved in load_networks(out / "checkpoint"):
        assert saved["evaluation"]["scalar_fc.weight"].shape[0] == 24
        assert saved["evaluation"]["load_lstm.weight_hh_l0"].shape == (4 * 8, 8)
    assert evaluate(capsys, "--policy", str(out))["tasks"] > 0
    # Resuming at the default width is another setup, and says which field.
    assert main([*TRAIN, "--episodes", "3", "--out", str(out)]) == 2
    assert "hidden" in capsys.readouterr().err


def test_network_widths_are_refused_for_the_marl_baselines(tmp_path: Path, capsys):
    args = [*TRAIN, "--algo", "mappo", "--hidden", "32", "--lstm-hidden", "8", "--episodes", "1"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    assert "--hidden, --lstm-hidden apply to crb-drqn and independent-drqn" in (
        capsys.readouterr().err
    )


def test_terminal_codes_are_refused_for_the_marl_baselines(tmp_path: Path, capsys):
    args = [*TRAIN, "--algo", "qmix", "--terminal-code-bits", "4", "--episodes", "1"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    assert "--terminal-code-bits applies to" in capsys.readouterr().err
