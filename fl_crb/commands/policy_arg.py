"""`--policy`: the command line's text parsed once into a typed `PolicySpec`.

The forms (`fl_crb.policies.spec`), tried in this order:

| text                                   | spec                                       |
| -------------------------------------- | ------------------------------------------ |
| a baseline's name (`round-robin`, ...) | `Baseline(name)`                           |
| `crb-drqn-federated`                   | `Federated(None)`: fresh edge learners     |
| `crb-drqn-federated:RUN_OR_WEIGHTS`    | `Federated(TrainedRun or WeightsFile)`     |
| `crb-drqn:WEIGHTS.npz`                 | `WeightsFile(WEIGHTS.npz)`                 |
| a folder holding run.json              | `TrainedRun(folder)` (`fl-crb train --out`)|
| an existing file                       | `WeightsFile(file)`                        |

Each command accepts some of the variants (`accepts`) and says which in its --help
(`policy_help`); a live command (`live=True`) also refuses the simulation-only
baselines. Every error names `--policy`, the value given and the forms accepted. Paths
are kept as given; the coordinators make them absolute for their processes.
"""

from __future__ import annotations

from pathlib import Path

from fl_crb.policies.baselines import BASELINES, SIMULATION_POLICIES
from fl_crb.policies.spec import (
    FEDERATED_NAME,
    WEIGHTS_PREFIX,
    Baseline,
    Federated,
    PolicySpec,
    TrainedRun,
    WeightsFile,
)

FLAG = "--policy"
KINDS = {
    Baseline: "a baseline",
    TrainedRun: "a training run folder",
    WeightsFile: "a weights file",
    Federated: "federated CRB-DRQN",
}
"""Each variant in a word, for the error naming one a command does not take."""


def _forms(live: bool) -> dict[type, str]:
    baselines = [*BASELINES] if live else [*BASELINES, *SIMULATION_POLICIES]
    return {
        Baseline: f"a baseline ({', '.join(baselines)})",
        TrainedRun: "a training run folder (fl-crb train --out DIR)",
        WeightsFile: f"a weights file ({WEIGHTS_PREFIX}WEIGHTS.npz, or the file's path)",
        Federated: f"{FEDERATED_NAME}[:RUN_OR_WEIGHTS] (federated CRB-DRQN from fresh "
        "learners, a training run folder or a weights file)",
    }


def policy_help(accepts: tuple[type, ...], live: bool = False) -> str:
    """The accepted forms, for a command's --help."""
    forms = _forms(live)
    return "; ".join(forms[kind] for kind in accepts)


class PolicyError(ValueError):
    """A --policy value that is not one of the accepted forms."""


def parse_policy(
    text: str, accepts: tuple[type, ...] = (Baseline, TrainedRun, WeightsFile), live: bool = False
) -> PolicySpec:
    """The policy `text` names, if it is of a kind in `accepts` (and, for `live`, one a
    live terminal can run); else a `PolicyError` naming --policy, the value and the
    accepted forms."""
    spec = _parse(text, accepts, live)
    if not isinstance(spec, accepts):
        raise _error(text, f"{KINDS[type(spec)]}, which this command does not take", accepts, live)
    if live and isinstance(spec, Baseline) and not spec.live:
        raise _error(
            text,
            "it decides from every terminal's observation: simulation only, a live "
            "terminal cannot run it",
            accepts,
            live,
        )
    return spec


def _parse(text: str, accepts: tuple[type, ...], live: bool) -> PolicySpec:
    if text in BASELINES or text in SIMULATION_POLICIES:
        return Baseline(text)
    if text == FEDERATED_NAME:
        return Federated(None)
    if text.startswith(FEDERATED_NAME + ":"):
        source = text[len(FEDERATED_NAME) + 1 :]
        if source.startswith(WEIGHTS_PREFIX):
            source = source[len(WEIGHTS_PREFIX) :]
        return Federated(_start(text, source, accepts, live))
    if text.startswith(WEIGHTS_PREFIX):
        path = text[len(WEIGHTS_PREFIX) :]
        if Path(path).is_file():
            return WeightsFile(path)
        if Path(path).is_dir():
            hint = " (a training run folder is given without crb-drqn:)" if _is_run(path) else ""
            raise _error(text, f"{path} is a folder, not a weights file{hint}", accepts, live)
        raise _error(text, f"weights file {path} does not exist", accepts, live)
    return _start(text, text, accepts, live)


def _start(text: str, path: str, accepts: tuple[type, ...], live: bool) -> TrainedRun | WeightsFile:
    """A training run folder or a weights file at `path` (part of `text`)."""
    if not path:
        raise _error(text, "names no policy", accepts, live)
    if Path(path).is_dir():
        if not _is_run(path):
            raise _error(
                text,
                f"folder {path} holds no run.json, so it is not a training run folder",
                accepts,
                live,
            )
        return TrainedRun(path)
    if Path(path).is_file():
        return WeightsFile(path)
    raise _error(text, "not a policy name, a training run folder or a weights file", accepts, live)


def _is_run(path: str) -> bool:
    return (Path(path) / "run.json").is_file()


def _error(text: str, problem: str, accepts: tuple[type, ...], live: bool) -> PolicyError:
    return PolicyError(f"{FLAG} {text!r}: {problem}; give {policy_help(accepts, live)}")
