"""Save and restore a trainer between episodes, exactly: resuming continues the same run.

A checkpoint is a directory of four files, written together:

| file          | holds                                                                  |
| ------------- | ---------------------------------------------------------------------- |
| `state.json`  | format tag, episodes completed, the trainer's sampling RNG, every      |
|               | terminal's ε, weights version and exploration RNG                      |
| `networks.pt` | every learner's evaluation and target network, RMSprop state and step  |
|               | count (`torch.save` of tensors only, read with `weights_only=True`)    |
| `pools.npz`   | every trajectory pool (`TrajectoryPool.state_dict`), keys `pool<i>/…`  |
| `agents.npz`  | each terminal's complete transitions not yet cut into a trajectory,    |
|               | keys `agent<d>/…`                                                      |

Terminals' downloaded weights are not saved: after a restore every terminal downloads at
its next slot, which is slot 0 of the next episode, where it would download anyway.

Writing is atomic: the files go to `<dir>.partial`, then replace `<dir>`, the previous
checkpoint being kept as `<dir>.old` until the new one is in place; `load_checkpoint`
falls back to `<dir>.old` if a crash left no `<dir>`. A checkpoint file that cannot be
read (damaged on disk, cut short, not this program's) is an error naming the file and
the way on: the previous checkpoint in `<dir>.old` if there is one, else deleting `<dir>`
to train the run again from episode 0.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from fl_crb.files import read_json_file
from fl_crb.training.drqn_trainer import Trainer

T = TypeVar("T")

CHECKPOINT_FORMAT = "fl-crb-trainer-checkpoint-1"
"""Tag written into `state.json` and checked on load."""


def save_checkpoint(trainer: Trainer, directory: str | Path) -> Path:
    """Write the trainer's whole state to `directory` (atomically); returns the path."""
    directory = Path(directory)
    agent_scalars, agent_arrays = [], {}
    for d, agent in enumerate(trainer.agents):
        scalars, arrays = agent.state()
        agent_scalars.append(scalars)
        agent_arrays.update({f"agent{d}/{name}": array for name, array in arrays.items()})
    with replacing_directory(directory) as partial:
        state = {
            "format": CHECKPOINT_FORMAT,
            "episode": trainer.episode,
            "algo": trainer.config.algo,
            "terminals": trainer.terminals,
            "rng": trainer.rng.bit_generator.state,
            "agents": agent_scalars,
        }
        write_synced(partial / "state.json", lambda f: f.write(json.dumps(state).encode()))
        networks = trainer.scheme.learner_states()
        write_synced(partial / "networks.pt", lambda f: torch.save(networks, f))
        pools = {
            f"pool{i}/{key}": value
            for i, pool in enumerate(trainer.scheme.pools)
            for key, value in pool.state_dict().items()
        }
        write_synced(partial / "pools.npz", lambda f: np.savez(f, **pools))
        write_synced(partial / "agents.npz", lambda f: np.savez(f, **agent_arrays))
    return directory


def checkpoint_exists(directory: str | Path) -> bool:
    """Whether `directory` (or its `.old` fallback) holds a checkpoint."""
    return _readable(Path(directory)) is not None


def load_checkpoint(trainer: Trainer, directory: str | Path) -> None:
    """Restore a trainer built with the same parameters and config as the saved one."""
    directory = Path(directory)
    found = _readable(directory)
    if found is None:
        raise FileNotFoundError(f"no checkpoint in {directory} (nor in {directory}.old)")
    state = read_json_file(found / "state.json", "checkpoint's state", recovery(found))
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        state = state if isinstance(state, dict) else {}
        raise ValueError(
            f"{found / 'state.json'}: format {state.get('format')!r}, expected "
            f"{CHECKPOINT_FORMAT!r}; {recovery(found)}"
        )
    for key, value in (("algo", trainer.config.algo), ("terminals", trainer.terminals)):
        if state.get(key) != value:
            raise ValueError(
                f"{found / 'state.json'}: checkpoint has {key} = {state.get(key)!r}, this "
                f"trainer has {value!r}"
            )
    networks = load_networks(found)
    try:
        trainer.scheme.load_learner_states(networks)
    except ValueError as error:
        raise ValueError(f"{found / 'networks.pt'}: {error}") from None

    def load_pools() -> None:
        with np.load(found / "pools.npz", allow_pickle=False) as archive:
            for i, pool in enumerate(trainer.scheme.pools):
                prefix = f"pool{i}/"
                pool.load_state_dict(
                    {k[len(prefix) :]: archive[k] for k in archive.files if k.startswith(prefix)}
                )

    def load_agents() -> None:
        with np.load(found / "agents.npz", allow_pickle=False) as archive:
            pairs = zip(trainer.agents, state["agents"], strict=True)
            for d, (agent, scalars) in enumerate(pairs):
                prefix = f"agent{d}/"
                arrays = {
                    k[len(prefix) :]: archive[k] for k in archive.files if k.startswith(prefix)
                }
                agent.load_state(scalars, arrays)

    def load_state() -> None:
        trainer.rng.bit_generator.state = state["rng"]
        trainer.episode = int(state["episode"])

    _reading(found / "pools.npz", load_pools)
    _reading(found / "agents.npz", load_agents)
    _reading(found / "state.json", load_state)


def load_networks(directory: str | Path) -> list[dict]:
    """The learners' saved networks (`evaluation`, `target`, `optimizer`, `train_steps`)."""
    found = _readable(Path(directory))
    if found is None:
        raise FileNotFoundError(f"no checkpoint in {directory} (nor in {directory}.old)")
    return _reading(
        found / "networks.pt", lambda: torch.load(found / "networks.pt", weights_only=True)
    )


def read_torch_file(path: Path, what: str, way_back: str) -> object:
    """The tensors `torch.save` wrote to `path` (read with `weights_only=True`); a file
    that cannot be read (cut short, damaged, not a torch file) raises a `ValueError`
    naming it, `what` it is and `way_back`, how to go on without it."""
    try:
        return torch.load(path, weights_only=True)
    except DAMAGE as error:
        raise ValueError(
            f"{path}: the {what} cannot be read ({_reason(error)}); {way_back}"
        ) from None


def recovery(checkpoint: Path) -> str:
    """How to go on from the checkpoint `checkpoint` that cannot be read."""
    old = checkpoint.with_name(checkpoint.name + ".old")
    if old.is_dir() and old != checkpoint:
        return f"the previous checkpoint is in {old}: delete {checkpoint} to resume from it"
    return (
        f"delete {checkpoint} to train this run again from episode 0 (or its whole folder "
        "to start over)"
    )


DAMAGE = (
    ValueError,
    KeyError,
    TypeError,
    EOFError,
    RuntimeError,
    OSError,
    zipfile.BadZipFile,
    pickle.UnpicklingError,
)
"""What reading a damaged file raises: torch's `RuntimeError` for a cut zip archive,
numpy's `BadZipFile`, `EOFError` or `ValueError`, a `KeyError` for a missing entry."""


def _reading(path: Path, read: Callable[[], T]) -> T:
    """`read()`, with a failure reported as a damaged `path` and the way to recover."""
    try:
        return read()
    except DAMAGE as error:
        raise ValueError(
            f"{path}: the checkpoint file cannot be read ({_reason(error)}); "
            f"{recovery(path.parent)}"
        ) from error


def _reason(error: BaseException) -> str:
    """A reading error in one line: its type and the start of its message."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first[:200]}" if first else type(error).__name__


def _readable(directory: Path) -> Path | None:
    for candidate in (directory, directory.with_name(directory.name + ".old")):
        if (candidate / "state.json").is_file():
            return candidate
    return None


@contextmanager
def replacing_directory(directory: Path) -> Iterator[Path]:
    """An empty `<directory>.partial` to write a checkpoint into; once the block ends
    without an error it replaces `directory`, whose previous content stays in
    `<directory>.old` until then (an error leaves `directory` as it was)."""
    partial = directory.with_name(directory.name + ".partial")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    yield partial
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(partial, directory)
    shutil.rmtree(old, ignore_errors=True)


def write_synced(path: Path, write) -> None:
    """Create `path`, let `write` fill the open binary file, and sync it to disk."""
    with open(path, "wb") as file:
        write(file)
        file.flush()
        os.fsync(file.fileno())
