"""An authority that never finishes its run is a failed party, never a quiet success.

One real federated run on tiny (real Flower, TLS, node authentication) whose authority is
stopped (SIGSTOP: alive, so nothing restarts it) once it has accepted uploads and so
cannot finish its last rounds: the run still ends by itself once the authority's drain
wait is over, writes its summary, names the authority among the failed parties, and
`fl-crb federate` exits 1 for it (the same list makes `fl-crb emulate` exit 1). A
four-edge emulation whose authority was given up this way once exited 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from dataclasses import replace

import pytest

from fl_crb.commands.federate import exit_status
from fl_crb.federation.deploy.federated_run import run_federated
from tests.test_crash_recovery import _config, _in_thread, _wait_until

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_an_authority_given_up_fails_the_run(tmp_path):
    out = tmp_path / "run"
    config = _config(out, 12.0)
    # drain wait: max(start-up timeout, 4 round deadlines) = 30 s instead of 120 s
    config = replace(config, parties=replace(config.parties, startup_timeout_s=30.0))
    config = replace(config, round_deadline_s=5.0)
    thread, result = _in_thread(lambda: asyncio.run(run_federated(config)))
    try:
        commit = out / "authority" / "pool" / "commit.json"
        _wait_until(
            lambda: commit.exists() and json.loads(commit.read_text())["accepted_total"] >= 2,
            240,
            "2 accepted uploads",
        )
        os.kill(json.loads((out / "authority" / "ready.json").read_text())["pid"], signal.SIGSTOP)
    finally:
        thread.join(timeout=600)
    assert not thread.is_alive(), "the run did not end"
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    assert summary["federation"]["authority_finished"] is False
    assert "authority" in summary["failed_parties"]
    assert exit_status(summary) == 1
    written = json.loads((out / "summary.json").read_text())
    assert written["failed_parties"] == summary["failed_parties"]
