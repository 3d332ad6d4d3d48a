"""`--policy` parsed once into a typed `PolicySpec`: every form, every refusal, the JSON form.

Guards issue 18 item 2: the command line is the only place a policy's text is parsed;
inner code receives `Baseline`, `TrainedRun`, `WeightsFile` or `Federated`, and the
party processes read them back from JSON by their `kind`, never by parsing a string.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from fl_crb.cli import main as cli_main
from fl_crb.commands.policy_arg import PolicyError, parse_policy, policy_help
from fl_crb.policies.spec import (
    Baseline,
    Federated,
    PolicySpec,
    TrainedRun,
    WeightsFile,
    absolute,
)
from fl_crb.runtime.config import config_from_dict

TINY = str(Path(__file__).parent.parent / "topologies" / "tiny.yaml")
ALL = (Baseline, TrainedRun, WeightsFile, Federated)


@dataclass(frozen=True)
class Files:
    run: str
    """A training run folder (it holds run.json)."""
    weights: str
    """A weights file."""
    folder: str
    """A folder that is not a training run."""


@pytest.fixture
def files(tmp_path: Path) -> Files:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")
    (tmp_path / "weights.npz").write_bytes(b"")
    (tmp_path / "plain").mkdir()
    return Files(str(tmp_path / "run"), str(tmp_path / "weights.npz"), str(tmp_path / "plain"))


def every_variant(files: Files, baseline: str) -> list[PolicySpec]:
    """One spec of each variant, the baseline named `baseline`, and each start of `Federated`."""
    return [
        Baseline(baseline),
        TrainedRun(files.run),
        WeightsFile(files.weights),
        Federated(),
        Federated(TrainedRun(files.run)),
        Federated(WeightsFile(files.weights)),
    ]


def test_every_form_parses_to_its_variant(files: Files) -> None:
    run, weights = files.run, files.weights
    cases = {
        "round-robin": Baseline("round-robin"),
        "multi-tier": Baseline("multi-tier"),
        run: TrainedRun(run),
        f"crb-drqn:{weights}": WeightsFile(weights),
        weights: WeightsFile(weights),
        "crb-drqn-federated": Federated(),
        f"crb-drqn-federated:{run}": Federated(TrainedRun(run)),
        f"crb-drqn-federated:{weights}": Federated(WeightsFile(weights)),
        f"crb-drqn-federated:crb-drqn:{weights}": Federated(WeightsFile(weights)),
    }
    assert {text: parse_policy(text, ALL) for text in cases} == cases


def test_describe_gives_the_command_line_form_back(files: Files) -> None:
    specs = every_variant(files, "least-loaded")
    assert [parse_policy(spec.describe(), ALL) for spec in specs] == specs
    assert WeightsFile("w.npz").describe() == "crb-drqn:w.npz"
    assert Federated(WeightsFile("w.npz")).describe() == "crb-drqn-federated:w.npz"


def _refusals(files: Files) -> list[tuple[str, tuple[type, ...], bool, str]]:
    """(text, accepted variants, live, what the message says)."""
    return [
        ("nonsense", ALL, False, "not a policy name, a training run folder or a weights file"),
        ("", ALL, False, "names no policy"),
        ("crb-drqn:missing.npz", ALL, False, "weights file missing.npz does not exist"),
        (
            f"crb-drqn:{files.run}",
            ALL,
            False,
            f"{files.run} is a folder, not a weights file (a training run folder is given "
            "without crb-drqn:)",
        ),
        (files.folder, ALL, False, "holds no run.json, so it is not a training run folder"),
        ("crb-drqn-federated:", ALL, False, "names no policy"),
        ("crb-drqn-federated:nowhere", ALL, False, "not a policy name"),
        (
            "round-robin",
            (TrainedRun, WeightsFile, Federated),
            False,
            "a baseline, which this command does not take",
        ),
        (files.run, (Baseline,), False, "a training run folder, which this command does not take"),
        (files.weights, (Baseline, TrainedRun), False, "a weights file, which this command"),
        ("crb-drqn-federated", (Baseline, WeightsFile), True, "federated CRB-DRQN, which"),
        ("multi-tier", (Baseline,), True, "simulation only, a live terminal cannot run it"),
    ]


def test_every_refusal_names_the_flag_the_value_and_the_accepted_forms(files: Files) -> None:
    for text, accepts, live, problem in _refusals(files):
        with pytest.raises(PolicyError) as caught:
            parse_policy(text, accepts, live)
        message = str(caught.value)
        assert message.startswith(f"--policy {text!r}: "), message
        assert problem in message, message
        assert message.endswith(f"; give {policy_help(accepts, live)}"), message
    assert "multi-tier" not in policy_help((Baseline,), live=True)
    assert "multi-tier" in policy_help((Baseline,), live=False)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["simulate", "--policy", "nonsense"], "fl-crb simulate: --policy 'nonsense': not a"),
        (["evaluate", "--policy", "crb-drqn:x.npz"], "--policy 'crb-drqn:x.npz': weights file"),
        (
            ["run-local", "--policy", "multi-tier", "--duration", "1s", "--out", "x"],
            "fl-crb run-local: --policy 'multi-tier': it decides from every terminal's",
        ),
        (
            ["federate", "--local", "--policy", "round-robin", "--duration", "1s", "--out", "x"],
            "fl-crb federate: --policy 'round-robin': a baseline, which this command does not",
        ),
    ],
)
def test_commands_refuse_a_bad_policy_before_doing_anything(argv, expected, capsys) -> None:
    assert cli_main([argv[0], "--topology", TINY, *argv[1:]]) == 2
    assert expected in capsys.readouterr().err


def test_each_commands_help_lists_the_forms_it_takes(capsys) -> None:
    for command, forms in (
        ("simulate", ["a baseline (local-only"]),
        ("evaluate", ["a baseline", "a training run folder"]),
        ("run-local", ["a baseline", "a weights file (crb-drqn:WEIGHTS.npz", "training run"]),
        ("federate", ["a training run folder", "a weights file", "crb-drqn-federated"]),
        ("emulate", ["crb-drqn (default", "a baseline", "crb-drqn-federated"]),
    ):
        with pytest.raises(SystemExit):
            cli_main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for form in forms:
            assert form in text.replace("- ", "-"), (command, form)


@dataclass(frozen=True)
class Holder:
    policy: PolicySpec


def test_a_spec_round_trips_through_json_by_its_kind(files: Files) -> None:
    for spec in every_variant(files, "random"):
        data = json.loads(json.dumps(asdict(Holder(spec))))
        assert data["policy"]["kind"] == spec.kind
        assert config_from_dict(Holder, data, "party.json") == Holder(spec)


def test_a_bad_json_spec_names_the_file_and_the_field() -> None:
    kinds = r"\['baseline', 'federated', 'trained-run', 'weights-file'\]"
    with pytest.raises(ValueError, match=rf"party.json: policy.kind: expected one of {kinds}"):
        config_from_dict(Holder, {"policy": {"kind": "oracle", "name": "x"}}, "party.json")
    with pytest.raises(ValueError, match=r"party.json: policy.kind: .* got None"):
        config_from_dict(Holder, {"policy": {"name": "random"}}, "party.json")
    with pytest.raises(ValueError, match=r"policy.start.kind: expected one of"):
        start = {"kind": "baseline", "name": "random"}
        config_from_dict(Holder, {"policy": {"kind": "federated", "start": start}}, "party.json")
    with pytest.raises(ValueError, match=r"party.json: policy: unknown baseline .oracle."):
        config_from_dict(Holder, {"policy": {"kind": "baseline", "name": "oracle"}}, "party.json")


def test_absolute_makes_every_path_absolute(files: Files, monkeypatch) -> None:
    monkeypatch.chdir(Path(files.run).parent)
    assert absolute(TrainedRun("run")) == TrainedRun(files.run)
    assert absolute(Federated(WeightsFile("weights.npz"))) == Federated(WeightsFile(files.weights))
    assert absolute(Baseline("random")) == Baseline("random")
