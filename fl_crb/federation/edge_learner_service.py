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
manages. SIGTERM (or SIGINT) ends it after the file in hand; it then writes its summary.
torch lives here, never in the ClientApp handlers.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fl_crb.federation.crypto import MessageRejected
from fl_crb.federation.host_bundle import HostBundle
from fl_crb.federation.mailbox import EdgeMailbox, count_refusal, unframe
from fl_crb.learn.learner_config import LearnerConfig
from fl_crb.runtime.config import load_config
from fl_crb.runtime.party import announce_ready, configure_logging, exit_now, write_json

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
        self.learner = EdgeLearner(config.edges, config.history_slots, config.learner)
        if config.initial_weights_path is not None:
            weights, _ = read_weights_file(Path(config.initial_weights_path))
            load_numpy_weights(self.learner.evaluation, weights)
            self.learner.target.load_state_dict(self.learner.evaluation.state_dict())
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

    def serve(self) -> None:
        """Train on whatever arrives until asked to stop."""
        while not self.stopping:
            waiting = self.mailbox.waiting()
            for path in waiting:
                self.train_file(path)
                if self.stopping:
                    break
            if not waiting:
                time.sleep(self.config.poll_interval_s)

    def summary(self) -> dict[str, object]:
        recent = self.losses[-50:]
        return {
            "party": self.config.name,
            "role": "edge-learner",
            "version": self.learner.version,
            "batch_files": self.batch_files,
            "refused_files": self.refused_files,
            "refusals": self.state["refusals"],
            "train_steps": self.learner.train_steps,
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
    announce_ready({"version": service.learner.version})
    service.serve()
    write_json(config.summary_path, service.summary())
    log.info("%s: done: %s", config.name, service.summary())
    return 0


if __name__ == "__main__":
    exit_now(main(sys.argv))  # its summary is written: skip torch's teardown
