"""For the tests that kill a live run's parties: the run in a thread beside the test, and
finding its party processes."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path


def run_in_thread(run: Callable[[], dict]) -> tuple[threading.Thread, dict]:
    """`run()` started in a daemon thread; its summary lands in the returned dict under
    "summary", or what it raised under "error" (for the test to report)."""
    result: dict = {}

    def target() -> None:
        try:
            result["summary"] = run()
        except BaseException as error:  # reported by the tests
            result["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def pid_of(config_path: Path) -> int | None:
    """The live process started with this config file (a party's current process: its
    command line names the file, unique to its run), or None."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(config_path).encode() in argv and state != "Z":
            return int(entry.name)
    return None
