"""How a live terminal decides: a baseline policy, or CRB-DRQN with reloadable weights.

A `Decider` turns one terminal's own observation into an action and hears each task's
reward. Two kinds are built here:

- `BaselineDecider` runs a baseline of `fl_crb.policies` built for the whole system (all
  D terminals), and asks it about an `Observations` in which only this terminal has a
  task. A baseline's per-terminal state (round-robin's next edge, least-loaded's
  tie-breaking rotation) is therefore exactly the simulator's for this terminal.
- `AgentDecider` (a `WeightsFile` policy, `--policy crb-drqn:WEIGHTS.npz`) is the
  learner's `TerminalAgent` (the same component the simulator trainer uses), acting
  greedily (ε = 0) with the weights in a file, its network as wide as the file's. At
  its first decision after each multiple of `tag` slots (the agent's refresh period) it
  checks the file and loads it again if it changed, so whoever trains can replace the
  weights while the run goes on (write a new file and rename it over the old one:
  `fl_crb.learn.weights_file.save_weights_file`).
  Its trajectories are kept and written next to the task log at the end.

The terminal of federated CRB-DRQN (a `Federated` policy) is built a layer above, by the
federation (`fl_crb.federation.terminal`): that module runs the terminal party with its
own `DeciderFactory`, so this package never imports the federation. A decider that is
also a `WeightsSink` is handed every weights blob its edges send over their connections
(the terminal party reassembles them, the sink checks them) and tells the party, per
decision, how old the weights it acted with were (`WeightsAge`, for the task log). `make_decider`
refuses the policy and says where it is decided; a `TrainedRun` never reaches a terminal
(the coordinator gives each terminal its managing edge's network as a weights file).
"""

from __future__ import annotations

import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from fl_crb.learn.weights_file import network_widths, read_weights_file
from fl_crb.mec.observation import Observations, TerminalObservation
from fl_crb.mec.params import MECParams
from fl_crb.policies.baselines import make_baseline
from fl_crb.policies.spec import Baseline, Federated, PolicySpec, WeightsFile
from fl_crb.runtime.config import FederatedTerminal

log = logging.getLogger(__name__)

_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile)
"""What reading a missing, partial or foreign weights file raises."""


class Decider(Protocol):
    label: str
    """What decided, for the task log: a policy name or `crb-drqn@<version>`."""

    def decide(self, observation: TerminalObservation, slot: int, task_id: int) -> int:
        """Action for the task `task_id` arriving in `slot`: 0 local, e = edge e."""
        ...

    def resolved(self, task_id: int, reward: float) -> None:
        """The task finished or was dropped with `reward`."""
        ...

    def finish(self) -> dict[str, object]:
        """The run is over: save what must be kept; returns facts for the summary."""
        ...


@dataclass(frozen=True, slots=True)
class WeightsAge:
    """How old the weights of one decision were; −1 where unknown."""

    age_slots: int
    """Slots since the version acted with was published (by the slot its edge saw it)."""
    versions_behind: int
    """Versions published by the decision's slot that are newer than the one acted with."""
    relayed_age_slots: int = -1
    """The same age for the weights the terminal would have acted with had they come only
    through the slower path (the federation's relay through the cloud), same run."""
    relayed_versions_behind: int = -1
    """The same versions behind, for that slower path."""


@runtime_checkable
class WeightsSink(Protocol):
    """A decider that takes weights its edges send over the edge–terminal connections."""

    def weights_arrived(self, edge: int, blob: bytes, published_slot: int) -> None:
        """Edge `edge` (0-based) sent a whole weights blob, which it saw published in
        `published_slot`; the sink checks it before acting with it (and counts refusals)."""
        ...

    def weights_age(self, slot: int) -> WeightsAge | None:
        """How old the weights of the decision just taken in `slot` were; None if it was
        taken without weights."""
        ...


class BaselineDecider:
    """A baseline policy of the whole system, asked about this terminal only."""

    def __init__(self, name: str, params: MECParams, terminals: int, terminal: int, seed: int):
        self.label = name
        self._policy = make_baseline(name, params, terminals, seed)
        self._terminal = terminal
        self._has_task = np.zeros(terminals, dtype=bool)
        self._has_task[terminal] = True
        self._task_bits = np.zeros(terminals)
        self._local_wait = np.zeros(terminals, dtype=np.int64)
        self._uplink_wait = np.zeros(terminals, dtype=np.int64)
        self._queued = np.zeros((terminals, params.edges))

    def decide(self, observation: TerminalObservation, slot: int, task_id: int) -> int:
        d = self._terminal
        self._task_bits[d] = observation.task_bits
        self._local_wait[d] = observation.local_wait_slots
        self._uplink_wait[d] = observation.uplink_wait_slots
        self._queued[d] = observation.edge_queue_bits
        observations = Observations(
            slot=slot,
            has_task=self._has_task,
            task_bits=self._task_bits,
            local_wait_slots=self._local_wait,
            uplink_wait_slots=self._uplink_wait,
            edge_queue_bits=self._queued,
            load_history=observation.load_history,
        )
        return int(self._policy.act(observations)[d])

    def resolved(self, task_id: int, reward: float) -> None:
        """Baselines do not learn."""

    def finish(self) -> dict[str, object]:
        return {"policy": self.label}


class AgentDecider:
    """CRB-DRQN's terminal agent acting greedily with weights reloaded from a file."""

    def __init__(
        self,
        weights_path: Path,
        params: MECParams,
        terminals: int,
        seed: int,
        trajectory_path: Path | None,
    ) -> None:
        from fl_crb.learn.features import FeatureScale
        from fl_crb.learn.method_config import TerminalAgentConfig
        from fl_crb.learn.terminal_agent import TerminalAgent

        self._path = weights_path
        self._signature: tuple[int, int, int] | None = None
        try:
            weights, _ = read_weights_file(weights_path)
            hidden, lstm_hidden = network_widths(weights, str(weights_path))
        except _UNREADABLE as error:
            raise ValueError(f"{weights_path}: cannot load CRB-DRQN weights: {error}") from None
        self._agent = TerminalAgent(
            FeatureScale.from_params(params, terminals),
            params.history_slots,
            TerminalAgentConfig(hidden=hidden, lstm_hidden=lstm_hidden),
            seed=seed,
        )
        self._agent.epsilon = 0.0
        self._trajectory_path = trajectory_path
        self._trajectories: list = []
        self.reloads = 0
        self._window = 0
        """slot // tag of the last check of the file."""
        try:
            self._load()
        except _UNREADABLE as error:
            raise ValueError(f"{weights_path}: cannot load CRB-DRQN weights: {error}") from None

    @property
    def label(self) -> str:
        return f"crb-drqn@{self._agent.weights_version}"

    def _load(self) -> None:
        """Load the file into the agent, remembering which version of the file it was."""
        stat = os.stat(self._path)
        weights, version = read_weights_file(self._path)
        self._agent.load_weights(weights, version)
        self._signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        self.reloads += 1

    def _reload(self) -> None:
        """Load the file again if it changed; a file that cannot be read (being replaced,
        or broken) keeps the weights held, with a warning, and is tried again next time."""
        try:
            stat = os.stat(self._path)
            if (stat.st_mtime_ns, stat.st_size, stat.st_ino) != self._signature:
                self._load()
        except _UNREADABLE as error:
            log.warning("weights file %s: %s; keeping the weights held", self._path, error)

    def decide(self, observation: TerminalObservation, slot: int, task_id: int) -> int:
        window = slot // self._agent.config.refresh_slots
        if window != self._window:  # first decision since a multiple of `tag` slots
            self._window = window
            self._reload()
        action, trajectories = self._agent.act(observation, task_id)
        self._trajectories.extend(trajectories)
        return action

    def resolved(self, task_id: int, reward: float) -> None:
        self._trajectories.extend(self._agent.reward(task_id, reward))

    def finish(self) -> dict[str, object]:
        if self._trajectory_path is not None and self._trajectories:
            from fl_crb.learn.pool import FIELDS

            stacked = {f: np.stack([getattr(t, f) for t in self._trajectories]) for f in FIELDS}
            np.savez(self._trajectory_path, **stacked)
        return {
            "policy": "crb-drqn",
            "weights_file": str(self._path),
            "weights_version": self._agent.weights_version,
            "weights_loads": self.reloads,
            "trajectories": len(self._trajectories),
        }


class DeciderFactory(Protocol):
    """What builds a terminal party's decider (`make_decider`'s signature); the federated
    terminal passes its own, which also builds a `Federated` policy's."""

    def __call__(
        self,
        spec: PolicySpec,
        params: MECParams,
        terminals: int,
        terminal: int,
        seed: int,
        trajectory_path: Path | None = None,
        federation: FederatedTerminal | None = None,
    ) -> Decider: ...


def make_decider(
    spec: PolicySpec,
    params: MECParams,
    terminals: int,
    terminal: int,
    seed: int,
    trajectory_path: Path | None = None,
    federation: FederatedTerminal | None = None,
) -> Decider:
    """The decider of a policy: a live baseline, or a weights file acted with greedily.

    `federation` (the terminal config's federated settings) is not used here: only the
    federated terminal's factory (`fl_crb.federation.terminal`) builds the decider of a
    `Federated` policy, which this one refuses with where to start such a terminal."""
    if isinstance(spec, Federated):
        raise ValueError(
            f"policy {spec.describe()} is decided by the federation's terminal: start the "
            "party with `python -m fl_crb.federation.terminal CONFIG.json` (as `fl-crb "
            "federate` does), not `python -m fl_crb.runtime.terminal`"
        )
    if isinstance(spec, WeightsFile):
        return AgentDecider(Path(spec.path), params, terminals, seed, trajectory_path)
    if isinstance(spec, Baseline) and spec.live:
        return BaselineDecider(spec.name, params, terminals, terminal, seed)
    raise ValueError(
        f"a live terminal cannot decide with policy {spec.describe()}: it takes a live "
        "baseline or a weights file (a training run folder is exported to one weights "
        "file per edge by the run's coordinator)"
    )
