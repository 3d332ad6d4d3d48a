"""The federated data plane behind the emulator's seam: `run_federated` on the Mininet hosts.

`emulation.run` runs one coordinator, `DATA_PLANES[name](local_config, placement)`. This
module adapts the federated face's coordinator (`fl_crb.federation.deploy.federated_run`) to that
call: the same parties (topology, overrides, duration, seed, run folder), their
terminals deciding with `FEDERATED_POLICY` and given the federated run's startup time,
the pre-trained weights of `crb-drqn:WEIGHTS.npz` as the edge learners' starting
weights, and the same `MininetPlacement`, through which the federated run starts the
SuperLink and the trusted authority on the cloud host, the edge learners and SuperNodes
on the edge hosts and the terminals' SuperNodes beside their parties, so uploads and
weights cross the emulated links. The terminals start with the pre-trained weights, then
act with the newest weights their managing edge serves, and the task log's `decided_by`
shows each version. Uplinks are unpaced (the emulated links shape them) and the
data-plane parties take the run's real-time priority, as in the plain data plane.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fl_crb.runtime.decider import AGENT_PREFIX, FEDERATED_POLICY
from fl_crb.runtime.local_run import LocalRunConfig
from fl_crb.runtime.placement import Placement

EMULATION_POLL_S = 1.0
"""The SuperNodes' idle poll and the SuperExecs' task poll on Mininet. An emulation puts
every node of the topology on one machine: at the loopback default (0.25 s) the polls of
29 idle nodes (four-edge) take about a core of a 2-core machine, which starved the
rounds (55 s per exchange at 25 terminals); at 1 s they cost a quarter of that."""


async def run_federated_plane(
    local: LocalRunConfig,
    placement: Placement,
    min_pool_trajectories: int = 32,
    round_period_s: float = 2.0,
    poll_s: float = EMULATION_POLL_S,
) -> dict[str, object]:
    """Run federated CRB-DRQN, starting from the weights file of `local.policy`; the edge
    learners train once the pool holds `min_pool_trajectories`, the authority starts a
    round every `round_period_s` and idle SuperNodes pull every `poll_s` (the SuperExecs
    keep `EMULATION_POLL_S`)."""
    from fl_crb.federation.deploy.federated_run import (
        FEDERATED_STARTUP_TIMEOUT_S,
        FederatedRunConfig,
        run_federated,
    )

    if not local.policy.startswith(AGENT_PREFIX):
        raise ValueError(
            f"the federated data plane runs CRB-DRQN; policy {local.policy!r} should be "
            f"{AGENT_PREFIX}WEIGHTS.npz, the weights its edge learners start from"
        )
    weights = Path(local.policy[len(AGENT_PREFIX) :])
    config = FederatedRunConfig(
        parties=replace(
            local, policy=FEDERATED_POLICY, startup_timeout_s=FEDERATED_STARTUP_TIMEOUT_S
        ),
        starting_weights=str(weights.resolve()),
        round_period_s=round_period_s,
        supernode_idle_poll_s=poll_s,
        superexec_poll_s=EMULATION_POLL_S,
        min_pool_trajectories=min_pool_trajectories,
    )
    return await run_federated(config, placement)
