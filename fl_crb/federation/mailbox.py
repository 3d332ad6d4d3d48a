"""The bridge between per-message ClientApp handlers and the long-lived parties: files.

Flower starts a fresh ClientApp process for every message, while a terminal's agent and
an edge's learner live for the whole run. They meet in a per-node mailbox directory
(node config `mailbox`, or the run config's `mailbox-root`/<node name>):

    terminal MAILBOX/
      outbox/<post id, 12 digits>.upl   sealed uploads, posted by the terminal party
      state.json                        the party's next post id and upload sequence number
      handler.json                      the collect handler's state: the latest ack and
                                        weights accepted, refusals by kind and code
      weights.bin                       the newest weights delivered to it, as the edge's
                                        signed envelope (`message_auth`; handler writes)
    edge MAILBOX/
      inbox/<round, 8 digits>.bat       sealed batches to train on (handler writes)
      state.json                        the learner's latest signed weights version and
                                        batch sequence number, refusals (learner writes)
      weights.bin                       the learner's newest signed weights (learner publishes)
      learner.pt, learner.previous.pt   the learner's checkpoint and the one before it
                                        (`edge_learner_service.LearnerCheckpoint`)
      relay/<terminal>/<post id>[.<copy>].upl
                                        relay uplink: the sealed uploads its terminals
                                        handed the edge server, kept until acknowledged
                                        (`RelayStore`; the edge server writes, the train
                                        handler carries them and deletes acknowledged ones)
      relay-acks.json                   the authority's newest acknowledgement for each of
                                        those terminals (train handler writes, edge server
                                        passes it on)

Every write is atomic (`fl_crb.files.write_atomically`: a temporary file in the same
directory, fsync, rename), so a reader sees a whole file or the previous one, never a
torn one. An upload leaves the
outbox only once the authority acknowledges it: `collect` replies with the pending
uploads and their post ids, and a LATER `collect` carries the authority's cumulative,
authenticated acknowledgement ("every post id up to P is processed"), which deletes
them. A lost reply therefore loses nothing: the uploads are sent again next round.

`weights.bin` holds a signed weights envelope (`message_auth`): its version is a u64
big-endian after the header's version byte, run id and edge name, read here without
the cryptography package (`signed_weights_version`); `weights_version` reads the version
of the bare `serialization` format inside.

With the relay uplink a terminal's outbox is the same, but no handler of its own serves
it: the terminal party hands each upload to its edge server (`fl_crb.federation.relay`),
which keeps it in its `RelayStore`; the edge's `train` reply carries the store to the
authority, and the acknowledgements come back in the next `train` and on to the terminal,
which checks them (state in its handler.json) and only then deletes from its outbox.

Only the standard library (and `fl_crb.files`, which imports nothing else) is imported:
ClientApp handlers use this module.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path

from fl_crb.files import write_atomically

WEIGHTS_FILE = "weights.bin"
_WEIGHTS_VERSION = struct.Struct("<BBQ")
"""format version u8, flags u8, weights version u64: the head of `serialization`'s weights."""
_COUNT = struct.Struct("<I")
FAULT_KINDS = ("tamper", "replay", "malformed", "impersonate")
"""Faults a test can inject into a terminal's uploads (see `UploadPoster`)."""
HANDLER_STATE = "handler.json"
_SIGNED_HEAD = 1 + 16 + 1
"""Envelope version byte, run id and edge-name length: what precedes the edge's name."""


def frame(blobs: Sequence[bytes]) -> bytes:
    """Several byte strings as one: u32 count, then u32 length + bytes for each."""
    parts = [_COUNT.pack(len(blobs))]
    for blob in blobs:
        parts += [_COUNT.pack(len(blob)), bytes(blob)]
    return b"".join(parts)


def unframe(data: bytes, what: str) -> list[bytes]:
    """The byte strings `frame` joined; `what` names the payload in errors."""
    data = memoryview(bytes(data))
    if len(data) < _COUNT.size:
        raise ValueError(f"{what}: {len(data)} bytes, too short for a frame count")
    (count,) = _COUNT.unpack_from(data)
    offset, blobs = _COUNT.size, []
    for index in range(count):
        if offset + _COUNT.size > len(data):
            raise ValueError(f"{what}: truncated before the length of item {index} of {count}")
        (length,) = _COUNT.unpack_from(data, offset)
        offset += _COUNT.size
        if offset + length > len(data):
            raise ValueError(
                f"{what}: item {index} claims {length} bytes, {len(data) - offset} left"
            )
        blobs.append(bytes(data[offset : offset + length]))
        offset += length
    if offset != len(data):
        raise ValueError(f"{what}: {len(data) - offset} bytes left after {count} items")
    return blobs


def weights_version(data: bytes | None) -> int:
    """Version of serialized weights, −1 for none (no file, or too short to carry one)."""
    if data is None or len(data) < _WEIGHTS_VERSION.size:
        return -1
    return int(_WEIGHTS_VERSION.unpack_from(data)[2])


def signed_weights_version(envelope: bytes | None) -> int:
    """Version of a signed weights envelope (`message_auth.WeightsSigner`), −1 for none."""
    if envelope is None or len(envelope) < _SIGNED_HEAD:
        return -1
    start = _SIGNED_HEAD + envelope[_SIGNED_HEAD - 1]
    if len(envelope) < start + 8:
        return -1
    return int.from_bytes(envelope[start : start + 8], "big")


def read_state(path: Path) -> dict:
    """A JSON state file's content, {} when there is none yet."""
    data = _read(Path(path))
    return json.loads(data) if data else {}


def count_refusal(refusals: dict, kind: str, code: str) -> None:
    """Add one refusal of `kind` ("weights", "batch", "ack", ...) for reason `code`."""
    by_code = refusals.setdefault(kind, {})
    by_code[code] = by_code.get(code, 0) + 1


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class TerminalMailbox:
    """A terminal's mailbox: outbox of sealed uploads, state, delivered weights."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.outbox = self.directory / "outbox"
        self.outbox.mkdir(parents=True, exist_ok=True)
        self.weights_path = self.directory / WEIGHTS_FILE

    # -- the terminal party's side -----------------------------------------------------------

    def load_state(self) -> dict[str, int]:
        """The party's counters: `next_post` and `next_sequence` (1 and 1 when new)."""
        data = _read(self.directory / "state.json")
        state = json.loads(data) if data else {}
        return {
            "next_post": int(state.get("next_post", 1)),
            "next_sequence": int(state.get("next_sequence", 1)),
        }

    def post(self, envelope: bytes, post_id: int, next_sequence: int) -> None:
        """Put one upload in the outbox under `post_id`, then record the counters."""
        write_atomically(self.outbox / f"{post_id:012d}.upl", envelope)
        state = {"next_post": post_id + 1, "next_sequence": next_sequence}
        write_atomically(self.directory / "state.json", json.dumps(state).encode())

    # -- the ClientApp handler's side --------------------------------------------------------

    def pending(self, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` unacknowledged uploads, oldest first, with their post ids."""
        names = sorted(p.name for p in self.outbox.glob("*.upl"))[:limit]
        found = []
        for name in names:
            data = _read(self.outbox / name)
            if data is not None:
                found.append((int(name[: -len(".upl")]), data))
        return found

    def acknowledge(self, through_post: int) -> int:
        """Delete every upload with a post id up to `through_post`; returns how many."""
        deleted = 0
        for path in self.outbox.glob("*.upl"):
            if int(path.name[: -len(".upl")]) <= through_post:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    deleted += 1
        return deleted

    def backlog(self) -> int:
        """Uploads waiting in the outbox."""
        return sum(1 for _ in self.outbox.glob("*.upl"))

    def deliver_weights(self, envelope: bytes) -> None:
        """Store a signed weights envelope the handler accepted; the terminal party checks
        it again and acts with it."""
        write_atomically(self.weights_path, envelope)

    def held_weights_version(self) -> int:
        """Version of the delivered weights, −1 if none were delivered."""
        return signed_weights_version(_read(self.weights_path))

    def handler_state(self) -> dict:
        """The collect handler's state: `ack_sequence`, `ack`, `weights_version` (latest
        accepted; 0, 0 and −1 when new) and `refusals` ({kind: {code: count}})."""
        state = read_state(self.directory / HANDLER_STATE)
        return {
            "ack_sequence": int(state.get("ack_sequence", 0)),
            "ack": int(state.get("ack", 0)),
            "weights_version": int(state.get("weights_version", -1)),
            "refusals": dict(state.get("refusals", {})),
        }

    def save_handler_state(self, state: dict) -> None:
        """Record the collect handler's state (`handler_state`'s fields)."""
        write_atomically(self.directory / HANDLER_STATE, json.dumps(state).encode())


class EdgeMailbox:
    """An edge's mailbox: inbox of batches to train on, published weights."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.inbox = self.directory / "inbox"
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.weights_path = self.directory / WEIGHTS_FILE
        self.checkpoint_path = self.directory / "learner.pt"
        """The learner's newest checkpoint (the learner writes it)."""
        self.previous_checkpoint_path = self.directory / "learner.previous.pt"
        """The checkpoint before it, kept in case the newest cannot be read."""

    def drop_batches(self, round_number: int, data: bytes) -> None:
        """Leave a round's framed batches for the learner (handler side)."""
        write_atomically(self.inbox / f"{round_number:08d}.bat", data)

    def waiting(self) -> list[Path]:
        """Batch files not yet trained on, oldest round first (learner side)."""
        return sorted(self.inbox.glob("*.bat"))

    def publish_weights(self, envelope: bytes) -> None:
        """Make new signed weights the ones the next `train` reply carries (learner side)."""
        write_atomically(self.weights_path, envelope)

    def published_weights(self) -> bytes | None:
        """The newest published signed weights, None before the learner published any."""
        return _read(self.weights_path)

    def learner_state(self) -> dict:
        """The learner's state: `weights_version` (the latest signed, −1 when new),
        `batch_sequence` (the latest batch accepted, 0 when new) and `refusals`."""
        state = read_state(self.directory / "state.json")
        return {
            "weights_version": int(state.get("weights_version", -1)),
            "batch_sequence": int(state.get("batch_sequence", 0)),
            "refusals": dict(state.get("refusals", {})),
        }

    def save_learner_state(self, state: dict) -> None:
        """Record the learner's state (`learner_state`'s fields)."""
        write_atomically(self.directory / "state.json", json.dumps(state).encode())


_POST_DIGITS = 12


def frame_relayed(items: Sequence[tuple[str, int, bytes]]) -> bytes:
    """Relayed uploads (terminal, post id, envelope) as one byte string (`frame` of frames)."""
    return frame([frame([name.encode(), str(post).encode(), blob]) for name, post, blob in items])


def unframe_relayed(data: bytes, what: str) -> list[tuple[str, int, bytes]]:
    """The (terminal, post id, envelope) items `frame_relayed` joined; ValueError if broken."""
    items = []
    for index, item in enumerate(unframe(data, what)):
        parts = unframe(item, f"{what}: item {index}")
        if len(parts) != 3 or not parts[1].isdigit():
            raise ValueError(f"{what}: item {index} is not (terminal, post id, envelope)")
        items.append((parts[0].decode("utf-8", "replace"), int(parts[1]), parts[2]))
    return items


class RelayStore:
    """An edge's store of the sealed uploads its terminals handed it (relay uplink), kept
    until the authority acknowledges them, and the authority's newest acknowledgement for
    each of those terminals. Written by the edge server (uploads) and the train handler
    (acknowledgements, deletions); every write atomic, so an edge server killed at any
    point loses nothing it answered STORED for."""

    ACKS_FILE = "relay-acks.json"

    def __init__(self, mailbox_directory: str | Path):
        self.directory = Path(mailbox_directory) / "relay"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.acks_path = Path(mailbox_directory) / self.ACKS_FILE

    def keep(self, terminal: str, post_id: int, envelope: bytes, copy: int = 0) -> bool:
        """Keep one upload of `terminal` durably (`copy` > 0: test faults, a second copy);
        False when it needs no keeping: acknowledged already, or kept before."""
        if post_id <= self.acks().get(terminal, (0, b""))[0]:
            return False
        folder = self.directory / terminal
        folder.mkdir(exist_ok=True)
        suffix = f".{copy}" if copy else ""
        path = folder / f"{post_id:0{_POST_DIGITS}d}{suffix}.upl"
        if path.exists():
            return False
        write_atomically(path, envelope)
        return True

    def holds(self, terminal: str, post_id: int) -> bool:
        """Whether the upload `post_id` of `terminal` is kept."""
        return (self.directory / terminal / f"{post_id:0{_POST_DIGITS}d}.upl").exists()

    def pending(self, limit: int) -> list[tuple[str, int, bytes]]:
        """Up to `limit` uploads kept, as (terminal, post id, envelope), in post id order
        (each terminal's own order; the terminals interleaved)."""
        found = []
        for path in self.directory.glob("*/*.upl"):
            found.append((int(path.name[:_POST_DIGITS]), path.parent.name, path.name, path))
        items = []
        for post, terminal, _, path in sorted(found)[:limit]:
            data = _read(path)
            if data is not None:
                items.append((terminal, post, data))
        return items

    def backlog(self) -> int:
        """Uploads kept."""
        return sum(1 for _ in self.directory.glob("*/*.upl"))

    def discard(self, terminal: str, post_id: int) -> None:
        """Delete every copy of upload `post_id` of `terminal` (the authority refused it)."""
        for path in (self.directory / terminal).glob(f"{post_id:0{_POST_DIGITS}d}*.upl"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def acks(self) -> dict[str, tuple[int, bytes]]:
        """Per terminal, the newest acknowledgement: (post id it covers, its envelope)."""
        data = read_state(self.acks_path)
        return {name: (int(ack["post"]), bytes.fromhex(ack["ack"])) for name, ack in data.items()}

    def acknowledge(self, acks: dict[str, tuple[int, bytes]]) -> int:
        """Record the authority's acknowledgements and delete every upload they cover;
        returns how many. An acknowledgement below the one held changes nothing."""
        held = self.acks()
        for name, (post, blob) in acks.items():
            if post >= held.get(name, (0, b""))[0]:
                held[name] = (post, blob)
        data = {name: {"post": post, "ack": blob.hex()} for name, (post, blob) in held.items()}
        write_atomically(self.acks_path, json.dumps(data).encode())
        deleted = 0
        for name, (post, _) in held.items():
            for path in (self.directory / name).glob("*.upl"):
                if int(path.name[:_POST_DIGITS]) <= post:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                        deleted += 1
        return deleted


def parse_faults(text: str) -> dict[int, tuple[str, ...]]:
    """Faults "KIND@K,..." as {K: kinds}: inject them at the terminal's K-th upload (from 1).

    `impersonate` names its victim: "impersonate:t5@K"."""
    faults: dict[int, tuple[str, ...]] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        kind, _, where = entry.partition("@")
        base, _, victim = kind.partition(":")
        if (
            base not in FAULT_KINDS
            or bool(victim) != (base == "impersonate")
            or not where.isdigit()
            or int(where) < 1
        ):
            raise ValueError(
                f"upload fault {entry!r}: expected KIND@K with KIND one of {FAULT_KINDS} "
                "(impersonate with its victim: impersonate:t5@K) and K >= 1 (the terminal's "
                "K-th upload)"
            )
        faults[int(where)] = (*faults.get(int(where), ()), kind)
    return faults


def impersonated(text: str) -> str | None:
    """The terminal an "impersonate:VICTIM@K" fault names, None without one."""
    kinds = [k for ks in parse_faults(text).values() for k in ks if k.startswith("impersonate:")]
    return kinds[0].partition(":")[2] if kinds else None


class UploadPoster:
    """Posts a terminal's sealed uploads, injecting test faults as extra posts.

    Faults never replace a genuine upload, they come in addition, so the pool still gets
    every trajectory and a test can count exactly: at the K-th upload, `tamper` first
    posts a copy with its last tag byte flipped (refused: authentication), `replay`
    posts the genuine envelope a second time right after it (refused: replay),
    `malformed` posts 9 bytes that are no envelope at all (refused: malformed), and
    `impersonate:VICTIM` posts the same trajectory sealed with this terminal's own key but
    as terminal VICTIM (`impersonation`; refused: wrong-sender, as the node that delivers
    it is this terminal's, by its registered key).
    """

    def __init__(self, mailbox: TerminalMailbox, faults: str = ""):
        self.mailbox = mailbox
        self.faults = parse_faults(faults)
        state = mailbox.load_state()
        self.next_post = state["next_post"]
        self.uploads = 0
        """Genuine uploads posted by this process."""
        self.posted = 0
        """Posts of any kind (genuine and faults) by this process."""
        self.faults_posted: dict[str, int] = {}
        self.recent: list[tuple[int, bytes]] | None = None
        """When a list (relay uplink), every post since it was last emptied, as (post id,
        envelope), for the terminal party to hand to its edge at once."""

    @property
    def next_sequence(self) -> int:
        """The upload sequence number recorded for the next upload (survives a restart)."""
        return self.mailbox.load_state()["next_sequence"]

    def post(self, envelope: bytes, next_sequence: int, impersonation=None) -> None:
        """Post one genuine sealed upload (and any fault due at this upload);
        `impersonation(victim)` seals the same trajectory as `victim`."""
        self.uploads += 1
        kinds = self.faults.get(self.uploads, ())
        for kind in kinds:
            if kind.startswith("impersonate:") and impersonation is not None:
                self._post(impersonation(kind.partition(":")[2]), next_sequence, "impersonate")
        if "tamper" in kinds:
            tampered = bytearray(envelope)
            tampered[-1] ^= 0x01  # the last tag byte
            self._post(bytes(tampered), next_sequence, "tamper")
        self._post(envelope, next_sequence, None)
        if "replay" in kinds:
            self._post(envelope, next_sequence, "replay")
        if "malformed" in kinds:
            self._post(b"\x01" + os.urandom(8), next_sequence, "malformed")

    def _post(self, data: bytes, next_sequence: int, fault: str | None) -> None:
        self.mailbox.post(data, self.next_post, next_sequence)
        if self.recent is not None:
            self.recent.append((self.next_post, data))
        self.next_post += 1
        self.posted += 1
        if fault is not None:
            self.faults_posted[fault] = self.faults_posted.get(fault, 0) + 1
