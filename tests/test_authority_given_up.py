"""An authority that never finishes its run is a failed party, never a quiet success.

Real federated runs on tiny (real Flower, TLS, node authentication) whose authority
cannot finish once it has accepted uploads, each way it can happen:

- stopped (SIGSTOP: alive, so nothing restarts it): the run still ends by itself once the
  authority's drain wait is over;
- killed with no restart left (`max_authority_restarts=0`): its supervisor gives it up
  mid-run, and the parties still play the run to its end.

Either way the run writes its summary, names the authority among the failed parties
and why (authority/supervisor.log), keeps the uploads the authority had accepted, and
`fl-crb federate` exits 1 for it (the same list makes `fl-crb emulate` exit 1). A
four-edge emulation whose authority was given up once exited 0; one past its restarts
once ended with a RuntimeError and no summary.
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
from tests.party_processes import run_in_thread
from tests.test_crash_recovery import _config, _wait_until

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    ("signal_sent", "restarts_allowed", "why"),
    [
        (signal.SIGSTOP, 3, "given up: its last rounds took over 30 s"),
        (signal.SIGKILL, 0, "given up: the authority failed 1 times; last: its ServerApp"),
    ],
    ids=["stopped", "killed-past-its-restarts"],
)
def test_an_authority_given_up_fails_the_run(tmp_path, signal_sent, restarts_allowed, why):
    out = tmp_path / "run"
    config = _config(out, 12.0)
    # drain wait: max(start-up timeout, 4 round deadlines) = 30 s instead of 120 s
    config = replace(config, parties=replace(config.parties, startup_timeout_s=30.0))
    config = replace(config, round_deadline_s=5.0, max_authority_restarts=restarts_allowed)
    thread, result = run_in_thread(lambda: asyncio.run(run_federated(config)))
    commit = out / "authority" / "pool" / "commit.json"
    try:
        _wait_until(
            lambda: commit.exists() and json.loads(commit.read_text())["accepted_total"] >= 2,
            240,
            "2 accepted uploads",
        )
        accepted = json.loads(commit.read_text())["accepted_total"]
        os.kill(json.loads((out / "authority" / "ready.json").read_text())["pid"], signal_sent)
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
    assert summary["tasks"] > 0  # the parties played the run through
    assert json.loads(commit.read_text())["accepted_total"] >= accepted
    assert why in (out / "authority" / "supervisor.log").read_text().splitlines()[-1]
