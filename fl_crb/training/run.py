"""A training run on disk: its setup, its per-episode metrics, its checkpoints; resumable.

Layout of a run directory:

| path            | content                                                             |
| --------------- | ------------------------------------------------------------------- |
| `run.json`      | what was trained: topology name, terminals, the simulator's         |
|                 | `MECParams`, the `TrainConfig`, the feature scale                   |
| `metrics.jsonl` | one JSON object per finished episode (`EpisodeMetrics`)             |
| `checkpoint/`   | the last checkpoint (`fl_crb.training.checkpoint`)                     |
| `validation.jsonl` | one JSON object per validation of the current weights           |
|                 | (`TrainConfig.validation_every_episodes`)                            |
| `best.pt`, `best.json` | the evaluation networks that validated best, and when        |
|                 | (for a learning baseline of `fl_crb.marl`: its actors)              |

`TrainingRun.open` starts a new run in an empty (or missing) directory, or resumes the one
there: the setup must be the same as recorded (else an error names the differing field),
the trainer is restored from the checkpoint, and metrics and validation lines of
episodes after the checkpoint (run but not saved before an interruption) are dropped,
since those episodes will run again, identically.

The DRQN algorithms train with `fl_crb.training.drqn_trainer.Trainer`, the paper's learning
baselines with `fl_crb.training.marl_trainer.MarlTrainer` (`make_trainer`); both give the same
metrics, validation and checkpoint surface, so run directories look alike.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from fl_crb.mec.params import MECParams
from fl_crb.training.checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint
from fl_crb.training.config import MARL_ALGORITHMS, TrainConfig
from fl_crb.training.drqn_trainer import EpisodeMetrics, Trainer

RUN_FORMAT = "fl-crb-training-run-1"
"""Tag of `run.json`."""


def describe_run(topology_name: str, params: MECParams, terminals: int, config: TrainConfig):
    """The JSON form of a run's setup, as `run.json` stores it."""
    return json.loads(
        json.dumps(
            {
                "format": RUN_FORMAT,
                "topology": topology_name,
                "terminals": terminals,
                "params": asdict(params),
                "config": config.to_dict(),
            }
        )
    )


def make_trainer(params: MECParams, terminals: int, config: TrainConfig):
    """The trainer of `config.algo`: `Trainer` (DRQN) or `MarlTrainer` (the baselines)."""
    if config.algo in MARL_ALGORITHMS:
        from fl_crb.training.marl_trainer import (
            MarlTrainer,  # it reads run directories: import late
        )

        return MarlTrainer(params, terminals, config)
    return Trainer(params, terminals, config)


def _save(trainer, path: Path) -> None:
    if isinstance(trainer, Trainer):
        save_checkpoint(trainer, path)
    else:
        trainer.save(path)


def _load(trainer, path: Path) -> None:
    if isinstance(trainer, Trainer):
        load_checkpoint(trainer, path)
    else:
        trainer.load(path)


class TrainingRun:
    """A trainer bound to a run directory."""

    def __init__(self, directory: Path, trainer) -> None:
        self.directory = directory
        self.trainer = trainer

    @property
    def metrics_path(self) -> Path:
        return self.directory / "metrics.jsonl"

    @property
    def checkpoint_path(self) -> Path:
        return self.directory / "checkpoint"

    @property
    def validation_path(self) -> Path:
        return self.directory / "validation.jsonl"

    @classmethod
    def open(
        cls,
        directory: str | Path,
        topology_name: str,
        params: MECParams,
        terminals: int,
        config: TrainConfig,
    ) -> TrainingRun:
        """Start a run in `directory`, or resume the one recorded there."""
        directory = Path(directory)
        setup = describe_run(topology_name, params, terminals, config)
        run_file = directory / "run.json"
        trainer = make_trainer(params, terminals, config)
        run = cls(directory, trainer)
        if run_file.exists():
            _check_same_setup(run_file, setup)
            if checkpoint_exists(run.checkpoint_path):
                _load(trainer, run.checkpoint_path)
            for path in (run.metrics_path, run.validation_path):
                _truncate(path, trainer.episode)
            return run
        if directory.exists() and any(directory.iterdir()):
            raise ValueError(
                f"{directory} is not empty and holds no run.json: give an empty or new "
                "directory for a new run, or the directory of the run to resume"
            )
        directory.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps(setup, indent=2) + "\n")
        return run

    def train(
        self,
        episodes: int,
        checkpoint_every: int = 10,
        on_episode: Callable[[EpisodeMetrics], None] | None = None,
    ) -> list[EpisodeMetrics]:
        """Run until `episodes` episodes are done in total, checkpointing every
        `checkpoint_every` episodes and at the end; returns this call's metrics."""
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every!r}")
        done: list[EpisodeMetrics] = []
        with open(self.metrics_path, "a") as metrics_file:
            while self.trainer.episode < episodes:
                metrics = self.trainer.run_episode()
                metrics_file.write(json.dumps(metrics.as_dict()) + "\n")
                metrics_file.flush()
                done.append(metrics)
                if self.trainer.config.validation_due(self.trainer.episode):
                    self._validate(metrics.episode)
                if on_episode is not None:
                    on_episode(metrics)
                if self.trainer.episode % checkpoint_every == 0:
                    _save(self.trainer, self.checkpoint_path)
        saved = done and self.trainer.episode % checkpoint_every == 0
        if not saved and (done or not checkpoint_exists(self.checkpoint_path)):
            _save(self.trainer, self.checkpoint_path)
        return done

    def _validate(self, episode: int) -> None:
        """Validate the current weights; keep them as `best.pt` if they beat the best."""
        metrics = self.trainer.validate()
        best = read_best(self.directory)
        better = best is None or metrics.avg_reward > best["avg_reward"]
        row = {"episode": episode, **metrics.as_dict(), "best": better}
        with open(self.validation_path, "a") as file:
            file.write(json.dumps(row) + "\n")
        if better:
            if isinstance(self.trainer, Trainer):
                learners = self.trainer.scheme.learners
                networks = [learner.evaluation.state_dict() for learner in learners]
            else:
                networks = self.trainer.policy_state()
            _atomic(self.directory / "best.pt", lambda f: torch.save(networks, f))
            _atomic(self.directory / "best.json", lambda f: f.write(json.dumps(row).encode()))


def _truncate(path: Path, episodes: int) -> None:
    """Keep the lines of a JSON-lines file whose episode is below `episodes`."""
    if not path.exists():
        return
    kept = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line)["episode"] < episodes
    ]
    path.write_text("".join(line + "\n" for line in kept))


def _atomic(path: Path, write) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as file:
        write(file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def read_best(directory: str | Path) -> dict | None:
    """The validation row of the weights kept as best, or None if none was kept yet."""
    path = Path(directory) / "best.json"
    return json.loads(path.read_text()) if path.is_file() else None


def read_metrics(directory: str | Path) -> list[dict]:
    """The per-episode metrics of a run directory, in episode order."""
    path = Path(directory) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_setup(directory: str | Path) -> dict:
    """The `run.json` of a run directory, checked for its format."""
    path = Path(directory) / "run.json"
    if not path.is_file():
        raise ValueError(f"{directory} is not a training run directory: it has no run.json")
    setup = json.loads(path.read_text())
    if setup.get("format") != RUN_FORMAT:
        raise ValueError(f"{path}: format {setup.get('format')!r}, expected {RUN_FORMAT!r}")
    return setup


def read_trained_system(
    directory: str | Path, params: MECParams
) -> tuple[TrainConfig, MECParams, int]:
    """What the run in `directory` was trained with (config, system, terminal count),
    checked against the system `params` a policy of it is to act in: the networks' input
    shapes need the same edge count and load-history length."""
    setup = read_setup(directory)
    config = TrainConfig.from_dict(setup["config"])
    trained_params = MECParams(**setup["params"])
    if (params.edges, params.history_slots) != (trained_params.edges, trained_params.history_slots):
        raise ValueError(
            f"{directory} was trained with {trained_params.edges} edges and a load history "
            f"of {trained_params.history_slots} slots; the evaluated system has "
            f"{params.edges} and {params.history_slots}"
        )
    return config, trained_params, int(setup["terminals"])


def _check_same_setup(run_file: Path, setup: dict) -> None:
    recorded = json.loads(run_file.read_text())
    for key in ("format", "topology", "terminals", "params", "config"):
        if recorded.get(key) != setup[key]:
            differing = _first_difference(recorded.get(key), setup[key], key)
            raise ValueError(
                f"{run_file}: cannot resume, the run was made with a different setup "
                f"({differing}); use another --out directory for a new run"
            )


def _first_difference(recorded, current, path: str) -> str:
    if isinstance(recorded, dict) and isinstance(current, dict):
        for key in sorted(set(recorded) | set(current)):
            if recorded.get(key) != current.get(key):
                return _first_difference(recorded.get(key), current.get(key), f"{path}.{key}")
    return f"{path}: recorded {recorded!r}, now {current!r}"
