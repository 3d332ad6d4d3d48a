"""An emulation's data plane: its parties, and (federated) the federation around them.

`emulation.run` runs one coordinator per data plane: a `LocalRunConfig` is run by the
runtime's `run_local`, a `FederatedRunConfig` by the federated face's `run_federated`
(`fl_crb.federation.deploy.federated_run`), both with the same `MininetPlacement`,
through which the federated run starts the SuperLink and the trusted authority on the
cloud host, the edge learners and SuperNodes on the edge hosts and the terminals'
SuperNodes beside their parties, so uploads and weights cross the emulated links. The
terminals start with the starting weights (of a trained run or a weights file), then act
with the newest weights their managing edge serves, and the task log's `decided_by`
shows each version.

The builders here give those configs what an emulation needs: `emulation_parties`
leaves the uplinks unpaced (the emulated links shape them) and runs the parties at the
emulation's real-time priority; `emulated_federation` slows Flower's polls to
`EMULATION_POLL_S`. Light: no Mininet, no Flower, so the command line can use them.

`SignalRelay` lets the coordinator stop on Ctrl-C or SIGTERM although it runs in a worker
thread (`emulation.monitor.DataPlaneThread`), as it stops when it runs in the main
thread of `fl-crb run-local` or `fl-crb federate`: its parties stopped in order, their
task logs and summaries written, its partial run folder written.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fl_crb.federation.deploy.run_config import FederatedRunConfig, federated_parties
from fl_crb.policies.spec import Federated, PolicySpec
from fl_crb.runtime.config import RunTarget
from fl_crb.runtime.local_run import LocalRunConfig

EMULATION_REALTIME_PRIORITY = 5
"""The parties' SCHED_FIFO priority in an emulation (`fl-crb emulate --realtime`'s
default): below the delay daemon's 10, so a busy host does not delay their slot
boundaries while the daemon keeps its own."""
EMULATION_POLL_S = 1.0
"""The SuperNodes' idle poll and the SuperExecs' task poll on Mininet. An emulation puts
every node of the topology on one machine: at the loopback default (0.25 s) the polls of
29 idle nodes (four-edge) take about a core of a 2-core machine, which starved the
rounds (55 s per exchange at 25 terminals); at 1 s they cost a quarter of that."""


def emulation_parties(
    target: RunTarget,
    policy: PolicySpec,
    out_dir: str,
    realtime_priority: int | None = EMULATION_REALTIME_PRIORITY,
) -> LocalRunConfig:
    """The parties of an emulation of `target`: a local run's, their uplinks unpaced (the
    emulated links shape them) and at `realtime_priority`; a `Federated` policy's are a
    federated run's (`federated_parties`: its longer start-up)."""
    settings = {"pace_uplink": False, "realtime_priority": realtime_priority}
    if isinstance(policy, Federated):
        return federated_parties(target, out_dir, policy.start, **settings)
    return LocalRunConfig(target, policy, out_dir, **settings)


def emulated_federation(parties: LocalRunConfig, **settings: object) -> FederatedRunConfig:
    """The federated data plane of an emulation: `FederatedRunConfig(parties, **settings)`
    with the SuperNodes' and SuperExecs' polls at `EMULATION_POLL_S` unless `settings`
    (further `FederatedRunConfig` fields) say otherwise."""
    polls = {"supernode_idle_poll_s": EMULATION_POLL_S, "superexec_poll_s": EMULATION_POLL_S}
    return FederatedRunConfig(parties, **{**polls, **settings})


Result = TypeVar("Result")


class SignalRelay:
    """SIGINT and SIGTERM, received by the main thread, handed to a coordinator that runs
    on another thread's event loop.

    A coordinator stops on a signal through `loop.add_signal_handler` (its
    `fl_crb.runtime.local_run.stop_on_signals` sets its stop event there), which asyncio
    allows in the main thread only; in the emulator the coordinator runs in a worker
    thread, where it would go without. `run(coordinator)` runs it on its thread's loop
    with that loop's `add_signal_handler` and `remove_signal_handler` keeping the handlers
    here instead of installing them; `deliver(signum)`, called by the main thread's own
    handler, schedules the coordinator's handler on its loop. The loop is the worker
    thread's own, made for this one coroutine, so nothing else sees the change."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handlers: dict[int, tuple[Callable[..., object], tuple[object, ...]]] = {}

    async def run(self, coordinator: Coroutine[Any, Any, Result]) -> Result:
        """Await `coordinator` with the running loop's signal handlers kept here."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        loop.add_signal_handler = self._add  # type: ignore[method-assign]
        loop.remove_signal_handler = self._remove  # type: ignore[method-assign]
        try:
            return await coordinator
        finally:
            del loop.add_signal_handler, loop.remove_signal_handler  # the class's again
            self._handlers.clear()

    def deliver(self, signum: int) -> bool:
        """Run the coordinator's handler for `signum` on its loop; False if it has none
        now (not yet installed, already removed, or a coordinator that never installs
        one): the caller then stops the coordinator another way."""
        handler, loop = self._handlers.get(signum), self._loop
        if handler is None or loop is None or loop.is_closed():
            return False
        callback, args = handler
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed meanwhile
            return False
        return True

    def _add(self, signum: int, callback: Callable[..., object], *args: object) -> None:
        self._handlers[signal.Signals(signum)] = (callback, args)

    def _remove(self, signum: int) -> bool:
        return self._handlers.pop(signal.Signals(signum), None) is not None
