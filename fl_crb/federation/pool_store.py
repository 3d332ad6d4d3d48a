"""The authority's pool made durable: an accepted trajectory survives a crash and restart.

`DurablePool` wraps `fl_crb.learn.pool.TrajectoryPool` (unchanged) with files in one
directory:

    commit.json         the commit point, replaced atomically (temp file, fsync, rename)
    snapshot-<g>.npz    the pool at the start of generation g (`TrajectoryPool.save`)
    journal-<g>.log     records appended since that snapshot

A journal record is `u32 length ‖ u32 CRC-32 ‖ u8 kind ‖ payload` (little-endian; the
checksum covers kind and payload): kind 1 adds one trajectory (payload: its float32
encoding from `serialization`), kind 2 records one familiarity draw (payload: the int64
pool slots drawn). `add` appends its batch, fsyncs the journal, then writes commit.json
with the journal's new length: a batch is accepted, and may be acknowledged, once `add`
returns. Whatever lies past the committed length on restart (a batch cut short by a
crash, down to a torn half-written record) was never acknowledged; recovery truncates it
and says how much it dropped (`RecoveryReport`). A checksum failure inside the committed
part is real corruption and raises.

Familiarity counts N are persisted, not rebuilt: `sample` journals the slots it drew,
and recovery replays adds and draws in order. Draws become durable with the next commit
(the next `add` or `commit`), so a crash may forget the draws since then; N then merely
lags by those draws.

The commit point also carries the replay guard's state (latest sequence number per
terminal, `crypto.UploadOpener.sequences()`), so that "stored" and "seen" are committed
together: a crash can neither keep an upload while forgetting its sequence number (a
replay would then be accepted twice) nor the reverse. Terminal identities appear only
there, never in the journal or snapshots: the pool's contents stay anonymous at rest.

`checkpoint` starts a new generation (snapshot + empty journal) so the journal does not
grow without bound; it happens by itself once the journal passes `checkpoint_bytes`.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fl_crb.federation.serialization import TrajectoryShape, decode_trajectory, encode_trajectory
from fl_crb.learn.pool import INITIAL_FAMILIARITY, Trajectory, TrajectoryBatch, TrajectoryPool

STORE_FORMAT = "fl-crb-pool-store-1"
"""Tag of commit.json, checked on opening."""
ADD, SAMPLE = 1, 2
_RECORD_HEADER = struct.Struct("<IIB")
_MAX_RECORD_BYTES = 1 << 26


@dataclass(frozen=True)
class RecoveryReport:
    """What opening the store found and did."""

    generation: int
    """Generation of the snapshot and journal in use."""
    trajectories_replayed: int
    """Trajectory records replayed from the journal onto the snapshot."""
    draws_replayed: int
    """Familiarity draw records replayed."""
    uncommitted_records: int
    """Complete records past the commit point, dropped (never acknowledged)."""
    torn_tail_bytes: int
    """Bytes of a partly written record at the end of the journal, dropped."""
    stale_files: tuple[str, ...]
    """Files of another generation (an interrupted checkpoint), removed."""


class DurablePool:
    """A `TrajectoryPool` whose adds and familiarity draws are journaled to `directory`."""

    def __init__(
        self,
        directory: str | Path,
        capacity: int,
        edges: int,
        history_slots: int,
        trajectory_length: int = 4,
        alpha: float = 1.0,
        checkpoint_bytes: int = 64 << 20,
    ):
        self.directory = Path(directory)
        self.checkpoint_bytes = int(checkpoint_bytes)
        self._settings = {
            "capacity": int(capacity),
            "edges": int(edges),
            "history_slots": int(history_slots),
            "trajectory_length": int(trajectory_length),
            "alpha": float(alpha),
        }
        self._shape = TrajectoryShape(trajectory_length, history_slots, edges)
        self.pool = TrajectoryPool(capacity, edges, history_slots, trajectory_length, alpha)
        """The in-memory pool; sample through `DurablePool.sample` so draws are journaled."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not (self.directory / "commit.json").exists():
            self._generation, self._accepted, self.sequences = 0, 0, {}
            (self.directory / "journal-0.log").write_bytes(b"")
            self._journal_bytes = 0
            self._write_commit()
        self.recovery = self._recover()
        """What opening found: see `RecoveryReport`."""
        self._journal = open(self._journal_path(self._generation), "ab")  # noqa: SIM115

    # -- public API ------------------------------------------------------------------------

    @property
    def accepted_total(self) -> int:
        """Trajectories ever committed to this store (the pool holds the newest `capacity`)."""
        return self._accepted

    @property
    def journal_bytes(self) -> int:
        """Committed length of the current journal."""
        return self._journal_bytes

    def add(self, trajectories: list[Trajectory], sequences: dict[str, int]) -> None:
        """Store a batch durably together with the replay guard's state, then return."""
        expected = (self._shape.length, self._shape.history_slots, self._shape.edges)
        for index, trajectory in enumerate(trajectories):
            if np.shape(trajectory.load) != expected:
                raise ValueError(
                    f"trajectory #{index} of the batch has load shape {np.shape(trajectory.load)}, "
                    f"this pool stores (n, C, E) = {expected}"
                )
        records = [encode_trajectory(t) for t in trajectories]  # validates before any change
        for start in range(0, len(trajectories), self.pool.capacity):
            chunk = trajectories[start : start + self.pool.capacity]
            self.pool.add_many(TrajectoryBatch.stack(chunk))
        for record in records:
            self._append(ADD, record)
        self._accepted += len(trajectories)
        self.commit(sequences)

    def sample(
        self, batch_size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, TrajectoryBatch]:
        """`TrajectoryPool.sample`, with the draw journaled (durable at the next commit)."""
        slots, batch = self.pool.sample(batch_size, rng)
        self._append(SAMPLE, slots.astype("<i8").tobytes())
        return slots, batch

    def commit(self, sequences: dict[str, int] | None = None) -> None:
        """Make every journaled record durable; `sequences` replaces the stored guard state."""
        if sequences is not None:
            self.sequences = dict(sequences)
        self._make_durable()
        if self._journal_bytes >= self.checkpoint_bytes:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Snapshot the pool and start an empty journal (a new generation)."""
        self._make_durable()
        old = self._generation
        self.pool.save(self._snapshot_path(old + 1))
        self._journal.close()
        self._journal_path(old + 1).write_bytes(b"")
        self._fsync_directory()
        self._generation, self._journal_bytes = old + 1, 0
        self._write_commit()
        for path in (self._snapshot_path(old), self._journal_path(old)):
            path.unlink(missing_ok=True)
        self._journal = open(self._journal_path(self._generation), "ab")  # noqa: SIM115

    def close(self) -> None:
        """Commit and close the journal."""
        self.commit()
        self._journal.close()

    # -- files -----------------------------------------------------------------------------

    def _journal_path(self, generation: int) -> Path:
        return self.directory / f"journal-{generation}.log"

    def _snapshot_path(self, generation: int) -> Path:
        return self.directory / f"snapshot-{generation}.npz"

    def _make_durable(self) -> None:
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self._journal_bytes = self._journal.tell()
        self._write_commit()

    def _append(self, kind: int, payload: bytes) -> None:
        checksum = zlib.crc32(bytes([kind]) + payload)
        self._journal.write(_RECORD_HEADER.pack(len(payload), checksum, kind) + payload)

    def _write_commit(self) -> None:
        state = {
            "format": STORE_FORMAT,
            "pool": self._settings,
            "generation": self._generation,
            "journal_bytes": self._journal_bytes,
            "accepted_total": self._accepted,
            "sequences": self.sequences,
        }
        temporary = self.directory / "commit.json.tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.directory / "commit.json")
        self._fsync_directory()

    def _fsync_directory(self) -> None:
        descriptor = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    # -- recovery --------------------------------------------------------------------------

    def _recover(self) -> RecoveryReport:
        path = self.directory / "commit.json"
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            if state.get("format") != STORE_FORMAT:
                raise ValueError(f"format {state.get('format')!r}, expected {STORE_FORMAT!r}")
            stored = {key: state["pool"][key] for key in self._settings}
            self._generation = int(state["generation"])
            self._journal_bytes = int(state["journal_bytes"])
            self._accepted = int(state["accepted_total"])
            self.sequences = {str(k): int(v) for k, v in state["sequences"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{path}: not a pool store commit record ({error!r})") from None
        for key, value in self._settings.items():
            if stored[key] != value:
                raise ValueError(
                    f"{path}: the stored pool has {key} = {stored[key]}, this pool was "
                    f"asked for {value}; open it with the settings it was created with"
                )
        if self._generation > 0:
            self.pool = TrajectoryPool.load(self._snapshot_path(self._generation))
        journal = self._journal_path(self._generation)
        data = journal.read_bytes()
        if len(data) < self._journal_bytes:
            raise ValueError(
                f"{journal}: {len(data)} bytes on disk but {self._journal_bytes} were committed; "
                "the journal lost committed records"
            )
        uncommitted, torn = self._scan_tail(data[self._journal_bytes :])
        if len(data) > self._journal_bytes:
            with open(journal, "r+b") as file:
                file.truncate(self._journal_bytes)
                os.fsync(file.fileno())
        added, draws = self._replay(journal, data[: self._journal_bytes])
        stale = []
        for candidate in sorted(self.directory.glob("*-*.*")):
            name = candidate.name
            if name.startswith(("journal-", "snapshot-")) and candidate not in (
                journal,
                self._snapshot_path(self._generation),
            ):
                candidate.unlink()
                stale.append(name)
        return RecoveryReport(self._generation, added, draws, uncommitted, torn, tuple(stale))

    @staticmethod
    def _records(data: bytes):
        """Yield (offset, kind, payload, valid) for each complete record; stop at a partial one."""
        offset = 0
        while offset + _RECORD_HEADER.size <= len(data):
            length, checksum, kind = _RECORD_HEADER.unpack_from(data, offset)
            end = offset + _RECORD_HEADER.size + length
            if length > _MAX_RECORD_BYTES or end > len(data):
                return
            payload = data[offset + _RECORD_HEADER.size : end]
            yield offset, kind, payload, zlib.crc32(bytes([kind]) + payload) == checksum
            offset = end

    def _scan_tail(self, tail: bytes) -> tuple[int, int]:
        """Complete valid records past the commit point, and the bytes after them."""
        complete, consumed = 0, 0
        for offset, _, payload, valid in self._records(tail):
            if not valid:
                break
            complete += 1
            consumed = offset + _RECORD_HEADER.size + len(payload)
        return complete, len(tail) - consumed

    def _replay(self, journal: Path, data: bytes) -> tuple[int, int]:
        counts = np.zeros(self.pool.capacity, dtype=np.int64)
        counts[: len(self.pool)] = self.pool.sample_counts()
        pending: list[Trajectory] = []
        added = draws = 0
        end = 0

        def flush() -> None:
            for start in range(0, len(pending), self.pool.capacity):
                slots = self.pool.add_many(
                    TrajectoryBatch.stack(pending[start : start + self.pool.capacity])
                )
                counts[slots] = INITIAL_FAMILIARITY
            pending.clear()

        for offset, kind, payload, valid in self._records(data):
            where = f"{journal} record at byte {offset}"
            if not valid:
                raise ValueError(f"{where}: checksum mismatch inside the committed journal")
            if kind == ADD:
                pending.append(decode_trajectory(payload, self._shape))
                added += 1
            elif kind == SAMPLE:
                flush()
                slots = np.frombuffer(payload, "<i8")
                if slots.size and (slots.min() < 0 or slots.max() >= len(self.pool)):
                    raise ValueError(f"{where}: draws slots outside the pool's {len(self.pool)}")
                counts[slots] += 1
                draws += 1
            else:
                raise ValueError(f"{where}: unknown record kind {kind}")
            end = offset + _RECORD_HEADER.size + len(payload)
        if end != len(data):
            raise ValueError(f"{journal}: the committed journal ends in a partial record")
        flush()
        state = self.pool.state_dict()
        state["sample_counts"] = counts[: len(self.pool)]
        self.pool.load_state_dict(state)
        return added, draws
