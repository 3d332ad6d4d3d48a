"""Finding a live run's party processes, for the tests that kill them."""

from __future__ import annotations

import os
from pathlib import Path


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
