"""Build, run and watch `delayd`, the C delay line behind the NFQUEUE latency fallback.

`build_delayd` compiles `delayd.c` (shipped beside this module) with the system C
compiler into the user's cache, once per source version. `DelayDaemon` starts it with one
`QUEUE:DELAY_NS:JITTER_NS` argument per shaped link direction, waits for it to bind every
queue, and watches it: the daemon is in the path of all delayed traffic, and the iptables
rules have no `--queue-bypass`, so if it dies the shaped links stop carrying packets. The
watchdog then reports the death loudly through `on_exit` instead of letting a run go on
with a dead network.

The daemon runs in its own session (a terminal's Ctrl-C reaches the emulator, which
tears down in order, not the daemon) and exits with the process that started it (it
watches that process through a pidfd, so a worker thread that started it may end first).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("delayd.c")
"""The daemon's source, compiled on first use."""
LIBRARIES = ("-lnetfilter_queue", "-lnfnetlink", "-lm")
APT_HINT = "apt-get install gcc libnetfilter-queue-dev"

log = logging.getLogger(__name__)


class DelayDaemonError(RuntimeError):
    """The delay daemon could not be built or started, or it died."""


@dataclass(frozen=True)
class DelayQueue:
    """One NFQUEUE the daemon serves: one direction of one shaped link."""

    number: int
    """NFQUEUE number the iptables rule sends packets to."""
    delay_s: float
    """Mean one-way delay in seconds."""
    jitter_s: float
    """Standard deviation of the delay in seconds (normal distribution, clipped at 0)."""

    def argument(self) -> str:
        """The daemon's command-line form, `QUEUE:DELAY_NS:JITTER_NS`."""
        return f"{self.number}:{round(self.delay_s * 1e9)}:{round(self.jitter_s * 1e9)}"


def cache_dir() -> Path:
    """Where compiled helpers live: `$XDG_CACHE_HOME/fl-crb`, else `~/.cache/fl-crb`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fl-crb"


def build_delayd(directory: Path | None = None) -> Path:
    """The compiled daemon, compiling it if this source version has not been built yet."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise DelayDaemonError(f"no C compiler to build the delay daemon; {APT_HINT}")
    source = SOURCE.read_bytes()
    command = [compiler, "-O2", "-Wall", "-o", "{output}", str(SOURCE), *LIBRARIES]
    digest = hashlib.sha256(source + " ".join(command).encode()).hexdigest()[:16]
    directory = directory or cache_dir()
    binary = directory / f"delayd-{digest}"
    if binary.exists():
        return binary
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f".delayd-{digest}.{os.getpid()}"
    command[command.index("{output}")] = str(partial)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise DelayDaemonError(
            f"cannot compile {SOURCE} (is libnetfilter-queue-dev installed? {APT_HINT}):\n"
            + result.stderr.strip()
        )
    os.replace(partial, binary)
    for stale in directory.glob("delayd-*"):  # builds of older sources (running ones keep going)
        if stale != binary:
            stale.unlink(missing_ok=True)
    log.info("built the delay daemon %s", binary)
    return binary


class DelayDaemon:
    """A running `delayd` serving `queues`, with a watchdog."""

    def __init__(
        self,
        binary: Path,
        queues: list[DelayQueue],
        realtime_priority: int,
        seed: int,
        on_exit: Callable[[str], None],
    ) -> None:
        self.queues = queues
        """The queues it serves."""
        self.final_stats: dict | None = None
        """Its statistics at exit, once stopped."""
        self._command = [
            str(binary),
            "--seed", str(seed),
            "--parent", str(os.getpid()),
            *(["--realtime", str(realtime_priority)] if realtime_priority > 0 else []),
            *(q.argument() for q in queues),
        ]  # fmt: skip
        self._on_exit = on_exit
        self._process: subprocess.Popen[str] | None = None
        self._stopping = False
        self._ready = threading.Event()
        self._stats: queue.Queue[dict] = queue.Queue()
        self._errors: deque[str] = deque(maxlen=20)

    @property
    def pid(self) -> int | None:
        """Process id, once started."""
        return self._process.pid if self._process else None

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the daemon and wait until it has bound every queue."""
        self._process = subprocess.Popen(
            self._command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read_stdout, daemon=True, name="delayd-out").start()
        threading.Thread(target=self._read_stderr, daemon=True, name="delayd-err").start()
        if not self._ready.wait(timeout_s):
            self.stop()
            raise DelayDaemonError(
                f"the delay daemon did not bind its {len(self.queues)} queues within "
                f"{timeout_s:g} s: {self.errors() or 'no message'}"
            )
        threading.Thread(target=self._watch, daemon=True, name="delayd-watch").start()

    def check(self) -> None:
        """Raise `DelayDaemonError` if the daemon has died."""
        if self._process is not None and not self._stopping and self._process.poll() is not None:
            raise DelayDaemonError(self._death_message())

    def stats(self, timeout_s: float = 2.0) -> dict:
        """Its statistics so far: packets, held packets, release lateness and receive lag
        in microseconds (p50/p99/p999/max)."""
        self.check()
        assert self._process is not None
        while not self._stats.empty():
            self._stats.get_nowait()
        self._process.send_signal(signal.SIGUSR1)
        try:
            return self._stats.get(timeout=timeout_s)
        except queue.Empty:
            raise DelayDaemonError(
                f"the delay daemon did not report within {timeout_s:g} s"
            ) from None

    def errors(self) -> str:
        """The last lines the daemon wrote to stderr."""
        return " | ".join(self._errors)

    def stop(self, timeout_s: float = 3.0) -> None:
        """Stop the daemon (it releases the packets it holds) and keep its final stats."""
        self._stopping = True
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        try:
            self.final_stats = self._stats.get(timeout=1.0)
        except queue.Empty:
            self.final_stats = None

    def _death_message(self) -> str:
        assert self._process is not None
        code = self._process.returncode
        return (
            f"the delay daemon (pid {self._process.pid}) exited with code {code} while the "
            f"network was up; every delayed link now drops its packets. "
            f"stderr: {self.errors() or 'nothing'}"
        )

    def _read_stdout(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            if line.strip() == "ready":
                self._ready.set()
            elif line.startswith("{"):
                self._stats.put(json.loads(line))

    def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        for line in self._process.stderr:
            self._errors.append(line.strip())
            log.warning("%s", line.strip())

    def _watch(self) -> None:
        assert self._process is not None
        self._process.wait()
        if not self._stopping:
            message = self._death_message()
            log.error("%s", message)
            self._on_exit(message)


def kernel_queue_counters(numbers: list[int]) -> dict[str, int]:
    """Kernel counters summed over the given NFQUEUEs: `queue_dropped` (the kernel queue
    was full), `user_dropped` (the daemon's socket overflowed), `held` (waiting now)."""
    wanted = set(numbers)
    totals = {"held": 0, "queue_dropped": 0, "user_dropped": 0}
    try:
        text = Path("/proc/net/netfilter/nfnetlink_queue").read_text()
    except OSError:
        return totals
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 7 and int(fields[0]) in wanted:
            totals["held"] += int(fields[2])
            totals["queue_dropped"] += int(fields[5])
            totals["user_dropped"] += int(fields[6])
    return totals
