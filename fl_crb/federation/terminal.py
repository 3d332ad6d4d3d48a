"""The terminal's side of the federation: act with delivered weights, seal every trajectory.

A federated terminal is the runtime's terminal party (`fl_crb.runtime.terminal`) with one
thing changed, its decider: this module builds that decider and runs the runtime's party
with it, so the runtime never imports the federation. It is started as its own process,
in place of the runtime's terminal, by the federated run (`deploy.federated_run`):

    python -m fl_crb.federation.terminal CONFIG.json

CONFIG.json is the runtime's `TerminalConfig`, with a `Federated` policy and the
terminal's `federation` settings; any other policy is decided as the runtime's own
terminal decides it.

`FederatedDecider` is the terminal of federated CRB-DRQN: the same `TerminalAgent` the
simulator trainer uses (with the federation's trajectory length, `tag` and network
widths, `FederatedTerminal.agent`), acting ε-greedily with the newest weights its SuperNode's
`collect` handler (`client_app`) delivered to its mailbox (checked at the first decision
after each multiple of `tag` slots, and at every decision while it holds none: until then
it acts uniformly at random, as the paper's ε = 1 start does). It acts only with weights
signed by its own managing edge, each version newer than the last (`message_auth.
WeightsVerifier`, checked again here after the handler's check). Each trajectory is
sealed for the authority (`crypto.UploadSealer`) and posted to the mailbox outbox the
moment it is cut; the `collect` handler hands the outbox to the authority.

Its keys come from its bundle: `FederatedTerminal.bundle` names the terminal's bundle
folder (DIR/<terminal>/ of `fl-crb keys`, `host_bundle`), which holds its sealing key,
the authority's public key and its managing edge's weights key.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from fl_crb.federation.crypto import UploadSealer
from fl_crb.federation.host_bundle import HostBundle
from fl_crb.federation.mailbox import TerminalMailbox, UploadPoster, count_refusal
from fl_crb.federation.message_auth import WeightsRejected
from fl_crb.federation.serialization import decode_weights, encode_trajectory
from fl_crb.mec.observation import TerminalObservation
from fl_crb.mec.params import MECParams
from fl_crb.policies.spec import Federated, PolicySpec
from fl_crb.runtime import terminal
from fl_crb.runtime.config import FederatedTerminal
from fl_crb.runtime.decider import Decider, make_decider
from fl_crb.runtime.party import exit_now

MODULE = "fl_crb.federation.terminal"
"""This module's path: the federated run starts each terminal party as `python -m MODULE`."""

log = logging.getLogger(MODULE)  # run as `python -m`, `__name__` would be "__main__"


class FederatedDecider:
    """A federated CRB-DRQN terminal: ε-greedy with delivered weights, sealed uploads."""

    def __init__(
        self, federation: FederatedTerminal, params: MECParams, terminals: int, seed: int
    ) -> None:
        from fl_crb.learn.features import FeatureScale
        from fl_crb.learn.terminal_agent import TerminalAgent

        self._scale = FeatureScale.from_params(params, terminals)
        self._agent = TerminalAgent(self._scale, params.history_slots, federation.agent, seed)
        self._agent.epsilon = federation.epsilon
        self._mailbox = TerminalMailbox(federation.mailbox)
        self._poster = UploadPoster(self._mailbox, federation.faults)
        keys = HostBundle.load(
            federation.bundle, role="terminal", host=federation.terminal_id
        ).terminal()
        self._keys = keys
        self._run_id = bytes.fromhex(federation.upload_run_id_hex)
        self._sealer = keys.upload_sealer(self._run_id, self._poster.next_sequence)
        self._verifier = keys.weights_verifier(self._run_id)
        self._signature: tuple[int, int, int] | None = None
        self._window = -1
        self.versions_loaded: list[int] = []
        self.refusals: dict[str, dict[str, int]] = {}
        """Weights in the mailbox this terminal refused to act with, {kind: {code: n}}."""

    @property
    def label(self) -> str:
        return f"crb-drqn@{self._agent.weights_version}"

    def _reload(self) -> None:
        """Load the mailbox's weights if they changed; keep those held if unreadable."""
        path = self._mailbox.weights_path
        try:
            stat = os.stat(path)
            signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if signature == self._signature:
                return
            verified = self._verifier.verify(path.read_bytes())
            payload = decode_weights(verified.payload)
            self._agent.load_weights(payload.weights, verified.version)
        except FileNotFoundError:
            return
        except WeightsRejected as error:
            log.warning("weights in %s refused: %s", path, error)
            count_refusal(self.refusals, error.kind, error.code)
            self._signature = signature  # one refusal per file, not one per decision
            return
        except (OSError, ValueError, RuntimeError, KeyError) as error:  # DecodeError too
            log.warning("weights in %s: %s; keeping the weights held", path, error)
            return
        self._signature = signature
        self.versions_loaded.append(verified.version)

    def decide(self, observation: TerminalObservation, slot: int, task_id: int) -> int:
        window = slot // self._agent.config.refresh_slots
        if window != self._window or self._agent.weights_version < 0:
            self._window = window
            self._reload()
        if self._agent.weights_version >= 0:
            action, trajectories = self._agent.act(observation, task_id)
        else:
            from fl_crb.learn.features import encode_one

            scalars, load = encode_one(observation, self._scale)
            action = int(self._agent.rng.integers(self._agent.actions))
            trajectories = self._agent.record(task_id, scalars[0], load[0], action)
        self._upload(trajectories)
        return action

    def resolved(self, task_id: int, reward: float) -> None:
        self._upload(self._agent.reward(task_id, reward))

    def _upload(self, trajectories: list) -> None:
        for trajectory in trajectories:
            plaintext = encode_trajectory(trajectory)
            envelope = self._sealer.seal(plaintext)
            self._poster.post(envelope, self._sealer.next_sequence, self._impersonating(plaintext))

    def _impersonating(self, plaintext: bytes):
        """Test faults only: seals `plaintext` with this terminal's key as another terminal."""
        keys, run_id = self._keys, self._run_id
        return lambda victim: UploadSealer(
            keys.upload_key, victim, keys.authority_public_key, run_id
        ).seal(plaintext)

    def finish(self) -> dict[str, object]:
        return {
            "policy": Federated().describe(),
            "weights_version": self._agent.weights_version,
            "weights_versions_loaded": self.versions_loaded,
            "hidden": self._agent.config.hidden,
            "lstm_hidden": self._agent.config.lstm_hidden,
            "uploads": self._poster.uploads,
            "posted": self._poster.posted,
            "faults_posted": self._poster.faults_posted,
            "next_sequence": self._sealer.next_sequence,
            "refusals": self.refusals,
        }


def make_federated_decider(
    spec: PolicySpec,
    params: MECParams,
    terminals: int,
    terminal: int,
    seed: int,
    trajectory_path: Path | None = None,
    federation: FederatedTerminal | None = None,
) -> Decider:
    """The runtime's `make_decider`, which also builds a `Federated` policy's decider (from
    the terminal config's `federation`)."""
    if not isinstance(spec, Federated):
        return make_decider(spec, params, terminals, terminal, seed, trajectory_path, federation)
    if federation is None:
        raise ValueError(
            f"policy {spec.describe()} needs the terminal config's federation settings"
        )
    return FederatedDecider(federation, params, terminals, seed)


def main(argv: list[str]) -> int:
    """Run the runtime's terminal party with the federated decider."""
    return terminal.main(argv, make_federated_decider, program=MODULE)


if __name__ == "__main__":
    exit_now(main(sys.argv))  # its outputs are written: skip the interpreter's teardown
