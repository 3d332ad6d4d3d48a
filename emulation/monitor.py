"""Watching a run while it goes: the data plane in a worker thread, progress in the main one.

The data plane is one coroutine (`run_local(config, placement)`, or the federated run with
the same placement). `DataPlaneThread` runs it on an event loop of its own thread, so the
main thread stays free for what must happen there: printing progress, sampling the
parties' memory, checking that the delay daemon lives, Mininet's interactive CLI, and
receiving Ctrl-C (a signal only ever interrupts the main thread). `cancel` asks the
coroutine to stop from any thread; the coordinator then kills its parties and re-raises,
and the emulator tears the network down.

`interrupt(signum)` instead hands a signal the main thread received to the coordinator's
own handler, so it stops as it does in the main thread of `fl-crb run-local` or `fl-crb
federate` (`fl_crb.runtime.local_run.stop_on_signals`: its parties stopped in order, their
task logs and summaries written, its partial run folder written). The coordinator adds
that handler with `loop.add_signal_handler`, which asyncio allows in the main thread only;
the thread's loop (`_SignalKeepingLoop`) keeps such handlers instead of installing them,
and `interrupt` schedules the kept one on the loop.

`Progress` prints one line every few seconds: the slot the run is in (from the epoch in
the run folder's run.json, once the parties have started), the processes and memory of
the parties, the bytes the terminals' interfaces have sent, and the delay daemon's
packet count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TextIO

from emulation.counters import HostCounters, PartyMemory, host_counters
from emulation.network import EmulatedNetwork
from fl_crb.runtime.local_run import RUN_FILE

MEMORY_EVERY_S = 2.0
"""How often the parties' memory is sampled for its peak (besides each progress line)."""


class _SignalKeepingLoop(asyncio.SelectorEventLoop):
    """An event loop for a worker thread whose signal handlers are kept, not installed
    (asyncio installs them in the main thread only): `schedule_handler` runs one when the
    main thread passes its signal on."""

    def __init__(self) -> None:
        super().__init__()
        self._kept_handlers: dict[int, tuple[Callable[..., object], tuple[object, ...]]] = {}

    def add_signal_handler(self, sig: int, callback: Callable[..., object], *args: object) -> None:
        self._kept_handlers[signal.Signals(sig)] = (callback, args)

    def remove_signal_handler(self, sig: int) -> bool:
        return self._kept_handlers.pop(signal.Signals(sig), None) is not None

    def schedule_handler(self, sig: int) -> bool:
        """Schedule the handler kept for `sig` on this loop (from any thread); False if
        none is kept or the loop has closed."""
        kept = self._kept_handlers.get(sig)
        if kept is None or self.is_closed():
            return False
        callback, args = kept
        try:
            self.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed meanwhile
            return False
        return True


class DataPlaneThread(threading.Thread):
    """Runs one coroutine to completion on its own event loop."""

    def __init__(self, coroutine: Coroutine[Any, Any, dict[str, object]]) -> None:
        super().__init__(name="data-plane", daemon=True)
        self._coroutine = coroutine
        self._loop: _SignalKeepingLoop | None = None
        self._task: asyncio.Task | None = None
        self._ready = threading.Event()
        self.summary: dict[str, object] | None = None
        """What the coroutine returned, once it has."""
        self.error: BaseException | None = None
        """What it raised, if it did."""

    def run(self) -> None:
        loop = _SignalKeepingLoop()
        self._loop = loop
        try:
            self._task = loop.create_task(self._coroutine)
            self._ready.set()
            self.summary = loop.run_until_complete(self._task)
        except BaseException as error:  # handed to the main thread by `outcome`
            self.error = error
        finally:
            self._ready.set()
            loop.close()

    def cancel(self) -> None:
        """Ask the coroutine to stop (its coordinator then stops its parties)."""
        self._ready.wait()
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            # RuntimeError: the loop closed meanwhile, nothing is left to cancel
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)

    def interrupt(self, signum: int) -> bool:
        """Run the coroutine's handler for `signum` on its loop (from any thread); False if
        it has none now (not yet added, already removed, or a coordinator that never adds
        one): the caller then stops it another way (`cancel`)."""
        loop = self._loop
        return loop is not None and loop.schedule_handler(signum)

    def outcome(self) -> dict[str, object]:
        """The summary, once the thread has ended; re-raises the coroutine's error."""
        if self.error is not None:
            raise self.error
        assert self.summary is not None
        return self.summary


class Progress:
    """Periodic progress lines of a running emulation."""

    def __init__(
        self,
        net: EmulatedNetwork,
        run_dir: Path,
        memory: PartyMemory,
        before: HostCounters,
        slot_s: float,
        stream: TextIO | None = None,
    ) -> None:
        self._net = net
        self._slot_s = slot_s
        self._run_dir = run_dir
        self._memory = memory
        self._before = before
        self._terminals = [h.name for h in net.hosts("terminal")]
        self._stream = stream or sys.stdout
        self._interactive = self._stream.isatty()
        self._run: dict | None = None
        self._next_memory_sample = 0.0

    def started(self) -> bool:
        """Whether the parties have been given their epoch (run.json exists)."""
        if self._run is None:
            path = self._run_dir / RUN_FILE
            if path.is_file():
                self._run = json.loads(path.read_text())
        return self._run is not None

    def sample(self) -> None:
        """Check the network (cheap; call often) and, every `MEMORY_EVERY_S`, sample the
        parties' memory: reading every process's smaps_rollup walks its page tables, which
        at four-edge's ~125 processes took over half a core when done twice a second."""
        self._net.check()
        now = time.monotonic()
        if now >= self._next_memory_sample:
            self._memory.sample()
            self._next_memory_sample = now + MEMORY_EVERY_S

    def line(self) -> str:
        """The current progress line."""
        processes, pss = self._memory.sample()
        parts = [f"{processes} processes, {pss / 2**20:.0f} MB PSS"]
        if self.started():
            assert self._run is not None
            end = int(self._run["run"]["end_slot"])
            slot = int((time.time() - float(self._run["epoch_unix_s"])) // self._slot_s)
            slot = min(max(slot, 0), end)
            head = f"slot {slot}/{end} ({slot / end:.0%})"
            if slot == end:
                head = f"slot {end}/{end}, parties finishing"
        else:
            head = "starting the parties"
        now = host_counters(self._net)
        sent = sum(
            counters.tx_bytes - self._before[t][name].tx_bytes
            for t in self._terminals
            for name, counters in now[t].items()
        )
        parts.append(f"terminals sent {sent / 1e6:.1f} MB")
        daemon = self._net.delay_daemon_load()
        if daemon is not None:
            parts.append(f"delay daemon {daemon['packets']} packets")
        return f"{head}: " + ", ".join(parts)

    def show(self) -> None:
        """Print the current line (redrawn in place on a terminal)."""
        text = self.line()
        if self._interactive:
            self._stream.write("\r\033[K" + text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        """End the redrawn line."""
        if self._interactive:
            self._stream.write("\n")
            self._stream.flush()


def watch(runner: DataPlaneThread, progress: Progress, every_s: float) -> None:
    """Until `runner` ends: sample often, print a progress line every `every_s` seconds.
    On Ctrl-C (or a dead delay daemon, which interrupts the main thread) cancel the data
    plane, wait for it to stop its parties, and re-raise."""
    try:
        next_line = time.monotonic() + every_s
        while runner.is_alive():
            runner.join(0.5)
            progress.sample()
            if time.monotonic() >= next_line and runner.is_alive():
                progress.show()
                next_line += every_s
    except BaseException:
        runner.cancel()
        runner.join()
        raise
    finally:
        progress.close()
