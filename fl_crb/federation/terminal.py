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
widths, `FederatedTerminal.agent`), acting ε-greedily with the newest weights it holds.
Weights reach it by two paths, and it takes the newest version from either:

- **the edge link** (the fast path): its managing edge server sends each version over the
  terminal's own connection as soon as the edge learner publishes it, and the newest one
  as soon as the terminal connects (`fl_crb.federation.edge`); the runtime's terminal
  party hands each whole blob to `weights_arrived`, which checks it at once;
- **the relay through the cloud** (the Flower path, for terminals whose edge link is
  down): the authority carries the edge's weights from its `train` reply to the
  terminal's `collect` message, whose handler (`client_app`) leaves them in the mailbox,
  about two rounds after they were published. Each version the edge link brought is
  noted in the mailbox (`edge.WeightsReceipts`) and reported by the handler, so the
  authority does not send it again: it sends only its number (a notice), which still
  counts for the relay's reference age below.

It acts only with weights signed by its own managing edge, each version newer than the
last (`message_auth.WeightsVerifier`; for the relayed copy, checked again here after the
handler's check). A refused blob is counted by code (`refusals`); an exact copy of a
version it already accepted (its edge sends the newest again when the terminal
reconnects) is counted apart (`weights_duplicates`), as it is no attack. Checked weights
are acted with from the first decision after each multiple of `tag` slots (the paper's
download period), and at every decision while it holds none: until then it acts
uniformly at random, as the paper's ε = 1 start does.

Per decision it reports the weights' age (`runtime.decider.WeightsAge`): slots since the
version acted with was published (the slot its edge saw it, which the edge sends with
each blob) and how many newer versions were published by then; and the same for the
version a terminal fed only by the relay would have acted with in that slot (the "before"
of the edge link, in the same run). Each trajectory is sealed for the authority
(`crypto.UploadSealer`) and posted to the mailbox outbox the moment it is cut; the
`collect` handler hands the outbox to the authority. With the relay uplink
(`FederatedTerminal.uplink`) the terminal has no SuperNode and no `collect`: its decider
gives the runtime's party its outbox (`relay.TerminalRelayOutbox`, `upload_outbox`), which
hands each upload to the managing edge and takes the acknowledgements the edge passes
on; weights then come by the edge link alone.

Its keys come from its bundle: `FederatedTerminal.bundle` names the terminal's bundle
folder (DIR/<terminal>/ of `fl-crb keys`, `host_bundle`), which holds its sealing key,
the authority's public key and its managing edge's weights key.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

from fl_crb.federation.crypto import UploadSealer
from fl_crb.federation.edge import WeightsReceipts
from fl_crb.federation.host_bundle import HostBundle
from fl_crb.federation.mailbox import (
    TerminalMailbox,
    UploadPoster,
    count_refusal,
    signed_weights_version,
)
from fl_crb.federation.message_auth import VerifiedWeights, WeightsRejected
from fl_crb.federation.relay import TerminalRelayOutbox
from fl_crb.federation.serialization import decode_weights, encode_trajectory
from fl_crb.mec.observation import TerminalObservation
from fl_crb.mec.params import MECParams
from fl_crb.policies.spec import Federated, PolicySpec
from fl_crb.runtime import config as runtime_config
from fl_crb.runtime import terminal
from fl_crb.runtime.config import FederatedTerminal
from fl_crb.runtime.decider import Decider, WeightsAge, make_decider
from fl_crb.runtime.party import exit_now

MODULE = "fl_crb.federation.terminal"
"""This module's path: the federated run starts each terminal party as `python -m MODULE`."""

log = logging.getLogger(MODULE)  # run as `python -m`, `__name__` would be "__main__"


EDGE_LINK, RELAY = "edge", "relay"
"""The two paths weights reach a terminal by."""


class FederatedDecider:
    """A federated CRB-DRQN terminal: ε-greedy with its edge's newest weights, sealed uploads.
    Also the runtime terminal's `WeightsSink`: it takes the weights its edge sends."""

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
        self._relay = (
            TerminalRelayOutbox(
                self._mailbox, self._poster, keys, self._run_id, federation.relay_handover
            )
            if federation.uplink == runtime_config.RELAY
            else None
        )
        """Its outbox as the relay uplink hands it to the edge; None: direct uplink."""
        self._verifier = keys.weights_verifier(self._run_id)
        self._signature: tuple[int, int, int] | None = None
        self._window = -1
        self._pending: tuple[VerifiedWeights, str] | None = None
        """The newest checked weights not acted with yet, and the path they came by."""
        self._accepted: set[bytes] = set()
        """SHA-256 of every blob accepted: an exact copy again is a duplicate, no attack."""
        self._published: dict[int, int] = {}
        """Slot each version was published in, as its edge said with the blob."""
        self._relayed_version = -1
        """The newest version the relay has delivered to the mailbox, or announced in its
        place because the edge link brought it (`edge.WeightsReceipts`)."""
        self._receipts = WeightsReceipts(federation.mailbox)
        self._edge_link_version = -1
        """The newest version accepted over the edge link (noted for the collect handler)."""
        self._relayed_acting = -1
        """The version a terminal fed only by the relay would act with now."""
        self.versions_loaded: list[int] = []
        self.loaded_from = {EDGE_LINK: 0, RELAY: 0}
        """How many of the versions acted with came first by each path."""
        self.weights_duplicates = 0
        self.refusals: dict[str, dict[str, int]] = {}
        """Weights this terminal refused to act with, {kind: {code: n}}."""

    @property
    def label(self) -> str:
        return f"crb-drqn@{self._agent.weights_version}"

    def upload_outbox(self) -> TerminalRelayOutbox | None:
        """The outbox the runtime's party hands to the managing edge (relay uplink);
        None in the direct uplink, where the SuperNode's `collect` carries it."""
        return self._relay

    # -- weights: the edge link and the relay --------------------------------------------

    def weights_arrived(self, edge: int, blob: bytes, published_slot: int) -> None:
        """A whole blob from edge `edge` over its connection: check it now, act with it
        from the next check (`decide`)."""
        if self._accept(blob, EDGE_LINK, f"weights from edge{edge + 1}"):
            version = signed_weights_version(blob)
            self._published.setdefault(version, published_slot)
            if version > self._edge_link_version:  # the authority need not relay it
                self._edge_link_version = version
                self._receipts.note_edge_link(version)

    def _accept(self, blob: bytes, path: str, source: str) -> bool:
        """Check a blob; keep it as the weights to act with next if it verifies. Whether
        it is authentic: accepted now, or an exact copy of a blob accepted before (a
        duplicate, counted apart); a refusal is counted by code."""
        digest = hashlib.sha256(blob).digest()
        if digest in self._accepted:
            self.weights_duplicates += 1
            return True
        try:
            verified = self._verifier.verify(blob)
        except WeightsRejected as error:
            log.warning("%s refused: %s", source, error)
            count_refusal(self.refusals, error.kind, error.code)
            return False
        self._accepted.add(digest)
        self._pending = (verified, path)
        return True

    def _check_relay(self) -> None:
        """Look at the relayed weights in the mailbox if the file changed: note their
        version (the reference path) and take them if newer than any checked. A version
        the edge link brought already is no news; any other is checked, and refused (and
        counted) if forged, another edge's, or not newer than those held (a replay). A
        version the authority left out because the edge link brought it counts for the
        reference path too (its notice)."""
        self._relayed_version = max(self._relayed_version, self._receipts.relay_notice_version())
        path = self._mailbox.weights_path
        try:
            stat = os.stat(path)
            signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if signature == self._signature:
                return
            blob = path.read_bytes()
        except OSError as error:
            if not isinstance(error, FileNotFoundError):
                log.warning("weights in %s: %s; keeping the weights held", path, error)
            return
        self._signature = signature  # one look (and at most one refusal) per file
        version = signed_weights_version(blob)
        known = version in self._published  # the edge link brought it first: nothing new
        if known or self._accept(blob, RELAY, f"weights in {path}"):
            self._relayed_version = max(self._relayed_version, version)

    def _act_with_newest(self) -> None:
        """Load the newest checked weights, if newer than those held."""
        if self._pending is None:
            return
        verified, path = self._pending
        self._pending = None
        if verified.version <= self._agent.weights_version:
            return
        try:
            payload = decode_weights(verified.payload)
            self._agent.load_weights(payload.weights, verified.version)
        except (ValueError, RuntimeError, KeyError) as error:  # DecodeError too
            log.warning("weights version %d: %s; keeping the weights held", verified.version, error)
            return
        self.versions_loaded.append(verified.version)
        self.loaded_from[path] += 1

    def weights_age(self, slot: int) -> WeightsAge | None:
        """The age of the weights the decision in `slot` used, and of the relayed ones."""
        version = self._agent.weights_version
        if version < 0:
            return None
        relayed = self._relayed_acting
        return WeightsAge(
            self._age(version, slot),
            self._behind(version, slot),
            self._age(relayed, slot) if relayed >= 0 else -1,
            self._behind(relayed, slot) if relayed >= 0 else -1,
        )

    def _age(self, version: int, slot: int) -> int:
        published = self._published.get(version)
        return -1 if published is None else max(0, slot - published)

    def _behind(self, version: int, slot: int) -> int:
        return sum(v > version and s <= slot for v, s in self._published.items())

    # -- deciding -----------------------------------------------------------------------

    def decide(self, observation: TerminalObservation, slot: int, task_id: int) -> int:
        window = slot // self._agent.config.refresh_slots
        new_window = window != self._window
        if new_window or self._agent.weights_version < 0 or self._relayed_acting < 0:
            self._window = window
            self._check_relay()
            if new_window or self._relayed_acting < 0:  # what a relay-only terminal holds
                self._relayed_acting = self._relayed_version
        if new_window or self._agent.weights_version < 0:
            self._act_with_newest()
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
            "weights_loaded_from": self.loaded_from,
            "weights_duplicates": self.weights_duplicates,
            "hidden": self._agent.config.hidden,
            "lstm_hidden": self._agent.config.lstm_hidden,
            "uploads": self._poster.uploads,
            "posted": self._poster.posted,
            "faults_posted": self._poster.faults_posted,
            "next_sequence": self._sealer.next_sequence,
            "refusals": self.refusals,
            "relay_outbox": None if self._relay is None else self._relay.summary(),
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
