"""What a process tree costs in memory: PSS per process, read from /proc.

The project measures memory as PSS (proportional set size): each resident page counted
once in total, a page shared by k processes charged 1/k to each. Summed RSS counts a
shared page once per process that maps it, so the forked ClientApps of a SuperNode
(which share their parent's pages) and every Python process's shared libraries would
be counted again and again. RSS and USS (the private pages only) are read beside PSS
for comparison; all three come from one read of /proc/PID/smaps_rollup (Linux >= 4.14).

- `read_memory(pid)`: one process's `ProcessMemory` (None if it is gone).
- `descendants(pids)` / `process_tree(pids)`: children, grandchildren... read from
  /proc/PID/task/*/children when the kernel has it, else from every /proc/*/stat's ppid.
- `tree_memory(pids)`, `tree_pss_bytes(pids)`: every member's memory, and their PSS sum.
- `tree_unique_bytes(pids)`: the tree's resident pages each counted once, shared
  libraries in full: what it would take on a machine of its own (root only: pagemap).
- `PeakSampler`: polls a tree (whose roots may be found later) and keeps each process's
  peak PSS and the peak of the tree's total, for trees whose members come and go.

A process that vanishes between being found and being read is skipped: in a tree that
starts a process per message that is normal. A kernel without smaps_rollup, or a process
whose smaps_rollup may not be read, raises `MemoryReadError` naming the file.
Standard library only: a Raspberry Pi terminal may run it next to its party.
"""

from __future__ import annotations

import array
import functools
import resource
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
COMMAND_CHARS = 100
"""`ProcessMemory.command` keeps at most this many characters of the command line."""
PAGE_BYTES = resource.getpagesize()
_PRESENT = 1 << 63
"""A /proc/PID/pagemap entry's bit: the page is resident."""
_FRAME_MASK = (1 << 55) - 1
"""A pagemap entry's bits 0-54: the page frame number (0 unless read as root)."""
_ENTRY_BYTES = 8


class MemoryReadError(RuntimeError):
    """/proc cannot give a process's memory: no smaps_rollup, or no permission to read it."""


@dataclass(frozen=True)
class ProcessMemory:
    """One process's memory at one moment (bytes, resident pages only, swap excluded)."""

    pid: int
    command: str
    """Its command line on one line, program base name first, cut to `COMMAND_CHARS`."""
    pss_bytes: int
    """Proportional set size: private pages, plus each shared page / its sharer count."""
    uss_bytes: int
    """Unique set size: private pages only (Private_Clean + Private_Dirty)."""
    rss_bytes: int
    """Resident set size: every resident page it maps, shared ones counted in full."""
    pss_anon_bytes: int = 0
    """The anonymous part of `pss_bytes` (heap, stacks): shared only with fork relatives.
    0 where the kernel does not split PSS (before Linux 5.x's Pss_Anon)."""
    pss_file_bytes: int = 0
    """The file-backed part of `pss_bytes` (code, shared libraries, mapped files): shared
    with every process on the machine mapping the same files. 0 where not split."""


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """The fields of a smaps_rollup text, in bytes ("Pss: 328 kB" -> {"Pss": 335872})."""
    fields = {}
    for line in text.splitlines()[1:]:  # the first line is the [rollup] address range
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0]) * 1024
    return fields


def read_memory(pid: int) -> ProcessMemory | None:
    """`pid`'s memory now; None if it has exited (or is a zombie, which maps nothing)."""
    rollup = PROC / str(pid) / "smaps_rollup"
    try:
        text = rollup.read_text()
    except (FileNotFoundError, ProcessLookupError):
        # A zombie's file is listed but cannot be read; an old kernel's is not listed.
        if not rollup.exists() and (PROC / str(pid)).exists():
            raise MemoryReadError(
                f"{rollup} does not exist: this kernel has no smaps_rollup (Linux >= 4.14 "
                "has it), so PSS cannot be measured here"
            ) from None
        return None
    except PermissionError:
        raise MemoryReadError(
            f"{rollup}: permission denied; read it as the process's user or as root"
        ) from None
    fields = parse_smaps_rollup(text)
    if "Pss" not in fields:  # a zombie's, or a process exiting during the read
        return None
    return ProcessMemory(
        pid=pid,
        command=command_line(pid),
        pss_bytes=fields["Pss"],
        uss_bytes=fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
        rss_bytes=fields["Rss"],
        pss_anon_bytes=fields.get("Pss_Anon", 0),
        pss_file_bytes=fields.get("Pss_File", 0),
    )


def command_line(pid: int) -> str:
    """`pid`'s command line, program base name first, cut to `COMMAND_CHARS` ("" if gone)."""
    try:
        argv = (PROC / str(pid) / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return ""
    words = [word.decode(errors="replace") for word in argv if word]
    if not words:  # a kernel thread or a zombie: its name only
        try:
            return (PROC / str(pid) / "comm").read_text().strip()
        except OSError:
            return ""
    words[0] = words[0].rsplit("/", 1)[-1]
    return " ".join(" ".join(words).split())[:COMMAND_CHARS]  # one line


@functools.cache
def _children_files_exist() -> bool:
    """Whether this kernel lists children in /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN)."""
    return any((PROC / "self" / "task").glob("*/children"))


def children(pid: int) -> set[int]:
    """The live children of `pid` (empty if it is gone)."""
    if _children_files_exist():
        found: set[int] = set()
        for listing in (PROC / str(pid) / "task").glob("*/children"):
            try:
                found |= {int(child) for child in listing.read_text().split()}
            except OSError:
                continue  # the thread (or the process) ended
        return found
    return {child for child, parent in parent_pids().items() if parent == pid}


def parent_pids() -> dict[int, int]:
    """pid -> parent pid of every process, from each /proc/PID/stat."""
    parents = {}
    for stat in PROC.glob("[0-9]*/stat"):
        try:
            # The command name (in parentheses) may hold spaces: split after its last ")".
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone between the listing and the read
    return parents


def descendants(pids: Iterable[int]) -> set[int]:
    """Every process below `pids` (children, grandchildren...), `pids` themselves excluded."""
    roots = set(pids)
    if _children_files_exist():
        below_of = children
    else:
        parents = parent_pids()  # one scan of /proc for the whole tree
        by_parent: dict[int, set[int]] = {}
        for child, parent in parents.items():
            by_parent.setdefault(parent, set()).add(child)

        def below_of(pid: int) -> set[int]:
            return by_parent.get(pid, set())

    found: set[int] = set()
    frontier = roots
    while frontier:
        frontier = {child for pid in frontier for child in below_of(pid)} - found - roots
        found |= frontier
    return found


def process_tree(pids: Iterable[int]) -> list[int]:
    """`pids` and all their descendants, sorted, each once."""
    roots = set(pids)
    return sorted(roots | descendants(roots))


def tree_memory(pids: Iterable[int]) -> list[ProcessMemory]:
    """The memory of `pids` and their descendants now; processes gone are left out."""
    return [memory for pid in process_tree(pids) if (memory := read_memory(pid)) is not None]


def tree_pss_bytes(pids: Iterable[int]) -> int:
    """The PSS of `pids` and their descendants, summed: what the tree costs."""
    return sum(memory.pss_bytes for memory in tree_memory(pids))


def tree_unique_bytes(pids: Iterable[int]) -> int:
    """The resident pages of `pids` and their descendants, each counted once (root only).

    What the tree would take on a machine of its own. Its PSS is less wherever it shares
    pages with processes outside it: every Python process on the machine maps the same
    interpreter and libraries, and PSS charges the tree only its share of those. Read
    from /proc/PID/pagemap, whose page frame numbers only root (CAP_SYS_ADMIN) may see:
    anyone else gets `MemoryReadError`.
    """
    return _unique_bytes(process_tree(pids))


def _unique_bytes(members: Iterable[int]) -> int:
    """The distinct resident pages of exactly `members`, in bytes."""
    frames: set[int] = set()
    for pid in members:
        frames |= resident_frames(pid)
    return len(frames) * PAGE_BYTES


def resident_frames(pid: int) -> set[int]:
    """The page frame numbers of `pid`'s resident pages (empty if it is gone)."""
    pagemap = PROC / str(pid) / "pagemap"
    frames: set[int] = set()
    present = 0
    try:
        ranges = (PROC / str(pid) / "maps").read_text().splitlines()
        with open(pagemap, "rb", buffering=0) as entries_file:
            for line in ranges:
                if line.endswith("[vsyscall]"):  # the kernel's page, outside pagemap
                    continue
                start, end = (int(bound, 16) for bound in line.split(maxsplit=1)[0].split("-"))
                entries_file.seek(start // PAGE_BYTES * _ENTRY_BYTES)
                pages = (end - start) // PAGE_BYTES
                entries = array.array("Q", entries_file.read(pages * _ENTRY_BYTES))
                resident = [entry for entry in entries if entry & _PRESENT]
                present += len(resident)
                frames.update(entry & _FRAME_MASK for entry in resident)
    except PermissionError:
        raise MemoryReadError(f"{pagemap}: permission denied; read it as root") from None
    except (FileNotFoundError, ProcessLookupError):
        return set()
    if present and frames == {0}:
        raise MemoryReadError(
            f"{pagemap} hides its page frame numbers (all read as 0): only root "
            "(CAP_SYS_ADMIN) sees them; run as root"
        )
    return frames


class PeakSampler:
    """Polls a process tree every `period_s` and keeps the peaks.

    `roots` gives the tree's top processes at each poll (a callable, so that roots found
    or started later join the tree); their descendants are found at each poll too. With
    `count_unique` each poll also counts the tree's distinct resident pages
    (`tree_unique_bytes`: root only; about 10 ms per Python process on a desktop CPU).
    Use as a context manager (a polling thread), or call `sample()` yourself.
    """

    def __init__(
        self,
        roots: Callable[[], Iterable[int]] | Iterable[int],
        period_s: float = 0.2,
        count_unique: bool = False,
    ) -> None:
        self._roots = roots if callable(roots) else (lambda fixed=tuple(roots): fixed)
        self.period_s = period_s
        self.count_unique = count_unique
        self.peak_by_pid: dict[int, ProcessMemory] = {}
        """Each process seen: its sample of highest PSS."""
        self.peak_total_pss_bytes = 0
        """The highest PSS sum of the tree at one poll."""
        self.at_peak_total: list[ProcessMemory] = []
        """The tree's members at that poll: each one's share of `peak_total_pss_bytes`."""
        self.peak_total_rss_bytes = 0
        """The highest RSS sum of the tree at one poll (for comparison: shared pages
        counted once per process)."""
        self.peak_unique_bytes = 0
        """With `count_unique`: the most distinct resident pages the tree held at one poll."""
        self.samples = 0
        """Polls made so far."""
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="pss-sampler", daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        """Stop polling; an error the polling thread met (`MemoryReadError`) is raised here."""
        self._stop.set()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _poll(self) -> None:
        try:
            while not self._stop.wait(self.period_s):
                self.sample()
        except BaseException as error:  # handed to the caller in __exit__
            self._error = error

    def sample(self) -> list[ProcessMemory]:
        """Read the tree's memory once, update the peaks; the members read."""
        pids = process_tree(self._roots())
        members = [memory for pid in pids if (memory := read_memory(pid)) is not None]
        unique = _unique_bytes(pids) if self.count_unique else 0
        total_pss = sum(memory.pss_bytes for memory in members)
        total_rss = sum(memory.rss_bytes for memory in members)
        with self._lock:
            self.samples += 1
            for memory in members:
                peak = self.peak_by_pid.get(memory.pid)
                if peak is None or memory.pss_bytes > peak.pss_bytes:
                    self.peak_by_pid[memory.pid] = memory
            if total_pss > self.peak_total_pss_bytes:
                self.peak_total_pss_bytes, self.at_peak_total = total_pss, members
            self.peak_total_rss_bytes = max(self.peak_total_rss_bytes, total_rss)
            self.peak_unique_bytes = max(self.peak_unique_bytes, unique)
        return members
