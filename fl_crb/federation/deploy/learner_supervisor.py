"""Keeps every edge learner service running for the whole federated run.

A `LearnerSupervisor` starts one learner service per edge (`run_support.start_learner`)
and waits for each to say READY; then, while it `watch`es, a learner that exits before
the run asks it to stop (killed, crashed, or stopped by someone else) is started again on
its host with the same config: it resumes from its last checkpoint in the edge's mailbox
(`edge_learner_service.LearnerCheckpoint`), so its training steps and its version go on
from there. An edge is restarted at most `max_restarts` times; past that it is given up,
with the reason (`given_up`), and the run goes on without its training (the coordinator
names it among the failed parties). `stop()` ends them all: SIGTERM, on which each
finishes the batch file in hand, checkpoints and writes its summary.

What it leaves in the run folder:

    DIR/learners.json                 each edge's learner: current pid, whether it said
                                      READY, restarts, and the reason it was given up (if
                                      it was); rewritten at every (re)start and READY, so
                                      a fault injector can find the process to kill
    DIR/logs/<edge>-learner.log       the current process's log
    DIR/logs/<edge>-learner.<n>.log   the log of the n-th process, which died
    DIR/logs/learner-supervisor.log   one line per restart or given-up edge, with why
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fl_crb.federation.deploy.run_support import learner_ready, start_learner, stop_learners
from fl_crb.federation.edge_learner_service import EdgeServiceConfig
from fl_crb.runtime.party import write_json
from fl_crb.runtime.placement import Placement

MAX_LEARNER_RESTARTS = 3
"""Restarts allowed per edge learner in one run (as many as the authority's by default)."""
LEARNERS_FILE = "learners.json"


@dataclass
class _Supervised:
    """One edge's learner service: its config, its current process, what befell it."""

    service: EdgeServiceConfig
    process: asyncio.subprocess.Process
    ready: bool = False
    """Whether the current process said READY (it serves its mailbox)."""
    restarts: int = 0
    given_up: str | None = None


class LearnerSupervisor:
    """The edge learner services of one federated run and their restarts."""

    def __init__(
        self,
        out: Path,
        placement: Placement,
        startup_timeout_s: float,
        max_restarts: int = MAX_LEARNER_RESTARTS,
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> None:
        """`stop_requested()` says whether the run is being stopped (e.g. interrupted): a
        learner ending then is not restarted."""
        self.out = out
        self.placement = placement
        self.startup_timeout_s = startup_timeout_s
        self.max_restarts = max_restarts
        self.stop_requested = stop_requested
        self.learners: dict[str, _Supervised] = {}
        self.stopping = False
        self._watch: asyncio.Task | None = None

    async def start(self, services: Sequence[EdgeServiceConfig]) -> None:
        """Start one learner service per config (each on its edge's host)."""
        for service in services:
            process = await start_learner(self.out, service, self.placement)
            self.learners[service.name] = _Supervised(service, process)
            self._record()

    async def ready(self, ready_by: float) -> None:
        """Wait until every learner said READY (a Unix-time deadline)."""
        for name, learner in self.learners.items():
            await learner_ready(learner.process, f"{name}-learner", self.out / "logs", ready_by)
            learner.ready = True
        self._record()

    def watch(self) -> None:
        """From now on, restart a learner that exits, until `stop`."""
        self._watch = asyncio.create_task(self._restart_the_dead())

    @property
    def restarts(self) -> dict[str, int]:
        """Restarts of each edge's learner so far."""
        return {name: learner.restarts for name, learner in self.learners.items()}

    @property
    def given_up(self) -> dict[str, str]:
        """Edges whose learner was given up, with the reason."""
        return {name: s.given_up for name, s in self.learners.items() if s.given_up is not None}

    async def stop(self) -> None:
        """Stop watching, then SIGTERM every learner (it checkpoints and writes its
        summary) and reap them."""
        self.stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await stop_learners([learner.process for learner in self.learners.values()])

    async def _restart_the_dead(self) -> None:
        while True:
            watched = {
                asyncio.ensure_future(learner.process.wait()): learner
                for learner in self.learners.values()
                if learner.given_up is None
            }
            if not watched:
                return
            try:
                done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in watched:
                    waiting.cancel()
            if self.stopping or self.stop_requested():
                return
            for ended in done:
                await self._restart(watched[ended])

    async def _restart(self, learner: _Supervised) -> None:
        """Start `learner` again, or give it up once it used its restarts."""
        name = learner.service.name
        reason = f"its process {learner.process.pid} {_exit_text(learner.process.returncode)}"
        if learner.restarts >= self.max_restarts:
            plural = "" if learner.restarts == 1 else "s"
            learner.given_up = f"{reason} after {learner.restarts} restart{plural}"
            self._note(f"{name}: given up: {learner.given_up}")
            self._record()
            return
        learner.restarts += 1
        logs = self.out / "logs"
        os.replace(logs / f"{name}-learner.log", logs / f"{name}-learner.{learner.restarts}.log")
        self._note(f"{name}: restart {learner.restarts}: {reason}")
        learner.process = await start_learner(self.out, learner.service, self.placement)
        learner.ready = False
        self._record()
        try:
            ready_by = time.time() + self.startup_timeout_s
            await learner_ready(learner.process, f"{name}-learner", logs, ready_by)
            learner.ready = True
            self._record()
        except RuntimeError as error:  # it ends (or is ended) and is seen by the watch
            self._note(f"{name}: restart {learner.restarts} did not start: {error}")
            if learner.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    learner.process.kill()

    def _note(self, line: str) -> None:
        with open(self.out / "logs" / "learner-supervisor.log", "a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def _record(self) -> None:
        """Rewrite learners.json: each edge's current pid, restarts and fate."""
        record = {
            name: {
                "pid": learner.process.pid,
                "ready": learner.ready,
                "restarts": learner.restarts,
                "given_up": learner.given_up,
            }
            for name, learner in self.learners.items()
        }
        write_json(self.out / LEARNERS_FILE, record)


def _exit_text(code: int | None) -> str:
    """`exited with status 1`, `was killed by SIGKILL`, or `is still running`."""
    if code is None:
        return "is still running"
    if code >= 0:
        return f"exited with status {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"
