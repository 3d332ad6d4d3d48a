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

What an interruption leaves is resumable: `run.json`, `best.pt` and `best.json` are
replaced atomically (`fl_crb.files`), checkpoints likewise (`fl_crb.training.checkpoint`),
and the JSON-lines files are appended to, a line per episode; a last line cut short by
a crash is dropped on resume with a warning naming the file (its episode runs again).
Any other damage (a file that is not JSON, a line in the middle that is garbage) is an
error naming the file and how to recover.

The DRQN algorithms train with `fl_crb.training.drqn_trainer.Trainer`, the paper's learning
baselines with `fl_crb.training.marl_trainer.MarlTrainer` (`make_trainer`); both give the same
metrics, validation and checkpoint surface, so run directories look alike.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from fl_crb.files import atomic_file, read_json_file, read_text_file, write_atomically
from fl_crb.mec.params import MECParams
from fl_crb.training.checkpoint import (
    checkpoint_exists,
    load_checkpoint,
    recovery,
    save_checkpoint,
)
from fl_crb.training.config import MARL_ALGORITHMS, TrainConfig
from fl_crb.training.drqn_trainer import EpisodeMetrics, Trainer

RUN_FORMAT = "fl-crb-training-run-1"
"""Tag of `run.json`."""

log = logging.getLogger(__name__)


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
        load_checkpoint(trainer, path)  # names the damaged file itself
        return
    try:
        trainer.load(path)
    except (ValueError, KeyError, RuntimeError, EOFError, OSError) as error:
        if isinstance(error, FileNotFoundError | ValueError) and str(path) in str(error):
            raise  # a message of the trainer's own, naming the checkpoint
        raise ValueError(
            f"{path}: the checkpoint cannot be read ({type(error).__name__}: {error}); "
            f"{recovery(path)}"
        ) from error


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
            elif run.checkpoint_path.is_dir() and any(run.checkpoint_path.iterdir()):
                raise ValueError(
                    f"{run.checkpoint_path}: the checkpoint holds no state.json; "
                    f"{recovery(run.checkpoint_path)}"
                )
            for path in (run.metrics_path, run.validation_path):
                _truncate(path, trainer.episode)
            return run
        if directory.exists() and any(directory.iterdir()):
            raise ValueError(
                f"{directory} is not empty and holds no run.json: give an empty or new "
                "directory for a new run, or the directory of the run to resume"
            )
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(run_file, json.dumps(setup, indent=2) + "\n")
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
            with atomic_file(self.directory / "best.pt") as file:
                torch.save(networks, file)
            write_atomically(self.directory / "best.json", json.dumps(row))


def _read_lines(path: Path, recovery: str) -> list[dict]:
    """The JSON objects of a JSON-lines file, each with an integer `episode`. A last line
    cut short by an interruption (no newline, or not JSON) is left out with a warning;
    a bad line before it is an error naming the file, the line and `recovery`."""
    if not path.exists():
        return []
    text = read_text_file(path, "JSON-lines file")
    lines = text.split("\n")
    complete, torn = lines[:-1], lines[-1]  # the text after the last newline
    rows = []
    for number, line in enumerate(complete, 1):
        if not line.strip():
            continue
        row = _row(line)
        if row is None:
            if number == len(complete) and not torn.strip():
                torn = line  # the last line, ended by the newline of a cut-short write
                break
            raise ValueError(
                f"{path}: line {number} is not a JSON object with an integer episode "
                f"(it reads {line[:60]!r}); {recovery}"
            )
        rows.append(row)
    if torn.strip():
        log.warning(
            "%s: dropped its last line, cut short by an interruption (%r); its episode runs again",
            path,
            torn[:60],
        )
    return rows


def _row(line: str) -> dict | None:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    ok = isinstance(row, dict) and isinstance(row.get("episode"), int)
    return row if ok else None


def _truncate(path: Path, episodes: int) -> None:
    """Keep the lines of a JSON-lines file whose episode is below `episodes` (and drop a
    torn last line); the file is replaced atomically."""
    if not path.exists():
        return
    recovery = f"delete {path.parent} to start this run over"
    kept = [row for row in _read_lines(path, recovery) if row["episode"] < episodes]
    write_atomically(path, "".join(json.dumps(row) + "\n" for row in kept))


def read_best(directory: str | Path) -> dict | None:
    """The validation row of the weights kept as best, or None if none was kept yet."""
    path = Path(directory) / "best.json"
    if not path.is_file():
        return None
    best = read_json_file(
        path,
        "record of the best validated weights",
        f"delete it and {path.with_name('best.pt')}: the run's last checkpoint is then used, "
        "and the next validation writes them again",
    )
    if not isinstance(best, dict) or not isinstance(best.get("avg_reward"), int | float):
        raise ValueError(
            f"{path}: expected a JSON object with avg_reward, got {str(best)[:60]!r}; delete "
            f"it and {path.with_name('best.pt')} to use the last checkpoint instead"
        )
    return best


def read_metrics(directory: str | Path) -> list[dict]:
    """The per-episode metrics of a run directory, in episode order (a last line cut
    short by an interruption left out, with a warning)."""
    path = Path(directory) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no metrics.jsonl: is it a training run?")
    return _read_lines(path, f"delete {directory} to start this run over")


def read_setup(directory: str | Path) -> dict:
    """The `run.json` of a run directory, checked for its format."""
    path = Path(directory) / "run.json"
    if not path.is_file():
        raise ValueError(f"{directory} is not a training run directory: it has no run.json")
    setup = _read_run_file(path)
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


def _read_run_file(path: Path) -> dict:
    """`run.json` as a JSON object; damage is an error saying how to start over."""
    recovery = (
        f"it records what the run trains, so the run cannot go on without it: delete "
        f"{path.parent} to start over"
    )
    setup = read_json_file(path, "training run's setup", recovery)
    if not isinstance(setup, dict):
        raise ValueError(f"{path}: expected a JSON object, got {str(setup)[:60]!r}; {recovery}")
    return setup


def _check_same_setup(run_file: Path, setup: dict) -> None:
    recorded = _read_run_file(run_file)
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
