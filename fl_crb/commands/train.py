"""`fl-crb train`: train CRB-DRQN, the independent-DRQN ablation, or one of the paper's
learning baselines (decentralized-ac, qmix, mappo, jodrl-pp; `fl_crb.marl`) in the simulator.

Writes a run directory (`fl_crb.training.run`): run.json, metrics.jsonl with one
line per episode, and a checkpoint every --checkpoint-every episodes. Run it again with
the same --out to resume after an interruption, or with a larger --episodes to go on.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import TextIO

from fl_crb.commands.arguments import EPISODES, SEED, SLOTS, THREADS, int_in, out_folder
from fl_crb.commands.common import add_topology_arguments, load_topology_arguments

WIDTH = int_in(1, 4096, "a layer of more than 4096 units is a typo for these small networks")
"""`--hidden`, `--lstm-hidden`: a network width."""
CODE_BITS = int_in(0, 1024, "bits added to the network's input; 14 tell 10000 terminals apart")
"""`--terminal-code-bits`."""


def register(commands: argparse._SubParsersAction) -> None:
    from fl_crb.learn.learner_config import LearnerConfig
    from fl_crb.training.config import ALGORITHMS

    train = commands.add_parser("train", help="train a learning policy in the simulator")
    add_topology_arguments(train)
    train.add_argument("--algo", default="crb-drqn", choices=ALGORITHMS)
    train.add_argument(
        "--action-selection",
        choices=("argmax", "cem"),
        help="qmix only: greedy action by argmax (default) or the cross-entropy method",
    )
    train.add_argument(
        "--terminal-code-bits",
        type=CODE_BITS,
        default=0,
        help="crb-drqn/independent-drqn: append a fixed random ±1 code of this many bits per "
        "terminal to the network input (default 0: the paper's state; simulation only)",
    )
    train.add_argument(
        "--hidden",
        type=WIDTH,
        help="crb-drqn/independent-drqn: width of the Q-network's scalar branch and of its two "
        f"ReLU layers (default {LearnerConfig.hidden}; the paper gives none)",
    )
    train.add_argument(
        "--lstm-hidden",
        type=WIDTH,
        help="crb-drqn/independent-drqn: hidden-state size of the LSTM over the load history "
        f"(default {LearnerConfig.lstm_hidden}; the paper gives none)",
    )
    train.add_argument("--episodes", type=EPISODES, required=True, help="episodes in total")
    train.add_argument("--seed", type=SEED, default=0, help="run seed, 0 <= seed < 1e6")
    train.add_argument(
        "--out", type=out_folder, required=True, help="run directory (created or resumed)"
    )
    train.add_argument("--slots", type=SLOTS, default=100, help="arrival slots per episode")
    train.add_argument("--checkpoint-every", type=EPISODES, default=10, help="episodes")
    train.add_argument(
        "--threads", type=THREADS, default=1, help="torch CPU threads (1 is fastest for these nets)"
    )
    train.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from fl_crb.training.config import DRQN_ALGORITHMS, TrainConfig
    from fl_crb.training.run import TrainingRun

    torch.set_num_threads(args.threads)
    topology = load_topology_arguments(args)
    config = TrainConfig(algo=args.algo, seed=args.seed, arrival_slots=args.slots)
    learner_options = {
        "terminal_code_bits": args.terminal_code_bits or None,
        "hidden": args.hidden,
        "lstm_hidden": args.lstm_hidden,
    }
    learner_options = {name: value for name, value in learner_options.items() if value is not None}
    if learner_options:
        if args.algo not in DRQN_ALGORITHMS:
            flags = ", ".join("--" + name.replace("_", "-") for name in learner_options)
            verb = "applies" if len(learner_options) == 1 else "apply"
            raise ValueError(f"{flags} {verb} to {' and '.join(DRQN_ALGORITHMS)}, not {args.algo}")
        config = replace(config, learner=replace(config.learner, **learner_options))
    if args.action_selection is not None:
        if args.algo != "qmix":
            raise ValueError(f"--action-selection applies to --algo qmix only, not {args.algo}")
        config = replace(config, marl=replace(config.marl, action_selection=args.action_selection))
    training = TrainingRun.open(
        args.out, topology.name, topology.mec_params(), topology.terminal_count, config
    )
    start = training.trainer.episode
    if start:
        print(f"resuming {args.out} after episode {start}", file=sys.stderr)
    progress = ProgressBar(args.episodes, start, label=f"{args.algo} {topology.name}")
    training.train(args.episodes, args.checkpoint_every, on_episode=progress.update)
    progress.close()
    return 0


class ProgressBar:
    """A one-line progress bar on stderr: `\\r`-redrawn on a terminal, else a line per 10%."""

    WIDTH = 24

    def __init__(
        self, total: int, done: int = 0, label: str = "", stream: TextIO | None = None
    ) -> None:
        self.total = total
        self.done = done
        self.label = label
        self.stream = stream or sys.stderr
        self._seconds = 0.0
        self._episodes = 0
        self._interactive = self.stream.isatty()
        self._last_decile = -1

    def update(self, metrics) -> None:
        """Advance by one episode; `metrics` is the episode's `EpisodeMetrics`."""
        self.done = metrics.episode + 1
        self._seconds += metrics.wall_s
        self._episodes += 1
        rate_s = self._seconds / self._episodes
        filled = self.WIDTH * self.done // self.total
        line = (
            f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
            f"{self.done}/{self.total}  reward {metrics.avg_reward:7.2f}  "
            f"fail {metrics.failure_rate:.3f}  ε {metrics.epsilon:.3f}  "
            f"{rate_s:.2f} s/ep  ETA {_duration(rate_s * (self.total - self.done))}"
        )
        if self._interactive:
            self.stream.write("\r" + line)
        else:
            decile = 10 * self.done // self.total
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._interactive:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
