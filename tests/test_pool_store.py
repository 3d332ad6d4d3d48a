"""The durable pool: commits survive restarts and SIGKILL; recovery reports what it dropped."""

import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from fl_crb.federation.pool_store import DurablePool
from fl_crb.learn.pool import Trajectory

CAPACITY, EDGES, HISTORY_SLOTS, LENGTH = 64, 2, 3, 4
REPO = Path(__file__).resolve().parents[1]


def trajectory(tag: int) -> Trajectory:
    """A valid trajectory whose floats all derive from `tag`, so it can be recognised."""
    n, c, e = LENGTH, HISTORY_SLOTS, EDGES
    states = np.arange(n + 1, dtype=np.float32)[:, None] + np.float32(tag)
    loads = np.broadcast_to(states[:, :, None], (n + 1, c, e)) / 1000
    return Trajectory(
        scalars=np.repeat(states[:n], 3 + e, axis=1),
        load=np.ascontiguousarray(loads[:n]),
        action=np.arange(n) % (1 + e),
        reward=np.full(n, -float(tag % 37), np.float32),
        next_scalars=np.repeat(states[1:], 3 + e, axis=1),
        next_load=np.ascontiguousarray(loads[1:]),
        done=np.arange(n) == n - 1,
    )


def tags_in(pool: DurablePool) -> list[int]:
    """Tags of the stored trajectories, oldest first."""
    state = pool.pool.state_dict()
    cursor, size = int(state["cursor"]), int(state["size"])
    order = np.roll(np.arange(size), -cursor) if size == pool.pool.capacity else np.arange(size)
    return [round(float(state["scalars"][slot, 0, 0])) for slot in order]


def open_store(directory, **kwargs) -> DurablePool:
    return DurablePool(directory, CAPACITY, EDGES, HISTORY_SLOTS, LENGTH, **kwargs)


def test_committed_batches_and_sequences_survive_reopening(tmp_path):
    store = open_store(tmp_path)
    store.add([trajectory(i) for i in range(5)], {"t1": 5})
    store.add([trajectory(i) for i in range(5, 8)], {"t1": 5, "t2": 3})
    store.close()
    reopened = open_store(tmp_path)
    assert tags_in(reopened) == list(range(8))
    assert reopened.sequences == {"t1": 5, "t2": 3}
    assert reopened.accepted_total == 8
    assert reopened.recovery.trajectories_replayed == 8
    assert reopened.recovery.uncommitted_records == reopened.recovery.torn_tail_bytes == 0


def test_familiarity_counts_are_persisted_by_journaled_draws(tmp_path):
    store = open_store(tmp_path)
    store.add([trajectory(i) for i in range(20)], {})
    rng = np.random.default_rng(0)
    for _ in range(10):
        store.sample(4, rng)
    store.add([trajectory(20)], {})
    expected = store.pool.sample_counts()
    assert expected.sum() == 3 * 21 + 40
    reopened = open_store(tmp_path)
    np.testing.assert_array_equal(reopened.pool.sample_counts(), expected)
    np.testing.assert_allclose(reopened.pool.probabilities(), store.pool.probabilities())
    assert reopened.recovery.draws_replayed == 10


def test_uncommitted_records_and_a_torn_tail_are_truncated_and_reported(tmp_path):
    store = open_store(tmp_path)
    store.add([trajectory(i) for i in range(3)], {"t1": 1})
    committed = store.journal_bytes
    store.close()
    draw = np.array([0, 2], "<i8").tobytes()  # a complete draw record past the commit point
    record = struct.pack("<IIB", len(draw), zlib.crc32(b"\x02" + draw), 2) + draw
    with open(tmp_path / "journal-0.log", "ab") as journal:
        journal.write(record + b"\x40\x00\x00\x00partial")  # then a record cut off mid-write
    reopened = open_store(tmp_path)
    assert reopened.recovery.uncommitted_records == 1
    assert reopened.recovery.torn_tail_bytes == 11
    assert (tmp_path / "journal-0.log").stat().st_size == committed
    assert tags_in(reopened) == [0, 1, 2]
    assert list(reopened.pool.sample_counts()) == [3, 3, 3]


def test_corruption_inside_the_committed_journal_raises_with_the_offset(tmp_path):
    store = open_store(tmp_path)
    store.add([trajectory(0), trajectory(1)], {})
    store.close()
    journal = tmp_path / "journal-0.log"
    data = bytearray(journal.read_bytes())
    data[-5] ^= 0xFF
    journal.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"record at byte \d+: checksum mismatch"):
        open_store(tmp_path)


def test_checkpoint_starts_a_new_generation_and_removes_stale_files(tmp_path):
    store = open_store(tmp_path, checkpoint_bytes=3000)
    for i in range(0, 12, 3):
        store.add([trajectory(j) for j in range(i, i + 3)], {"t1": i})
    assert store.recovery.generation == 0 and store.journal_bytes < 3000
    generation = json.loads((tmp_path / "commit.json").read_text())["generation"]
    assert generation >= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "commit.json",
        f"journal-{generation}.log",
        f"snapshot-{generation}.npz",
    ]
    (tmp_path / f"journal-{generation + 1}.log").write_bytes(b"")  # an interrupted checkpoint
    reopened = open_store(tmp_path)
    assert tags_in(reopened) == list(range(12))
    assert reopened.recovery.stale_files == (f"journal-{generation + 1}.log",)


def test_eviction_order_survives_reopening(tmp_path):
    store = open_store(tmp_path, checkpoint_bytes=20_000)
    for i in range(0, 100, 10):
        store.add([trajectory(j) for j in range(i, i + 10)], {})
    reopened = open_store(tmp_path)
    assert tags_in(reopened) == tags_in(store) == list(range(36, 100))
    assert reopened.accepted_total == 100


def test_mismatched_settings_and_shapes_are_refused(tmp_path):
    open_store(tmp_path).close()
    with pytest.raises(ValueError, match="edges = 2, this pool was asked for 3"):
        DurablePool(tmp_path, CAPACITY, 3, HISTORY_SLOTS, LENGTH)
    other = Trajectory(**{**trajectory(0).__dict__, "load": np.zeros((LENGTH, 5, EDGES))})
    with pytest.raises(ValueError, match=r"load shape \(4, 5, 2\)"):
        open_store(tmp_path).add([other], {})


def writer(directory: str) -> None:
    """Child process: commit batches of 7 forever, printing each acknowledged batch."""
    store = open_store(directory)
    rng = np.random.default_rng(0)
    batch = 0
    while True:
        store.add([trajectory(7 * batch + i) for i in range(7)], {"t1": batch + 1})
        print(f"ack {batch}", flush=True)
        store.sample(5, rng)
        batch += 1


def test_sigkilled_writer_loses_no_acknowledged_trajectory(tmp_path):
    command = [
        sys.executable,
        "-c",
        f"from tests.test_pool_store import writer; writer({str(tmp_path)!r})",
    ]
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    acknowledged = -1
    try:
        for line in child.stdout:
            acknowledged = int(line.split()[1])
            if acknowledged == 29:
                break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert acknowledged == 29, "the writer stopped before 30 acknowledged batches"
    store = open_store(tmp_path)
    tags = tags_in(store)
    # Every acknowledged batch is there (the pool keeps the newest 64 of them), plus at most
    # the batches committed after the last acknowledgement was read.
    newest = 7 * (acknowledged + 1) - 1
    assert tags[-1] >= newest and tags == list(range(tags[-1] - len(tags) + 1, tags[-1] + 1))
    assert len(tags) == CAPACITY
    assert store.accepted_total == tags[-1] + 1
    assert store.sequences["t1"] == store.accepted_total // 7
    # The recovered pool is usable: it takes the next batch and survives another reopening.
    store.add([trajectory(10_000)], store.sequences)
    assert tags_in(open_store(tmp_path))[-1] == 10_000


def test_unreadable_commit_record_is_named(tmp_path):
    open_store(tmp_path).close()
    (tmp_path / "commit.json").write_text('{"format": "fl-crb-pool-store-1"}')
    with pytest.raises(ValueError, match=r"commit\.json: not a pool store commit record"):
        open_store(tmp_path)
