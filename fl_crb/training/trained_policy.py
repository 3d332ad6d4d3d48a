"""A trained run as a policy: every terminal acts greedily (ε = 0) with its learned weights.

For CRB-DRQN and independent DRQN (`learned_policy`):

The weights are those the run kept after validation (`best.pt`, see
`TrainConfig.validation_every_episodes`), or the last checkpoint's evaluation networks if
the run never validated (it stopped before ε reached its floor). A terminal uses the
network it would download in training: for `crb-drqn` that of the edge managing it in the
evaluated system (`MECParams.managing_edge`), so a run can be evaluated with another
terminal count; for `independent-drqn` its own, so the terminal count must be the trained
one. Observations are scaled with the feature scale of training (its terminal count sets
the load divisor), since those are the inputs the networks learned on.

For the paper's learning baselines (`marl_policy`): their actors played greedily as a
`fl_crb.marl.policy.MarlPolicy`, from `best.pt` or the last checkpoint likewise. MAPPO and
QMIX share one actor across terminals and can act for any terminal count; Decentralized AC
and JODRL-PP hold one actor per trained terminal and need the trained count.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from fl_crb.learn.features import FeatureScale
from fl_crb.learn.greedy import GreedyPolicy
from fl_crb.learn.qnetwork import QNetwork
from fl_crb.marl.policy import MarlPolicy
from fl_crb.mec.params import MECParams
from fl_crb.policies.baselines import make_baseline
from fl_crb.policies.spec import Baseline, TrainedRun
from fl_crb.training.checkpoint import load_networks, read_torch_file, recovery
from fl_crb.training.config import MARL_ALGORITHMS
from fl_crb.training.marl_trainer import make_algorithm
from fl_crb.training.run import read_best, read_setup, read_trained_system

PER_TERMINAL_ACTORS = ("decentralized-ac", "jodrl-pp")
"""Baselines whose terminals each hold their own actor."""


def learned_policy(run_directory: str | Path, params: MECParams, terminals: int) -> GreedyPolicy:
    """The greedy policy of the trained run in `run_directory`, for `terminals` terminals
    of the system `params` describes."""
    directory = Path(run_directory)
    config, trained_params, trained_terminals = read_trained_system(directory, params)
    if config.algo == "crb-drqn":
        group_of = params.per_terminal(terminals).managing_edge
    elif terminals != trained_terminals:
        raise ValueError(
            f"{directory} trained {trained_terminals} independent terminals, each with its "
            f"own network; it cannot act for {terminals} terminals"
        )
    else:
        group_of = np.arange(terminals)
    if read_best(directory) is not None:
        source = directory / "best.pt"
        states = read_torch_file(source, "best validated weights", best_way_back(source))
    else:
        source = directory / "checkpoint" / "networks.pt"
        states = [saved["evaluation"] for saved in load_networks(directory / "checkpoint")]
    networks = []
    for state in _listed(states, source):
        network = QNetwork(
            params.edges,
            params.history_slots,
            config.learner.hidden,
            config.learner.lstm_hidden,
            config.learner.terminal_code_bits,
        )
        _load_into(network.load_state_dict, state, source)
        networks.append(network.requires_grad_(False))
    scale = FeatureScale.from_params(
        trained_params, trained_terminals, config.learner.terminal_code_bits
    )
    return GreedyPolicy(config.algo, networks, group_of, scale)


def marl_policy(run_directory: str | Path, params: MECParams, terminals: int) -> MarlPolicy:
    """The greedy policy of the baseline trained in `run_directory`, for `terminals`
    terminals of the system `params` describes."""
    directory = Path(run_directory)
    config, trained_params, trained_terminals = read_trained_system(directory, params)
    if config.algo in PER_TERMINAL_ACTORS and terminals != trained_terminals:
        raise ValueError(
            f"{directory} trained {trained_terminals} terminals with one {config.algo} actor "
            f"each; it cannot act for {terminals} terminals"
        )
    algorithm = make_algorithm(config, params, terminals)
    if read_best(directory) is not None:
        source = directory / "best.pt"
        state = read_torch_file(source, "best validated actor", best_way_back(source))
    else:
        checkpoint = directory / "checkpoint"
        if not (checkpoint / "algorithm.pt").is_file():
            checkpoint = directory / "checkpoint.old"  # a crash between the two renames
        if not (checkpoint / "algorithm.pt").is_file():
            raise ValueError(f"{directory} holds neither best.pt nor a checkpoint to play")
        source = checkpoint / "algorithm.pt"
        saved = read_torch_file(source, "checkpoint file", recovery(checkpoint))
        saved = saved if isinstance(saved, dict) else {}
        state = {key: saved[key] for key in ("actor", "actors", "agent") if key in saved}
    _load_into(algorithm.load_actor_state, state, source)
    scale = FeatureScale.from_params(trained_params, trained_terminals)
    return MarlPolicy(config.algo, algorithm, scale, terminals)


def best_way_back(best: Path) -> str:
    """How to play a run whose `best.pt` cannot be read."""
    return (
        f"delete it and {best.with_name('best.json')} to play the run's last checkpoint "
        "instead (its next validation writes them again)"
    )


def _listed(states: object, source: Path) -> list:
    """The per-network states a file holds, refused with its name if it holds no list."""
    if not isinstance(states, list | tuple):
        raise ValueError(
            f"{source}: expected a list of network states, got {type(states).__name__}; "
            "it is not this program's weights file"
        )
    return list(states)


def _load_into(load: Callable[[dict], object], state: object, source: Path) -> None:
    """`load(state)`; a state that does not fit the network (missing or extra entries,
    other shapes) is an error naming the file it came from."""
    try:
        load(state)  # type: ignore[arg-type]
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"{source}: its weights do not fit the networks of this run "
            f"({type(error).__name__}: {first[:200]}); the file is damaged or from another "
            "run: train again, or use the run it came from"
        ) from None


def load_any_policy(spec: Baseline | TrainedRun, params: MECParams, terminals: int, seed: int = 0):
    """The policy `spec` names: a baseline or simulation-only policy (e.g. `multi-tier`),
    or a trained run of any `fl-crb train --algo` (a learning baseline's, or CRB-DRQN's and
    independent DRQN's)."""
    if isinstance(spec, Baseline):
        return make_baseline(spec.name, params, terminals, seed)
    if read_setup(spec.path)["config"]["algo"] in MARL_ALGORITHMS:
        return marl_policy(spec.path, params, terminals)
    return learned_policy(spec.path, params, terminals)
