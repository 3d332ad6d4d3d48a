"""Which policy a run uses, as a typed value: the command line parses it once.

A policy is one of four things, each a frozen dataclass:

- `Baseline(name)`: a non-learning policy of `fl_crb.policies.baselines` by name (the
  simulation-only ones included; `live` says whether a live terminal can run it);
- `TrainedRun(path)`: a training run folder of `fl-crb train --out` (its run.json says
  what was trained, with which network widths);
- `WeightsFile(path)`: a Q-network's weights file (`fl_crb.learn.weights_file`; written
  as `crb-drqn:WEIGHTS.npz` on the command line), acted with greedily;
- `Federated(start)`: federated CRB-DRQN, its edge learners starting from a trained run,
  a weights file, or (None) freshly initialised.

`describe()` gives the command-line form back (for summaries and reports). In JSON (the
party configs, run.json) a spec is its fields plus `kind`, which names the variant, so
`fl_crb.runtime.config.load_config` reads it back without parsing any string. Parsing
the command line's text is the commands' job (`fl_crb.commands.policy_arg`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from fl_crb.policies.baselines import BASELINES, SIMULATION_POLICIES

WEIGHTS_PREFIX = "crb-drqn:"
"""Command-line prefix of a weights file: `crb-drqn:WEIGHTS.npz`."""
FEDERATED_NAME = "crb-drqn-federated"
"""Command-line name of federated CRB-DRQN (`crb-drqn-federated[:RUN_OR_WEIGHTS]`)."""


@dataclass(frozen=True)
class Baseline:
    """A non-learning policy, by name."""

    name: str
    """A name of `BASELINES` or `SIMULATION_POLICIES`."""
    kind: str = field(default="baseline", init=False)
    """The variant's name in JSON."""

    def __post_init__(self) -> None:
        if self.name not in BASELINES and self.name not in SIMULATION_POLICIES:
            known = ", ".join([*BASELINES, *SIMULATION_POLICIES])
            raise ValueError(f"unknown baseline {self.name!r}; choose one of {known}")

    @property
    def live(self) -> bool:
        """Whether a live terminal can run it (simulation-only policies observe every
        terminal)."""
        return self.name in BASELINES

    def describe(self) -> str:
        return self.name


@dataclass(frozen=True)
class TrainedRun:
    """A training run folder (`fl-crb train --out`)."""

    path: str
    """The folder, holding run.json."""
    kind: str = field(default="trained-run", init=False)
    """The variant's name in JSON."""

    def describe(self) -> str:
        return self.path


@dataclass(frozen=True)
class WeightsFile:
    """A Q-network's weights file (`save_weights_file`), every terminal acting with it."""

    path: str
    """The `.npz` file."""
    kind: str = field(default="weights-file", init=False)
    """The variant's name in JSON."""

    def describe(self) -> str:
        return WEIGHTS_PREFIX + self.path


@dataclass(frozen=True)
class Federated:
    """Federated CRB-DRQN: terminals act with the weights their edge learners train."""

    start: TrainedRun | WeightsFile | None = None
    """What the edge learners (and the terminals, until the first round) start from;
    None: freshly initialised learners, terminals acting at random until weights arrive."""
    kind: str = field(default="federated", init=False)
    """The variant's name in JSON."""

    def describe(self) -> str:
        return FEDERATED_NAME if self.start is None else f"{FEDERATED_NAME}:{self.start.path}"


PolicySpec = Baseline | TrainedRun | WeightsFile | Federated
"""What a run's terminals decide with."""


def absolute(spec: PolicySpec) -> PolicySpec:
    """The spec with its paths made absolute, for processes that may run elsewhere."""
    if isinstance(spec, TrainedRun | WeightsFile):
        return replace(spec, path=str(Path(spec.path).resolve()))
    if isinstance(spec, Federated) and spec.start is not None:
        return replace(spec, start=absolute(spec.start))
    return spec
