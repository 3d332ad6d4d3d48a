"""The federated face's settings on the command line, shared by `federate` and `emulate`.

Every learning setting of `MethodConfig` (`fl_crb.learn.method_config`) and the rounds'
settings of `FederatedRunConfig` have a flag here. A flag left out keeps the dataclass's
default, which the help text quotes from the dataclass itself, so each default has one
source. The network widths are the starting weights' when the run starts from a
training run or a weights file: a width flag that disagrees with them is refused,
naming both (`fl_crb.training.start_weights.resolve_widths`).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

from fl_crb.commands.arguments import MAX_NUMBER_CHARS, float_in, int_in, quantity
from fl_crb.commands.common import quantity_argument
from fl_crb.federation.deploy.run_config import (
    ROUND_DEADLINE_MIN_S,
    ROUND_DEADLINE_PERIODS,
    FederatedRunConfig,
    Quorum,
)
from fl_crb.learn.method_config import LEARNER_FLAGS as LEARNER
from fl_crb.learn.method_config import METHOD_FLAGS as METHOD
from fl_crb.learn.method_config import MethodConfig
from fl_crb.policies.spec import TrainedRun, WeightsFile
from fl_crb.runtime.config import UPLINKS
from fl_crb.topology.units import TIME

DEFAULT = MethodConfig()
"""The method's defaults, quoted by the help texts."""

WIDTH = "(default: the starting weights', else {default})"
"""Help text of a width's default."""

COUNT = int_in(1, 10_000_000, "a count beyond ten million is a typo here")
WIDTH_UNITS = int_in(1, 4096, "a layer of more than 4096 units is a typo for these small networks")
LEARNING_RATE = float_in(0, 1, "RMSprop diverges well before a step of 1", low_open=True)
GAMMA = float_in(0, 1, "a discount factor below 1 keeps the return finite", high_open=True)
ALPHA = float_in(0, 100, "α weights familiarity as a power; 100 already picks one trajectory")
PROBABILITY = float_in(0, 1, "a probability")
ROUND_PERIOD = quantity(TIME, 0, 3600, "a round period over an hour is a lost unit", low_open=True)
ROUND_DEADLINE = quantity(
    TIME, 0, 3600, "a round deadline over an hour is a lost unit", low_open=True
)
BATCHES = int_in(0, 1_000_000, "training steps per round; a million is hours of work per round")
HANDOVER = int_in(1, 4096, "uploads held for one hand-over; thousands would hold them for hours")

LEARNER_FLAGS = (
    ("lr", LEARNING_RATE, "the edge learners' RMSprop learning rate (default {default})"),
    ("gamma", GAMMA, "discount factor γ per decision (default {default})"),
    ("batch_trajectories", COUNT, "trajectories per training batch (default {default})"),
    ("target_update_steps", COUNT, "training steps between target-network copies (default "
     "{default})"),
    ("hidden", WIDTH_UNITS, f"width of the Q-network's dense layers {WIDTH}"),
    ("lstm_hidden", WIDTH_UNITS, f"hidden size of the Q-network's LSTM {WIDTH}"),
)  # fmt: skip
"""(`LearnerConfig` field, type, help) of the edge learners' settings; each field's flag
is `method_config.LEARNER_FLAGS[field]`."""

METHOD_FLAGS = (
    ("trajectory_length", COUNT, "n, transitions per trajectory (default {default})"),
    ("refresh_slots", COUNT, "`tag`, slots between the terminals' checks for new weights "
     "(default {default})"),
    ("pool_capacity", COUNT, "trajectories the authority's pool keeps (default {default})"),
    ("pool_alpha", ALPHA, "α of the pool's familiarity sampling (default {default})"),
    ("min_pool_trajectories", COUNT, "edges start training once the pool holds this many "
     "trajectories (default {default})"),
)  # fmt: skip
"""(`MethodConfig` field, type, help) of the method's other settings; each field's flag
is `method_config.METHOD_FLAGS[field]`."""


def add_federation_arguments(parser: argparse.ArgumentParser) -> None:
    """The learning and round flags of a federated run."""
    learning = parser.add_argument_group(
        "federated learning", "CRB-DRQN's settings in a federated run (MethodConfig)"
    )
    tables = ((LEARNER_FLAGS, LEARNER, DEFAULT.learner), (METHOD_FLAGS, METHOD, DEFAULT))
    for flags, flag_of, owner in tables:
        for name, kind, text in flags:
            flag, default = flag_of[name], getattr(owner, name)
            learning.add_argument(
                flag,
                type=kind,
                dest=name,
                metavar=flag.removeprefix("--").upper().replace("-", "_"),
                help=text.format(default=default),
            )
    rounds = parser.add_argument_group("federated rounds")
    rounds.add_argument(
        "--round-period",
        type=ROUND_PERIOD,
        help="time between authority rounds, with a unit "
        f"(default {FederatedRunConfig.round_period_s:g}s)",
    )
    rounds.add_argument(
        "--round-deadline",
        type=ROUND_DEADLINE,
        help="how long a round waits for the nodes' replies, with a unit; the round goes on "
        "with those that answered, and a late reply is taken in the round it arrives in "
        f"(default: {ROUND_DEADLINE_PERIODS:g} round periods, at least "
        f"{ROUND_DEADLINE_MIN_S:g}s)",
    )
    rounds.add_argument(
        "--quorum",
        type=quorum_argument,
        help="nodes (terminals and edges) that must answer before the first round: a count "
        "(4), a share (0.5 or 50%%) or 'all'; the others are served once they answer "
        "(default: all)",
    )
    rounds.add_argument(
        "--epsilon",
        type=PROBABILITY,
        help="terminals' exploration probability once they hold weights "
        f"(default {FederatedRunConfig.epsilon})",
    )
    rounds.add_argument(
        "--uplink",
        choices=UPLINKS,
        help="how the terminals' sealed uploads reach the authority: direct, each terminal "
        "a Flower SuperNode (default); relay, handed to its managing edge over their "
        "connection and carried by the edge's SuperNode (no SuperNode on the terminals)",
    )
    rounds.add_argument(
        "--relay-handover",
        type=HANDOVER,
        metavar="N",
        help="relay uplink: uploads a terminal gathers before handing them to its edge in "
        f"one write (default {FederatedRunConfig.relay_handover}; 1: each as it is sealed)",
    )
    rounds.add_argument(
        "--batches-per-round",
        type=BATCHES,
        help="training steps per edge per round (default: one per slot of the round period)",
    )


def federation_flags_given(args: argparse.Namespace) -> list[str]:
    """The federated run's flags given on the command line (for commands that refuse them
    when no federation runs)."""
    flags = [(flag, name) for name, flag in (*LEARNER.items(), *METHOD.items())]
    flags += [("--round-period", "round_period"), ("--epsilon", "epsilon")]
    flags += [("--batches-per-round", "batches_per_round")]
    flags += [("--round-deadline", "round_deadline"), ("--quorum", "quorum")]
    flags += [("--uplink", "uplink"), ("--relay-handover", "relay_handover")]
    return [flag for flag, name in flags if getattr(args, name) is not None]


def method_from_arguments(
    args: argparse.Namespace, start: TrainedRun | WeightsFile | None
) -> MethodConfig:
    """The method's settings: the flags given, the defaults otherwise, and the widths of
    `start` (the starting weights; None: the flags' or the defaults')."""
    learner = {name: getattr(args, name) for name, _, _ in LEARNER_FLAGS}
    if start is not None:
        from fl_crb.training.start_weights import resolve_widths

        learner["hidden"], learner["lstm_hidden"] = resolve_widths(
            start, learner["hidden"], learner["lstm_hidden"]
        )
    method = {name: getattr(args, name) for name, _, _ in METHOD_FLAGS}
    return MethodConfig(
        learner=replace(DEFAULT.learner, **_given(learner)),
        **_given(method),
    )


def round_settings(args: argparse.Namespace) -> dict[str, object]:
    """`FederatedRunConfig`'s round settings the flags give (the others keep its defaults)."""
    period_s = quantity_argument(args.round_period, TIME, "--round-period")
    settings = {
        "round_period_s": period_s,
        "round_deadline_s": quantity_argument(args.round_deadline, TIME, "--round-deadline"),
        "quorum": args.quorum,
        "epsilon": args.epsilon,
        "batches_per_round": args.batches_per_round,
        "uplink": args.uplink,
        "relay_handover": args.relay_handover,
    }
    return _given(settings)


def quorum_argument(text: str) -> Quorum:
    """`--quorum`: "all", a count of nodes ("4"), or a share ("0.5", "50%")."""
    stripped = text.strip().lower()
    expected = "expected 'all', a count of nodes such as 4, or a share such as 0.5 or 50%"
    if stripped == "all":
        return Quorum()
    if len(stripped) > MAX_NUMBER_CHARS:
        raise argparse.ArgumentTypeError(f"{text[:20]!r}..., too long; {expected}")
    try:
        if stripped.endswith("%"):
            return Quorum(share=_finite(float(stripped[:-1])) / 100)
        if stripped.isdigit():
            return Quorum(nodes=int(stripped))
        return Quorum(share=_finite(float(stripped)))
    except ValueError as error:
        detail = f" ({error})" if "quorum" in str(error) else ""
        raise argparse.ArgumentTypeError(f"got {text!r}{detail}; {expected}") from None


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    return value


def _given(values: dict[str, object]) -> dict[str, object]:
    return {name: value for name, value in values.items() if value is not None}
