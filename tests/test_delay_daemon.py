"""The delay daemon lives exactly as long as the emulator that started it.

A latency fault's daemon is started from the fault injector's worker thread, which ends
before the fault does: the daemon must outlive that thread, and still die when the
emulator's process exits (even killed). Real `delayd` processes binding real NFQUEUEs
(root only; the queue numbers lie above those of the emulator's run slots).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from emulation.delayd import DelayDaemon, DelayQueue, build_delayd
from emulation.runstate import QUEUE_BASE, QUEUES_PER_SLOT, SLOT_COUNT

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (NFQUEUE)"),
]

QUEUE = QUEUE_BASE + SLOT_COUNT * QUEUES_PER_SLOT
"""The first NFQUEUE number above every emulator run slot's."""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_daemon_started_from_a_worker_thread_outlives_the_thread() -> None:
    exits: list[str] = []
    started: list[DelayDaemon] = []

    def start() -> None:
        daemon = DelayDaemon(build_delayd(), [DelayQueue(QUEUE, 0.01, 0.0)], 0, 1, exits.append)
        daemon.start()
        started.append(daemon)

    worker = threading.Thread(target=start)
    worker.start()
    worker.join()
    daemon = started[0]
    try:
        time.sleep(1.0)  # PR_SET_PDEATHSIG would have ended it at once
        daemon.check()
        assert not exits and _alive(daemon.pid)
    finally:
        daemon.stop()


EXITING_PARENT = """
import os, sys
from emulation.delayd import DelayDaemon, DelayQueue, build_delayd
daemon = DelayDaemon(build_delayd(), [DelayQueue(int(sys.argv[1]), 0.01, 0.0)], 0, 1, print)
daemon.start()
print(daemon.pid, flush=True)
os._exit(0)
"""


def test_a_daemon_ends_when_the_emulator_process_exits() -> None:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", EXITING_PARENT, str(QUEUE + 1)],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=60,
        check=True,
    )
    pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 5
    while _alive(pid):
        assert time.monotonic() < deadline, f"delayd {pid} outlived its emulator"
        time.sleep(0.05)
