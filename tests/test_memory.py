"""`fl_crb.runtime.memory`: PSS, USS and RSS of real forked processes, and tree discovery.

Each test forks copies of the test process whose memory it controls: a child that
writes N MiB of its own has N MiB more of private memory; a child that only reads a
buffer its parent wrote before the fork shares its pages, so the pair's PSS counts the
buffer once and their summed RSS twice, while the child's distinct pages (what it would
take alone) hold the whole buffer. Margins are generous (the interpreter itself touches
pages as it runs) but far smaller than the effect asserted.
"""

from __future__ import annotations

import array
import os
import signal
import time

import pytest

from fl_crb.runtime import memory
from fl_crb.runtime.memory import (
    MemoryReadError,
    PeakSampler,
    ProcessMemory,
    descendants,
    parse_smaps_rollup,
    process_tree,
    read_memory,
    resident_frames,
    tree_memory,
    tree_pss_bytes,
    tree_unique_bytes,
)

MiB = 1024 * 1024
_kept: list[bytes] = []
"""What a forked child allocates stays referenced here (in its own copy of the module)."""


class Child:
    """A forked copy of this process that runs `steps` one at a time, each when told
    (`step()`, which returns what the step returned), then waits to be ended (`end()`)."""

    def __init__(self, *steps) -> None:
        go_read, self._go = os.pipe()
        self._done, done_write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns into pytest
            try:
                os.close(self._go)  # else its own copy would keep the pipe open
                os.close(self._done)
                for step in steps:
                    os.read(go_read, 1)
                    os.write(done_write, f"{step()}\n".encode())
                os.read(go_read, 1)
            finally:
                os._exit(0)
        os.close(go_read)
        os.close(done_write)

    def step(self) -> str:
        os.write(self._go, b".")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = os.read(self._done, 64)
            if not chunk:
                raise RuntimeError(f"forked child {self.pid} ended during a step")
            reply += chunk
        return reply.decode().strip()

    def end(self) -> None:
        os.close(self._go)  # the child's last read returns: it exits
        os.close(self._done)
        os.waitpid(self.pid, 0)


def touched(size_bytes: int) -> bytes:
    """`size_bytes` of memory, every page written (bytes(n) would leave them unmapped)."""
    return b"\x01" * size_bytes


def allocate(size_bytes: int):
    def step() -> str:
        _kept.append(touched(size_bytes))
        return "allocated"

    return step


def idle() -> str:
    return "idle"


def measure(pid: int) -> ProcessMemory:
    found = read_memory(pid)
    assert found is not None, f"process {pid} should be alive"
    return found


ROLLUP = """\
56514b250000-7fffeb9b8000 ---p 00000000 00:00 0                          [rollup]
Rss:                1760 kB
Pss:                 328 kB
Pss_Anon:            112 kB
Pss_File:            216 kB
Shared_Clean:       1612 kB
Private_Clean:        36 kB
Private_Dirty:       112 kB
Swap:                  0 kB
"""


def test_smaps_rollup_fields_are_read_in_bytes():
    assert parse_smaps_rollup(ROLLUP) == {
        "Rss": 1760 * 1024,
        "Pss": 328 * 1024,
        "Pss_Anon": 112 * 1024,
        "Pss_File": 216 * 1024,
        "Shared_Clean": 1612 * 1024,
        "Private_Clean": 36 * 1024,
        "Private_Dirty": 112 * 1024,
        "Swap": 0,
    }


def test_a_process_memory_is_read_from_its_smaps_rollup(tmp_path, monkeypatch):
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "smaps_rollup").write_text(ROLLUP)
    (tmp_path / "42" / "cmdline").write_bytes(b"/usr/bin/python3\0-m\0fl_crb.x\0")
    monkeypatch.setattr(memory, "PROC", tmp_path)
    assert read_memory(42) == ProcessMemory(
        pid=42,
        command="python3 -m fl_crb.x",
        pss_bytes=328 * 1024,
        uss_bytes=(36 + 112) * 1024,
        rss_bytes=1760 * 1024,
        pss_anon_bytes=112 * 1024,
        pss_file_bytes=216 * 1024,
    )


def test_pss_lies_between_uss_and_rss():
    here = measure(os.getpid())
    assert here.uss_bytes <= here.pss_bytes <= here.rss_bytes
    assert here.pss_bytes == here.pss_anon_bytes + here.pss_file_bytes  # no shmem here


def test_a_child_writing_n_mib_grows_its_private_memory_by_n_mib():
    size = 64 * MiB
    child = Child(allocate(size))
    try:
        before = measure(child.pid)
        assert child.step() == "allocated"
        after = measure(child.pid)
    finally:
        child.end()
    assert after.uss_bytes - before.uss_bytes >= size
    assert after.pss_bytes - before.pss_bytes >= size  # private pages count in full
    assert after.rss_bytes - before.rss_bytes >= size
    assert after.uss_bytes - before.uss_bytes < 2 * size  # and not more than once


def test_a_buffer_shared_by_fork_counts_once_in_pss_and_twice_in_summed_rss():
    size = 128 * MiB
    buffer = touched(size)  # written before the fork: the child shares its pages
    try:
        child = Child(idle)
        try:
            assert child.step() == "idle"
            parent, forked = measure(os.getpid()), measure(child.pid)
        finally:
            child.end()
    finally:
        del buffer
    summed_rss = parent.rss_bytes + forked.rss_bytes
    summed_pss = parent.pss_bytes + forked.pss_bytes
    assert forked.rss_bytes >= size  # RSS charges the whole buffer to each...
    assert summed_rss >= 2 * size
    assert summed_pss >= size  # ...PSS charges it once between them
    assert summed_rss - summed_pss >= 0.9 * size
    assert forked.pss_bytes >= 0.45 * size  # the child's half
    assert forked.uss_bytes < 0.25 * size  # and none of it is the child's own


@pytest.mark.skipif(os.geteuid() != 0, reason="page frame numbers are visible to root only")
def test_distinct_pages_count_a_shared_buffer_once_and_in_full():
    size = 128 * MiB
    buffer = touched(size)
    try:
        child = Child(idle)
        try:
            child.step()
            parent_frames, child_frames = resident_frames(os.getpid()), resident_frames(child.pid)
            forked = measure(child.pid)
            child_alone = tree_unique_bytes([child.pid])
            sampler = PeakSampler([child.pid], count_unique=True)
            sampler.sample()
        finally:
            child.end()
    finally:
        del buffer
    page = memory.PAGE_BYTES
    assert len(child_frames) * page >= size  # alone, the child would hold the whole buffer
    assert child_alone >= forked.pss_bytes + 0.4 * size  # PSS charges it only its half
    assert len(child_frames - parent_frames) * page < 0.25 * size  # the pair: one copy
    assert sampler.peak_unique_bytes == pytest.approx(child_alone, rel=0.05)


def test_page_frames_are_read_from_pagemap_and_hidden_ones_refused(tmp_path, monkeypatch):
    page = memory.PAGE_BYTES
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "maps").write_text(
        f"{page:08x}-{4 * page:08x} r--p 00000000 00:00 0\n"
        "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]\n"
    )
    present = 1 << 63

    def pagemap(*entries: int) -> None:  # entries for pages 1, 2, 3 (page 0 unmapped)
        (tmp_path / "42" / "pagemap").write_bytes(array.array("Q", [0, *entries]).tobytes())

    monkeypatch.setattr(memory, "PROC", tmp_path)
    pagemap(present | 7, 0, present | 7)  # page 2 not resident; 1 and 3 share frame 7
    assert resident_frames(42) == {7}
    pagemap(present | 7, present | 9, (1 << 62) | 11)  # page 3 swapped out
    assert resident_frames(42) == {7, 9}
    pagemap(present, present, 0)  # what a user other than root reads
    with pytest.raises(MemoryReadError, match="only root"):
        resident_frames(42)
    assert resident_frames(43) == set()  # gone


def test_the_tree_holds_a_grandchild():
    def fork_grandchild() -> str:
        grandchild = os.fork()
        if grandchild == 0:
            try:
                time.sleep(60)  # killed by the test long before
            finally:
                os._exit(0)
        return str(grandchild)

    child = Child(fork_grandchild)
    try:
        grandchild = int(child.step())
        try:
            assert process_tree([child.pid]) == sorted([child.pid, grandchild])
            assert {child.pid, grandchild} <= descendants([os.getpid()])
            assert memory.children(child.pid) == {grandchild}
            assert memory.children(os.getpid()) >= {child.pid}
            assert [m.pid for m in tree_memory([child.pid])] == sorted([child.pid, grandchild])
            tree = tree_memory([child.pid])
            assert tree_pss_bytes([child.pid]) == pytest.approx(
                sum(m.pss_bytes for m in tree), rel=0.2
            )
        finally:
            os.kill(grandchild, signal.SIGKILL)
    finally:
        child.end()


@pytest.mark.skipif(
    not memory._children_files_exist(), reason="this kernel has no /proc/PID/task/*/children"
)
def test_both_ways_of_finding_children_agree(monkeypatch):
    child = Child(idle)
    try:
        child.step()
        listed = descendants([os.getpid()])
        monkeypatch.setattr(memory, "_children_files_exist", lambda: False)
        assert descendants([os.getpid()]) == listed
    finally:
        child.end()


def test_a_process_gone_is_skipped_and_a_zombie_maps_nothing():
    child = Child()
    child.end()  # exited and reaped: its pid is free
    assert read_memory(child.pid) is None
    assert tree_memory([child.pid]) == []
    zombie = os.fork()
    if zombie == 0:
        os._exit(0)
    try:
        while memory.PROC.joinpath(str(zombie), "stat").read_text().split(") ")[1][0] != "Z":
            time.sleep(0.01)
        assert read_memory(zombie) is None
    finally:
        os.waitpid(zombie, 0)


def test_a_kernel_without_smaps_rollup_is_named(tmp_path, monkeypatch):
    (tmp_path / "42").mkdir()  # the process exists, its smaps_rollup does not
    monkeypatch.setattr(memory, "PROC", tmp_path)
    with pytest.raises(MemoryReadError, match=f"{tmp_path}/42/smaps_rollup does not exist"):
        read_memory(42)


def test_the_sampler_keeps_each_process_peak_and_the_peak_total():
    size = 64 * MiB

    def release() -> str:
        _kept.clear()
        return "released"

    child = Child(allocate(size), release)
    roots: list[int] = []
    sampler = PeakSampler(lambda: roots)
    try:
        assert sampler.sample() == []  # no root yet
        roots.append(child.pid)
        small = sampler.sample()[0].pss_bytes
        child.step()
        large = sampler.sample()[0].pss_bytes
        child.step()
        sampler.sample()
    finally:
        child.end()
    sampler.sample()  # the child is gone: skipped, its peak kept
    assert sampler.samples == 5
    assert large - small >= size
    assert sampler.peak_by_pid[child.pid].pss_bytes == large
    assert sampler.peak_total_pss_bytes == large
    assert [m.pid for m in sampler.at_peak_total] == [child.pid]
    assert sampler.peak_total_rss_bytes >= large
    assert sampler.peak_unique_bytes == 0  # not counted unless asked


def test_the_sampler_thread_hands_its_error_to_the_caller():
    def roots() -> list[int]:
        raise MemoryReadError("/proc/1/smaps_rollup does not exist")

    with pytest.raises(MemoryReadError, match="smaps_rollup"):  # noqa: SIM117
        with PeakSampler(roots, period_s=0.01):
            time.sleep(0.2)
