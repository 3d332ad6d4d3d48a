"""Process plumbing shared by the party entry points: logging, start handshake, outputs.

A party process talks to whoever started it (the `run-local` coordinator, or the
emulator) over its standard streams, one line each way:

    party → stdout   READY {"port": 40123}        (JSON facts the coordinator needs)
    stdin → party    START 1712345678.25          (the run's epoch, a Unix time)

The coordinator picks the epoch only once every party is READY (connected and
listening), a little in the future, so that all of them start slot 0 together. Log
lines go to standard error, which the coordinator keeps as the party's log file. Between
READY and START a party takes real-time scheduling if the run asks for it.

A party the coordinator starts again after it died (`fl_crb.runtime.party_supervisor`)
goes through the same handshake, with the run's own epoch: it begins at the slot under
way. Its environment says it is a restart (`RESTART_ENV`, read by `restart_number`), so
it does not wait for what a first start may take for granted (a terminal does not insist
on reaching every edge before READY: an edge may be dead or restarting too).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sys
from pathlib import Path

READY = "READY"
START = "START"
RESTART_ENV = "FL_CRB_PARTY_RESTART"
"""Environment variable the coordinator sets to N when it starts a party for the N-th
time again during a run (unset on the first start)."""


def configure_logging(party: str) -> None:
    """Log to standard error with millisecond times and the party's name."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format=f"%(asctime)s.%(msecs)03d {party} %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def announce_ready(facts: dict[str, object]) -> None:
    """Tell the coordinator this party is ready, with the facts it needs (e.g. the port)."""
    sys.stdout.write(f"{READY} {json.dumps(facts)}\n")
    sys.stdout.flush()


def restart_number() -> int:
    """0 on a party's first start; N when the coordinator started it again the N-th time."""
    text = os.environ.get(RESTART_ENV, "0")
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"{RESTART_ENV}={text!r}; expected a restart number >= 0") from None
    if number < 0:
        raise ValueError(f"{RESTART_ENV}={text!r}; expected a restart number >= 0")
    return number


def enter_realtime(priority: int | None) -> None:
    """Take SCHED_FIFO at `priority` (None: stay as is). A party does this after its
    imports and connections, so only its slot work runs ahead of the host's other
    programs; it needs root or CAP_SYS_NICE."""
    if priority is None:
        return
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        raise PermissionError(
            f"cannot take real-time priority {priority} (SCHED_FIFO): needs root or "
            "CAP_SYS_NICE; run without --realtime"
        ) from None


def parse_start(line: str) -> float:
    """The epoch from a `START <unix time>` line; a clear error for anything else."""
    parts = line.split()
    if len(parts) != 2 or parts[0] != START:
        raise ValueError(f"expected a line 'START <unix time>' on standard input, got {line!r}")
    try:
        epoch = float(parts[1])
    except ValueError:
        raise ValueError(f"START line carries {parts[1]!r}, which is not a Unix time") from None
    if not math.isfinite(epoch):
        raise ValueError(f"START line carries {parts[1]!r}, which is not a Unix time")
    return epoch


async def await_start() -> float:
    """Wait for the coordinator's START line on standard input; returns the epoch."""
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise RuntimeError("standard input closed before the START line: coordinator gone")
    return parse_start(line)


def write_json(path: str | Path, data: object) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(temporary, path)


def exit_now(status: int) -> None:
    """Exit without the interpreter's teardown once every output is written: with torch
    loaded (learned policies) the teardown costs about a second of CPU, which on a busy
    host took the coordinator's whole exit grace (30 s) in federated runs."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
