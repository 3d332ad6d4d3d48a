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
falls back to `<dir>.old` if a crash left no `<dir>`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from fl_crb.training.drqn_trainer import Trainer

CHECKPOINT_FORMAT = "fl-crb-trainer-checkpoint-1"
"""Tag written into `state.json` and checked on load."""


def save_checkpoint(trainer: Trainer, directory: str | Path) -> Path:
    """Write the trainer's whole state to `directory` (atomically); returns the path."""
    directory = Path(directory)
    partial = directory.with_name(directory.name + ".partial")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)

    agent_scalars, agent_arrays = [], {}
    for d, agent in enumerate(trainer.agents):
        scalars, arrays = agent.state()
        agent_scalars.append(scalars)
        agent_arrays.update({f"agent{d}/{name}": array for name, array in arrays.items()})
    state = {
        "format": CHECKPOINT_FORMAT,
        "episode": trainer.episode,
        "algo": trainer.config.algo,
        "terminals": trainer.terminals,
        "rng": trainer.rng.bit_generator.state,
        "agents": agent_scalars,
    }
    _write(partial / "state.json", lambda f: f.write(json.dumps(state).encode()))
    networks = trainer.scheme.learner_states()
    _write(partial / "networks.pt", lambda f: torch.save(networks, f))
    pools = {
        f"pool{i}/{key}": value
        for i, pool in enumerate(trainer.scheme.pools)
        for key, value in pool.state_dict().items()
    }
    _write(partial / "pools.npz", lambda f: np.savez(f, **pools))
    _write(partial / "agents.npz", lambda f: np.savez(f, **agent_arrays))

    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(partial, directory)
    shutil.rmtree(old, ignore_errors=True)
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
    state = json.loads((found / "state.json").read_text())
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{found / 'state.json'}: format {state.get('format')!r}, expected "
            f"{CHECKPOINT_FORMAT!r}"
        )
    for key, value in (("algo", trainer.config.algo), ("terminals", trainer.terminals)):
        if state[key] != value:
            raise ValueError(
                f"{found / 'state.json'}: checkpoint has {key} = {state[key]!r}, this trainer "
                f"has {value!r}"
            )
    try:
        trainer.scheme.load_learner_states(load_networks(found))
    except ValueError as error:
        raise ValueError(f"{found / 'networks.pt'}: {error}") from None
    with np.load(found / "pools.npz", allow_pickle=False) as archive:
        for i, pool in enumerate(trainer.scheme.pools):
            prefix = f"pool{i}/"
            pool.load_state_dict(
                {k[len(prefix) :]: archive[k] for k in archive.files if k.startswith(prefix)}
            )
    with np.load(found / "agents.npz", allow_pickle=False) as archive:
        for d, (agent, scalars) in enumerate(zip(trainer.agents, state["agents"], strict=True)):
            prefix = f"agent{d}/"
            arrays = {k[len(prefix) :]: archive[k] for k in archive.files if k.startswith(prefix)}
            agent.load_state(scalars, arrays)
    trainer.rng.bit_generator.state = state["rng"]
    trainer.episode = int(state["episode"])


def load_networks(directory: str | Path) -> list[dict]:
    """The learners' saved networks (`evaluation`, `target`, `optimizer`, `train_steps`)."""
    found = _readable(Path(directory))
    if found is None:
        raise FileNotFoundError(f"no checkpoint in {directory} (nor in {directory}.old)")
    return torch.load(found / "networks.pt", weights_only=True)


def _readable(directory: Path) -> Path | None:
    for candidate in (directory, directory.with_name(directory.name + ".old")):
        if (candidate / "state.json").is_file():
            return candidate
    return None


def _write(path: Path, write) -> None:
    with open(path, "wb") as file:
        write(file)
        file.flush()
        os.fsync(file.fileno())
