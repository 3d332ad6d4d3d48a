"""The edge learner service: one long-lived `EdgeLearner` fed through the edge's mailbox.

`python -m fl_crb.federation.edge_learner_service CONFIG.json` (an `EdgeServiceConfig`). It
loads the edge's key bundle, builds the learner (from given starting weights, or freshly
initialised), publishes its weights, signed with the edge's key (`message_auth.
WeightsSigner`), as version 0 in the mailbox, prints `READY {...}` on standard output,
then watches the mailbox inbox: each file the `train` handler drops there is one round's
familiarity-sampled batches, sealed by the authority for this edge; the service opens it
(`message_auth.BatchOpener`: a forged, altered, replayed, other-run or other-edge file is
refused, counted by code and deleted), takes one training step per batch, deletes the
file and publishes the new weights (version = training steps so far, and always above
the last version it signed in this run: a restarted service carries on from the version
in the mailbox's state.json, saved BEFORE the weights are published). The next `train`
reply carries them to the authority, which relays them to the terminals this edge
manages. SIGTERM (or SIGINT) ends it after the file in hand; it then checkpoints and
writes its summary. torch lives here, never in the ClientApp handlers.

Crash recovery (`LearnerCheckpoint`): the service checkpoints its learner (evaluation and
target networks, RMSprop state, training steps, the run id and the version last signed)
to the mailbox (`learner.pt`) at the end of the batch file that completes
`checkpoint_every_steps` steps since the last one, and at SIGTERM; each checkpoint is
written atomically and the one before it is kept (`learner.previous.pt`). A service
started again (the federated run's `learner_supervisor` restarts one that died) resumes
from the newest checkpoint of THIS run (same run id): its training steps and optimiser
continue from there, losing at most the steps since it, and its version continues above
the last one it signed (state.json). A checkpoint that cannot be read or does not fit
(cut short, damaged, other widths) is logged as an error naming the file, listed in the
summary (`checkpoints_refused`), and the one before it is tried; with none usable the
learner starts from its starting weights, as on its first start. Refusing to start
instead would only make the supervisor give up the edge's learning for the rest of the
run, while the pool rebuilds it in a few rounds; the summary says which case ran
(`resumed_from`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fl_crb.federation.crypto import MessageRejected
from fl_crb.federation.host_bundle import HostBundle
from fl_crb.federation.mailbox import EdgeMailbox, count_refusal, unframe
from fl_crb.files import atomic_file
from fl_crb.learn.learner_config import LearnerConfig
from fl_crb.runtime.config import load_config
from fl_crb.runtime.party import announce_ready, configure_logging, exit_now, write_json

if TYPE_CHECKING:
    from fl_crb.learn.edge_learner import EdgeLearner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EdgeServiceConfig:
    """One edge learner service."""

    name: str
    """The edge's topology host name (for logs)."""
    mailbox: str
    """The edge's mailbox directory (shared with its SuperNode's handlers)."""
    edges: int
    """E, edge servers in the system (the Q-network has 1 + E actions)."""
    history_slots: int
    """C, load history slots of a state."""
    trajectory_length: int
    """n, transitions per trajectory of the batches (the federation's `MethodConfig`)."""
    learner: LearnerConfig
    """The learner's settings: the federation's `MethodConfig.learner` (optimiser, target
    period, network widths) with this edge's own initialisation seed."""
    summary_path: str
    """Where to write the service's summary JSON at the end."""
    bundle: str
    """The edge's key bundle (DIR/<edge>/ of `fl-crb keys`): it opens the batches sealed
    for this edge and signs its weights."""
    run_id_hex: str
    """The run's id (32 hex digits), bound into its weights' signatures and its batches."""
    initial_weights_path: str | None = None
    """Starting weights (`fl_crb.learn.weights_file` format, as wide as `learner`'s
    network); None: fresh initialisation."""
    poll_interval_s: float = 0.05
    """Seconds between looks at the inbox."""
    checkpoint_every_steps: int = 20
    """Checkpoint the learner once this many training steps were taken since the last
    checkpoint (at the end of the batch file that reaches them); a learner killed outright
    loses at most these steps. The default is one round's batches at the default round
    period and slot."""

    def __post_init__(self) -> None:
        if self.checkpoint_every_steps < 1:
            raise ValueError(
                f"checkpoint_every_steps must be >= 1, got {self.checkpoint_every_steps}"
            )


CHECKPOINT_FORMAT = "fl-crb-edge-learner-checkpoint-1"
"""Tag written into every learner checkpoint and checked on resume."""


class LearnerCheckpoint:
    """An edge learner's checkpoints in its mailbox: the newest and the one before it."""

    def __init__(self, mailbox: EdgeMailbox, edge: str, run_id_hex: str) -> None:
        self.paths = (mailbox.checkpoint_path, mailbox.previous_checkpoint_path)
        """Where to look on resume, newest first."""
        self.edge = edge
        self.run_id_hex = run_id_hex
        self.refused: list[dict[str, str]] = []
        """Checkpoints found but not used, with why: {"path", "reason"}."""

    def save(self, learner: EdgeLearner, version: int) -> None:
        """Write `learner`'s whole state as the newest checkpoint; the newest until now
        becomes the previous one (atomic renames: a crash leaves one of the two)."""
        import torch

        state = {
            "format": CHECKPOINT_FORMAT,
            "run_id": self.run_id_hex,
            "edge": self.edge,
            "version": version,
            "train_steps": learner.train_steps,
            "evaluation": learner.evaluation.state_dict(),
            "target": learner.target.state_dict(),
            "optimizer": learner.optimizer.state_dict(),
        }
        newest, previous = self.paths
        if newest.exists():
            os.replace(newest, previous)
        with atomic_file(newest) as file:
            torch.save(state, file)

    def resume(
        self, fresh: Callable[[], EdgeLearner]
    ) -> tuple[EdgeLearner, dict[str, object] | None]:
        """The learner to go on with: `fresh()` (a new learner at its starting weights)
        restored from the newest usable checkpoint of this run, and what it came from
        ({"path", "train_steps", "version"}); `fresh()` itself and None without one. A
        refused checkpoint is set aside as `<name>.refused` (kept for a look, never
        rotated over a good one)."""
        for path in self.paths:
            if not path.exists():
                continue
            learner = fresh()
            try:
                saved = self._read(path)
                if saved is None:
                    continue  # another run's: not ours to resume
                learner.evaluation.load_state_dict(saved["evaluation"])
                learner.target.load_state_dict(saved["target"])
                learner.optimizer.load_state_dict(saved["optimizer"])
                learner.train_steps = int(saved["train_steps"])
            except (ValueError, KeyError, TypeError, RuntimeError) as error:
                reason = str(error).strip().splitlines()[0][:300] if str(error) else ""
                reason = f"{type(error).__name__}: {reason}" if reason else type(error).__name__
                aside = path.with_name(path.name + ".refused")
                log.error(
                    "%s: refusing learner checkpoint %s (%s); set aside as %s; going on "
                    "from the checkpoint before it, else from the starting weights",
                    self.edge,
                    path,
                    reason,
                    aside.name,
                )
                os.replace(path, aside)
                self.refused.append({"path": str(path), "reason": reason})
                continue
            origin = {"path": str(path), "train_steps": learner.train_steps}
            log.info(
                "%s: resumed from %s at %d training steps", self.edge, path, origin["train_steps"]
            )
            return learner, {**origin, "version": int(saved["version"])}
        return fresh(), None

    def _read(self, path: Path) -> dict | None:
        """The checkpoint in `path` if it is this edge's in this run, None if it is another
        run's; a `ValueError` naming the file for anything unreadable or foreign."""
        from fl_crb.training.checkpoint import read_torch_file

        saved = read_torch_file(
            path,
            "edge learner checkpoint",
            "the learner goes on without it",
        )
        if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
            found = saved.get("format") if isinstance(saved, dict) else type(saved).__name__
            raise ValueError(f"{path}: format {found!r}, expected {CHECKPOINT_FORMAT!r}")
        if saved.get("edge") != self.edge:
            raise ValueError(
                f"{path}: a checkpoint of edge {saved.get('edge')!r}, not {self.edge!r}"
            )
        if saved.get("run_id") != self.run_id_hex:
            log.info(
                "%s: %s belongs to run %s, not this one: not resumed",
                self.edge,
                path,
                saved.get("run_id"),
            )
            return None
        return saved


class EdgeService:
    """The learner, its mailbox and its counters."""

    def __init__(self, config: EdgeServiceConfig) -> None:
        import torch

        from fl_crb.learn.edge_learner import EdgeLearner
        from fl_crb.learn.qnetwork import load_numpy_weights
        from fl_crb.learn.weights_file import read_weights_file

        torch.set_num_threads(1)  # many processes share few cores
        self.config = config
        self.mailbox = EdgeMailbox(config.mailbox)
        keys = HostBundle.load(config.bundle, role="edge", host=config.name).edge()
        run_id = bytes.fromhex(config.run_id_hex)
        self.state = self.mailbox.learner_state()
        """The last signed version, the latest batch accepted, refusals: state.json."""
        self.signer = keys.weights_signer(run_id)
        self.opener = keys.batch_opener(run_id, self.state["batch_sequence"])
        starting_weights = None
        if config.initial_weights_path is not None:
            starting_weights, _ = read_weights_file(Path(config.initial_weights_path))

        def fresh() -> EdgeLearner:
            learner = EdgeLearner(config.edges, config.history_slots, config.learner)
            if starting_weights is not None:
                load_numpy_weights(learner.evaluation, starting_weights)
                learner.target.load_state_dict(learner.evaluation.state_dict())
            return learner

        self.checkpoint = LearnerCheckpoint(self.mailbox, config.name, config.run_id_hex)
        self.learner, self.resumed_from = self.checkpoint.resume(fresh)
        self.checkpointed_steps = self.learner.train_steps
        """Training steps the newest checkpoint holds (or the resumed start's)."""
        self.checkpoints_written = 0
        self.losses: list[float] = []
        self.batch_files = 0
        self.refused_files = 0
        self.stopping = False
        self.publish()

    def publish(self) -> None:
        """Sign and publish the evaluation network's weights: the learner's version, or
        the next above the last one signed in this run (after a restart)."""
        from fl_crb.federation.serialization import encode_weights

        version = max(self.learner.version, self.state["weights_version"] + 1)
        self.state["weights_version"] = version
        self.mailbox.save_learner_state(self.state)  # before the version can leave
        payload = encode_weights(self.learner.weights(), version)
        self.mailbox.publish_weights(self.signer.sign(payload, version))

    def train_file(self, path: Path) -> None:
        """Train one step per batch in a batch file, delete it, publish the weights."""
        from fl_crb.federation.serialization import DecodeError, TrajectoryShape, decode_trajectory
        from fl_crb.learn.pool import TrajectoryBatch

        shape = TrajectoryShape(
            self.config.trajectory_length, self.config.history_slots, self.config.edges
        )
        try:
            opened = self.opener.open(path.read_bytes())
        except MessageRejected as error:
            log.error("%s: refusing batch file %s: %s", self.config.name, path.name, error)
            count_refusal(self.state["refusals"], error.kind, error.code)
            self.state["batch_sequence"] = self.opener.latest_sequence
            self.mailbox.save_learner_state(self.state)
            path.unlink()
            return
        self.state["batch_sequence"] = opened.sequence
        self.mailbox.save_learner_state(self.state)
        try:
            batches = [
                [decode_trajectory(blob, shape) for blob in unframe(batch, f"{path}: batch")]
                for batch in unframe(opened.plaintext, str(path))
            ]
        except (ValueError, DecodeError) as error:
            log.error("%s: refusing batch file %s: %s", self.config.name, path.name, error)
            self.refused_files += 1
            path.unlink()
            return
        for batch in batches:
            if batch:
                self.losses.append(self.learner.train_step(TrajectoryBatch.stack(batch)))
        path.unlink()
        self.batch_files += 1
        self.publish()
        if self.learner.train_steps - self.checkpointed_steps >= self.config.checkpoint_every_steps:
            self.save_checkpoint()

    def save_checkpoint(self) -> None:
        """Checkpoint the learner with the version last signed."""
        self.checkpoint.save(self.learner, self.state["weights_version"])
        self.checkpointed_steps = self.learner.train_steps
        self.checkpoints_written += 1

    def serve(self) -> None:
        """Train on whatever arrives until asked to stop; then checkpoint what is new."""
        while not self.stopping:
            waiting = self.mailbox.waiting()
            for path in waiting:
                self.train_file(path)
                if self.stopping:
                    break
            if not waiting:
                time.sleep(self.config.poll_interval_s)
        if self.learner.train_steps != self.checkpointed_steps:
            self.save_checkpoint()

    def summary(self) -> dict[str, object]:
        """The service's record: `train_steps` and `version` (the last signed) over the
        whole run, a restart included (`resumed_from` says from which checkpoint); batch
        files, refusals of files and losses counted by this process only."""
        recent = self.losses[-50:]
        return {
            "party": self.config.name,
            "role": "edge-learner",
            "version": self.state["weights_version"],
            "batch_files": self.batch_files,
            "refused_files": self.refused_files,
            "refusals": self.state["refusals"],
            "train_steps": self.learner.train_steps,
            "resumed_from": self.resumed_from,
            "checkpoints_refused": self.checkpoint.refused,
            "checkpoints_written": self.checkpoints_written,
            "hidden": self.config.learner.hidden,
            "lstm_hidden": self.config.learner.lstm_hidden,
            "loss_first": self.losses[0] if self.losses else None,
            "loss_recent_mean": sum(recent) / len(recent) if recent else None,
        }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(
            "usage: python -m fl_crb.federation.edge_learner_service CONFIG.json", file=sys.stderr
        )
        return 2
    config = load_config(argv[1], EdgeServiceConfig)
    configure_logging(f"{config.name}-learner")
    service = EdgeService(config)

    def stop(*_) -> None:
        service.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    announce_ready({"version": service.state["weights_version"]})
    service.serve()
    write_json(config.summary_path, service.summary())
    log.info("%s: done: %s", config.name, service.summary())
    return 0


if __name__ == "__main__":
    exit_now(main(sys.argv))  # its summary is written: skip torch's teardown
