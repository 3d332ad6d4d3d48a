"""A sweep's grid: algorithms × topologies × points × seeds × training options.

The grid comes from `fl-crb sweep`'s flags, from a YAML file, or both (a flag replaces
the file's field). It is parsed and checked here, once: every error names where the
value came from (the file or `command line`), the field, the value and what would do.
A grid file:

    algorithms: [crb-drqn, independent-drqn]     # learners and baselines alike
    topologies: [topologies/four-edge-hetero.yaml]  # relative to the file
    terminals: [10, 15]                          # × rates; or `points` instead
    rates: [2Mbps]
    points: ["15:2.5Mbps"]                       # terminals:rate pairs, added to them
    seeds: 0-2                                   # or [0, 1, 2]
    train_options: {hidden: [64, 128]}           # an axis per option
    episodes: 200                                # training episodes of every learner
    evaluation_episodes: 20                      # held-out episodes per cell and seed
    slots: 100                                   # arrival slots per episode

Training options are `fl-crb train`'s (`hidden`, `lstm-hidden`, `terminal-code-bits`,
`action-selection`, for the algorithms that flag accepts) or any field of `TrainConfig`
by its dotted name (`learner.batch_trajectories`, `epsilon_decay_episodes`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields, replace
from pathlib import Path

import yaml

from fl_crb.experiments.settings import BASELINE_POLICIES, LEARNED_POLICIES
from fl_crb.topology.units import BANDWIDTH, UnitError, parse_quantity
from fl_crb.training.config import DRQN_ALGORITHMS, TrainConfig

TRAIN_FLAGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "hidden": ("learner.hidden", DRQN_ALGORITHMS),
    "lstm-hidden": ("learner.lstm_hidden", DRQN_ALGORITHMS),
    "terminal-code-bits": ("learner.terminal_code_bits", DRQN_ALGORITHMS),
    "action-selection": ("marl.action_selection", ("qmix",)),
}
"""`fl-crb train`'s options by flag name: the `TrainConfig` field each sets, and the
algorithms that accept it (as `fl-crb train` refuses it for the others)."""


class GridError(ValueError):
    """A bad grid value: names its source, field and value, and what would do."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        super().__init__(f"{source}: {field}: {problem}")


@dataclass(frozen=True)
class SweepGrid:
    """Every cell of a sweep, before it is expanded (`cells`)."""

    algorithms: tuple[str, ...]
    """Learning algorithms (trained, then evaluated) and baselines (evaluated)."""
    topologies: tuple[Path, ...]
    """Topology YAML files."""
    points: tuple[tuple[int | None, float | None], ...] = ((None, None),)
    """(terminals, offered load per terminal in bit/s); None keeps the topology's."""
    seeds: tuple[int, ...] = (0,)
    train_options: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(option, its values as given): an axis per option, learners only."""
    episodes: int = 200
    evaluation_episodes: int = 20
    slots: int = 100
    source: str = "command line"
    """Where the grid came from, for error messages."""

    def __post_init__(self) -> None:
        known = (*LEARNED_POLICIES, *BASELINE_POLICIES)
        for algo in self.algorithms:
            if algo not in known:
                raise GridError(self.source, "algorithms", f"unknown {algo!r}; known: {known}")
        for name in ("algorithms", "topologies", "points", "seeds"):
            if not getattr(self, name):
                raise GridError(self.source, name, "is empty; give at least one")
        for name in ("episodes", "evaluation_episodes", "slots"):
            if getattr(self, name) < 1:
                raise GridError(self.source, name, f"must be >= 1, got {getattr(self, name)}")
        for option, values in self.train_options:
            if not values:
                raise GridError(self.source, f"train_options.{option}", "has no value")
            for algo in self.algorithms:
                if algo in LEARNED_POLICIES:
                    for value in values:  # refuse a bad option before anything trains
                        train_config(algo, 0, self.slots, {option: value}, self.source)

    def option_names(self) -> list[str]:
        return [option for option, _ in self.train_options]

    def option_sets(self) -> list[dict[str, str]]:
        """Every combination of the options' values (one empty set without options)."""
        names = self.option_names()
        values = [values for _, values in self.train_options]
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def train_config(
    algo: str, seed: int, slots: int, options: dict[str, str], source: str = "command line"
) -> TrainConfig:
    """The `TrainConfig` of `fl-crb train --algo algo --seed seed --slots slots` with
    these options (`TRAIN_FLAGS` names or dotted `TrainConfig` fields)."""
    config = TrainConfig(algo=algo, seed=seed, arrival_slots=slots)
    for option, value in options.items():
        path, algos = TRAIN_FLAGS.get(option, (option, None))
        if algos is not None and algo not in algos:
            raise GridError(
                source,
                f"train_options.{option}",
                f"applies to {' and '.join(algos)}, not {algo}: sweep {algo} in another grid",
            )
        where = f"{source}: train_options.{option}"
        config = _set(config, path.split("."), value, where, [*TRAIN_FLAGS])
    return config


def _set(config, path: list[str], value: str, where: str, flags: list[str]):
    """`config` (a dataclass) with the field at `path` set to `value`, parsed as the
    type of the value it replaces; `flags` are other names valid here, for the error."""
    names = [f.name for f in fields(config)]
    if path[0] not in names:
        choices = ", ".join([*flags, *names])
        raise ValueError(f"{where}: no option {path[0]!r}; choose from {choices}")
    current = getattr(config, path[0])
    if len(path) > 1:
        if current is None:
            raise ValueError(f"{where}: {path[0]} is not set for algorithm {config.algo!r}")
        return replace(config, **{path[0]: _set(current, path[1:], value, where, [])})
    kind = type(current)
    if kind not in (int, float, str, bool):
        raise ValueError(f"{where}: {path[0]} is a {kind.__name__}, not settable here")
    try:
        parsed = kind(yaml.safe_load(str(value))) if kind is not str else str(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {value!r} is not a {kind.__name__}") from None
    return replace(config, **{path[0]: parsed})


# Parsing: flags and YAML alike ------------------------------------------------------


def parse_seeds(text: str | int | list, source: str, field: str = "seeds") -> tuple[int, ...]:
    """`0-2`, `0,3,5`, `4`, or a YAML list of integers."""
    items = text if isinstance(text, list) else str(text).split(",")
    seeds: list[int] = []
    for item in items:
        low, _, high = str(item).strip().partition("-")
        try:
            seeds += range(int(low), int(high or low) + 1)
        except ValueError:
            raise GridError(source, field, f"{item!r} is not a seed or a range like 0-2") from None
    return tuple(dict.fromkeys(seeds))


def parse_rate(text: str, source: str, field: str = "rates") -> float:
    try:
        return parse_quantity(str(text), BANDWIDTH)
    except UnitError as error:
        raise GridError(source, field, f"{text!r}: {error}") from None


def parse_point(text: str, source: str) -> tuple[int, float]:
    """`15:2.5Mbps` as (terminals, bit/s)."""
    terminals, colon, rate = str(text).partition(":")
    if not colon or not terminals.strip().isdigit():
        raise GridError(source, "points", f"{text!r} is not terminals:rate, like 15:2.5Mbps")
    return int(terminals), parse_rate(rate, source, "points")


def points_of(
    terminals: list[int], rates_bps: list[float], pairs: list[tuple[int, float]]
) -> tuple[tuple[int | None, float | None], ...]:
    """terminals × rates (a missing axis keeps the topology's value) and then the pairs;
    just the pairs when only they are given."""
    grid: list[tuple[int | None, float | None]] = []
    if terminals or rates_bps or not pairs:
        grid = list(itertools.product(terminals or [None], rates_bps or [None]))
    return tuple(dict.fromkeys([*grid, *pairs]))


GRID_FIELDS = (
    "algorithms",
    "topologies",
    "terminals",
    "rates",
    "points",
    "seeds",
    "train_options",
    "episodes",
    "evaluation_episodes",
    "slots",
)


def read_grid_file(path: str | Path) -> dict:
    """A grid file's fields as `SweepGrid` keywords (partial: flags may complete them)."""
    path = Path(path)
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise GridError(source, "(file)", f"cannot be read: {error}") from None
    if not isinstance(data, dict):
        raise GridError(source, "(top level)", "expected a mapping of grid fields")
    unknown = sorted(set(data) - set(GRID_FIELDS))
    if unknown:
        raise GridError(source, unknown[0], f"unknown field; known: {', '.join(GRID_FIELDS)}")
    grid: dict = {"source": source}
    listed = {k: v if isinstance(v, list) else [v] for k, v in data.items() if k != "seeds"}
    if "algorithms" in data:
        grid["algorithms"] = tuple(str(a) for a in listed["algorithms"])
    if "topologies" in data:
        grid["topologies"] = tuple(path.parent / str(t) for t in listed["topologies"])
    if "seeds" in data:
        grid["seeds"] = parse_seeds(data["seeds"], source)
    if {"terminals", "rates", "points"} & set(data):
        terminals = [_integer(t, source, "terminals") for t in listed.get("terminals", [])]
        rates = [parse_rate(r, source) for r in listed.get("rates", [])]
        pairs = [parse_point(p, source) for p in listed.get("points", [])]
        grid["points"] = points_of(terminals, rates, pairs)
    if "train_options" in data:
        options = data["train_options"]
        if not isinstance(options, dict):
            raise GridError(source, "train_options", "expected a mapping option: [values]")
        grid["train_options"] = tuple(
            (str(k), tuple(str(v) for v in (vs if isinstance(vs, list) else [vs])))
            for k, vs in options.items()
        )
    for name in ("episodes", "evaluation_episodes", "slots"):
        if name in data:
            grid[name] = _integer(data[name], source, name)
    return grid


def _integer(value: object, source: str, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GridError(source, field, f"{value!r} is not an integer")
    return value
