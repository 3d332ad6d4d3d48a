"""The learning baselines end to end: `fl-crb train --algo` and `fl-crb evaluate`, run
directories, resuming, validation, and a command line that imports no torch."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from fl_crb.cli import main
from fl_crb.learn.learner_config import LearnerConfig
from fl_crb.topology import load_topology
from fl_crb.training.config import MARL_ALGORITHMS, TrainConfig
from fl_crb.training.run import TrainingRun, read_metrics
from fl_crb.training.trained_policy import marl_policy

TINY = str(Path(__file__).resolve().parent.parent / "topologies" / "tiny.yaml")
TINY_PARAMS = load_topology(TINY).mec_params()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("algo", MARL_ALGORITHMS)
def test_train_then_evaluate_each_learning_baseline(algo: str, tmp_path: Path, capsys):
    out = tmp_path / algo
    train = ["train", "--algo", algo, "--topology", TINY, "--slots", "20", "--out", str(out)]
    assert main([*train, "--episodes", "2", "--checkpoint-every", "1"]) == 0
    setup = json.loads((out / "run.json").read_text())
    assert setup["config"]["algo"] == algo and setup["config"]["marl"]
    assert [m["episode"] for m in read_metrics(out)] == [0, 1]
    assert main([*train, "--episodes", "3"]) == 0  # resumes after episode 2
    assert "resuming" in capsys.readouterr().err
    assert [m["episode"] for m in read_metrics(out)] == [0, 1, 2]
    evaluate = ["evaluate", "--topology", TINY, "--policy", str(out), "--episodes", "1"]
    assert main([*evaluate, "--slots", "20", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["policy"] == algo and report["weights"] == "last checkpoint"
    assert report["tasks"] > 0 and 0 <= report["failure_rate"] <= 1
    assert ("reconstruction" in report.get("note", "")) == (algo == "jodrl-pp")


def test_evaluate_multi_tier_by_name_is_labelled(capsys):
    assert main(["evaluate", "--topology", TINY, "--policy", "multi-tier", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["policy"] == "multi-tier" and "no terminal has" in report["note"]


def test_qmix_action_selection_option(tmp_path: Path, capsys):
    base = ["train", "--topology", TINY, "--slots", "10", "--episodes", "1"]
    out = tmp_path / "cem"
    assert main([*base, "--algo", "qmix", "--action-selection", "cem", "--out", str(out)]) == 0
    setup = json.loads((out / "run.json").read_text())
    assert setup["config"]["marl"]["action_selection"] == "cem"
    code = main([*base, "--action-selection", "cem", "--out", str(tmp_path / "x")])
    assert code == 2 and "--algo qmix only" in capsys.readouterr().err


def small_config(algo: str) -> TrainConfig:
    config = TrainConfig(
        algo=algo,
        seed=2,
        arrival_slots=25,
        learner=LearnerConfig(hidden=8, lstm_hidden=4),
        epsilon_decay_episodes=2,
        validation_every_episodes=1,
        validation_episodes=1,
    )
    if algo == "qmix":  # train from the second episode on
        config = replace(config, marl=replace(config.marl, batch_slots=8, steps_per_episode=3))
    return config


@pytest.mark.parametrize("algo", MARL_ALGORITHMS)
def test_interrupted_run_resumes_exactly_and_keeps_the_validated_best(algo: str, tmp_path: Path):
    setup = ("tiny", TINY_PARAMS, 4, small_config(algo))
    TrainingRun.open(tmp_path / "straight", *setup).train(4, checkpoint_every=2)

    class Interrupt(Exception):
        pass

    def stop(metrics) -> None:
        if metrics.episode == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        TrainingRun.open(tmp_path / "cut", *setup).train(4, checkpoint_every=2, on_episode=stop)
    resumed = TrainingRun.open(tmp_path / "cut", *setup)
    assert resumed.trainer.episode == 2
    resumed.train(4, checkpoint_every=2)

    def without_time(rows):
        return [{k: v for k, v in row.items() if k not in ("wall_s", "cpu_s")} for row in rows]

    straight = read_metrics(tmp_path / "straight")
    assert without_time(read_metrics(tmp_path / "cut")) == without_time(straight)
    assert sum(m["train_steps"] for m in straight) > 0
    assert (tmp_path / "straight" / "best.pt").is_file()
    policy = marl_policy(tmp_path / "straight", TINY_PARAMS, 4)
    assert policy.name == algo
    other = replace(TINY_PARAMS)
    if algo in ("decentralized-ac", "jodrl-pp"):
        with pytest.raises(ValueError, match=r"one .* actor each"):
            marl_policy(tmp_path / "straight", other, 6)
    else:  # one shared actor: any terminal count
        assert marl_policy(tmp_path / "straight", other, 6).name == algo


def test_unknown_marl_settings_and_mismatched_configs_are_refused():
    data = TrainConfig(algo="mappo").to_dict()
    data["marl"]["clipping"] = 0.3
    with pytest.raises(ValueError, match=r"unknown MAPPOConfig keys \['clipping'\]"):
        TrainConfig.from_dict(data)
    with pytest.raises(ValueError, match="needs a QMIXConfig"):
        TrainConfig(algo="qmix", marl=TrainConfig(algo="mappo").marl)
    assert "marl" not in TrainConfig().to_dict()  # CRB-DRQN's run.json is unchanged


def test_the_command_line_imports_no_torch():
    code = (
        "import sys\n"
        "from fl_crb.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('torch', 'matplotlib') if m in sys.modules)\n"
        "print('heavy modules:', ','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip().splitlines()[-1] == "heavy modules:"
