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
"""

from __future__ import annotations

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
