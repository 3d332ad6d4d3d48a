"""The federated face's coordinator: `run_federated(config)` behind `fl-crb federate --local`.

Its configuration, `FederatedRunConfig`, is in `run_config`.

It makes the run's keys first, one bundle per host of the topology (`keys.create_keys`:
the SuperLink's certificate names every address the SuperLink is dialed at) and hands
each party the path of its own host's bundle only: the authority the cloud's, each edge
learner its edge's, each terminal party and SuperNode its host's. Flower runs with TLS
and SuperNode authentication unless `insecure` (each node's key is registered before it
starts, so the authority knows every node by its key).

It starts one edge learner service per edge (`edge_learner_service`), kept running by a
`learner_supervisor.LearnerSupervisor`: once they are all READY, one that dies is started
again and resumes from its last checkpoint. Then, at the same time, the Flower deployment
(`LocalFederation`: SuperLink, one SuperNode per edge and per terminal, the wire meter;
with the relay uplink, `FederatedRunConfig.uplink`, none on the terminals: each hands its
uploads to its edge server, whose SuperNode carries them, `fl_crb.federation.relay`)
and the runtime's edge servers and terminal parties (`local_run.launch_parties`; each
terminal runs as the federation's `terminal`, with its federated decider); once all are
up, the trusted authority (a `flwr run` of the app's authority mode, restarted by a
supervisor if it dies: the new run recovers the durable pool); and only once the
authority serves does it give the parties their epoch. After `duration_s` of arrivals
and the drain, it asks the authority to stop (stop file; the authority drains every
terminal's outbox and delivers the last acknowledgements first), stops the learners,
then the Flower processes, and writes the run folder (the summary's "federation" section
counts each edge learner's restarts, `learner_restarts`, and names those given up,
`learners_given_up`, also among `failed_parties` as `<edge>-learner`; likewise the
SuperLink's and each SuperNode's restarts, `superlink_restarts` and
`supernode_restarts`, with those given up in `flower_given_up` and among
`failed_parties` as `superlink` or `<host>-supernode`: the Flower deployment's
`flower_supervisor` starts a dead one again, the SuperLink on its state file):

    DIR/tasks.csv, summary.json, run.json, topology.yaml, logs/, parties/, config/
                            as `run-local` (summary.json gains a "federation" section;
                            run.json records the whole `FederatedRunConfig`)
    DIR/authority/          the authority's folder: pool/, rounds.jsonl, events.jsonl,
                            authority.log (rejections), accounting.jsonl, summary.json
    DIR/mailboxes/<host>/   each node's mailbox (an edge's holds its learner's checkpoints)
    DIR/learners.json       each edge learner's pid and restarts (`learner_supervisor`)
    DIR/keys/               the run's keys (`fl-crb keys` layout): keys.json, ca/ (the
                            CA, in no bundle), <host>/ one bundle per host
    DIR/start-weights/      a trained run's per-edge starting weights
                            (start-weights-edgeN.npz)
    DIR/flower/             the Flower deployment's run folder (`launcher`)

Placement: every process starts through the given `Placement`: the learners on their
edge hosts, the runtime parties on theirs, and (through `LocalFederation`'s own placement
support, `_start_flower`) the SuperLink with the authority on the cloud host and each
SuperNode on its host; the SuperLink's certificate then names the cloud's addresses that
placement gives (`superlink_sans`). A Mininet placement needs the run folder (mailboxes,
the authority's folder, keys) on a file system every host shares, as Mininet hosts do.

SIGINT or SIGTERM stops the run early, as `run-local`: the parties are stopped, the
authority is asked to stop and given `INTERRUPTED_DRAIN_S` to drain the outboxes and
write its summary, the learners checkpoint, Flower stops, and the partial tasks.csv and
summary.json (with `interrupted`) are written before `RunInterrupted` is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

from fl_crb.federation.authority_config import AuthorityConfig, AuthorityTerminal
from fl_crb.federation.deploy.flower_commands import BIND_ALL
from fl_crb.federation.deploy.flower_supervisor import SUPERLINK, flower_supervision
from fl_crb.federation.deploy.launch_config import LaunchConfig, NodeSpec, Security
from fl_crb.federation.deploy.launcher import LocalFederation
from fl_crb.federation.deploy.learner_supervisor import LearnerSupervisor
from fl_crb.federation.deploy.run_config import FederatedRunConfig
from fl_crb.federation.deploy.run_support import (
    authority_end,
    federation_summary,
    run_record,
    start_weights_files,
    supervise_authority,
    wait_for_file,
)
from fl_crb.federation.edge_learner_service import EdgeServiceConfig
from fl_crb.federation.keys import KeyFolder, create_keys, plan_for_topology
from fl_crb.federation.mailbox import impersonated
from fl_crb.federation.terminal import MODULE as FEDERATED_TERMINAL_MODULE
from fl_crb.policies.spec import absolute
from fl_crb.runtime.config import RELAY, FederatedEdge, FederatedTerminal, save_config
from fl_crb.runtime.local_run import (
    EXIT_GRACE_S,
    STOP_GRACE_S,
    SUMMARY_FILE,
    RunInterrupted,
    launch_parties,
    run_spec,
    stop_on_signals,
    stop_parties,
    summarise_run,
    unless_stopped,
    wait_parties,
)
from fl_crb.runtime.party import write_json
from fl_crb.runtime.placement import LOOPBACK, Loopback, Placement


async def run_federated(
    config: FederatedRunConfig, placement: Placement | None = None
) -> dict[str, object]:
    """Run the federated face for the configured duration; returns the summary."""
    placement = placement or Loopback()
    out = Path(config.parties.out_dir).resolve()
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"run folder {out} is not empty; give a new folder for each run")
    local = replace(config.parties, out_dir=str(out))
    method, policy = config.method, absolute(local.policy)
    spec, params, terminals = run_spec(local)
    topology = spec.topology()
    edges, hosts = topology.edge_names, topology.terminal_names[:terminals]
    managing = params.per_terminal(terminals).managing_edge
    faults = dict(config.upload_faults)
    if unknown := sorted(set(faults) - set(hosts)):
        raise ValueError(f"upload faults name {unknown}, which are not terminals of {hosts}")
    relay = config.uplink == RELAY
    relay_faults = dict(config.relay_faults)
    if unknown := sorted(set(relay_faults) - set(edges)):
        raise ValueError(f"relay faults name {unknown}, which are not edges of {edges}")
    node_count = len(edges) + (0 if relay else len(hosts))  # relay: no terminal nodes
    quorum_nodes = config.quorum.of(node_count)  # refused here if too many
    start_weights = start_weights_files(policy.start, method, params, out / "start-weights")
    for sub in ("config", "logs", "parties", "mailboxes", "authority"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local.target.topology_path, out / "topology.yaml")
    cloud = topology.cloud_host
    sans = superlink_sans(placement, cloud, [*edges, *hosts])
    create_keys(out / "keys", plan_for_topology(topology, sans))
    keys = KeyFolder(out / "keys")
    run_id = os.urandom(16)

    def federation_of(d: int, host: str) -> FederatedTerminal:
        return FederatedTerminal(
            terminal_id=host,
            mailbox=str(out / "mailboxes" / host),
            bundle=str(keys.bundle(host)),  # its own keys only
            upload_run_id_hex=run_id.hex(),
            agent=method.agent_config(),
            epsilon=config.epsilon,
            faults=faults.get(host, ""),
            uplink=config.uplink,
            relay_handover=config.relay_handover,
        )

    def edge_federation(e: int, edge: str) -> FederatedEdge:
        return FederatedEdge(
            str(out / "mailboxes" / edge), config.uplink, relay_faults.get(edge, "")
        )

    batches = config.batches_per_round
    authority = AuthorityConfig(
        state_dir=str(out / "authority"),
        upload_run_id_hex=run_id.hex(),
        bundle=str(keys.bundle(cloud)),
        terminals=tuple(
            AuthorityTerminal(host, edges[int(managing[d])]) for d, host in enumerate(hosts)
        ),
        edges=tuple(edges),
        history_slots=params.history_slots,
        method=method,
        batches_per_round=round(config.round_period_s / params.slot_s)
        if batches is None
        else batches,
        round_period_s=config.round_period_s,
        round_deadline_s=config.round_deadline(),
        stop_path=str(out / "authority" / "stop"),
        quorum_nodes=quorum_nodes,
        seed=local.target.seed,
        node_auth=not config.insecure,
        test_transit_faults=config.test_transit_faults,
    )
    stop = asyncio.Event()  # set by SIGINT or SIGTERM: the run stops early
    signals: list[str] = []  # the signals received
    learners = LearnerSupervisor(
        out, placement, local.startup_timeout_s, stop_requested=stop.is_set
    )
    parties: list = []
    federation: LocalFederation | None = None
    flower: asyncio.Task | None = None
    supervisor: asyncio.Task | None = None
    authority_path = out / "config" / "authority.json"
    started = time.time()
    failed: list[str] = []
    restarts = 0
    nodes = tuple(  # its mailbox is in each node's config; a terminal's, its bundle too
        NodeSpec(name, "edge", node_config={"mailbox": str(out / "mailboxes" / name)})
        for name in edges
    ) + tuple(
        NodeSpec(
            name, "terminal", node_config=_terminal_node_config(out, keys, name, run_id, faults)
        )
        for name in ([] if relay else hosts)
    )
    services = [
        EdgeServiceConfig(
            name=edge,
            mailbox=str(out / "mailboxes" / edge),
            edges=params.edges,
            history_slots=params.history_slots,
            trajectory_length=method.trajectory_length,
            learner=replace(method.learner, seed=local.target.seed * 1000 + e),
            summary_path=str(out / "parties" / f"{edge}.learner.json"),
            bundle=str(keys.bundle(edge)),
            run_id_hex=run_id.hex(),
            initial_weights_path=start_weights[e] if start_weights else None,
        )
        for e, edge in enumerate(edges)
    ]
    with stop_on_signals(stop, signals):
        try:
            await learners.start(services)
            # Flower starts while the parties start (both take seconds of imports); the
            # parties' epoch waits until the authority serves, so every arrival is served.
            flower = asyncio.create_task(
                _start_flower(out / "flower", nodes, config, placement, cloud, keys)
            )

            async def start_authority() -> None:
                nonlocal federation, supervisor
                ready_by = time.time() + local.startup_timeout_s
                await learners.ready(ready_by)
                learners.watch()  # from now on a learner that dies is started again
                federation = await flower
                meter = federation.meter.control_address
                save_config(replace(authority, wire_meter_address=meter), authority_path)
                run_config = {
                    "mode": "authority",
                    "authority-config": str(authority_path),
                    "uplink": config.uplink,
                }
                supervisor = asyncio.create_task(
                    supervise_authority(federation, run_config, out / "authority", config)
                )
                await wait_for_file(out / "authority" / "ready.json", ready_by, supervisor)

            launch = launch_parties(
                out,
                local,
                spec,
                [policy] * terminals,
                placement,
                parties,
                federation_of,
                start_authority,
                terminal_module=FEDERATED_TERMINAL_MODULE,
                edge_module="fl_crb.federation.edge",  # hands its learner's weights out
                edge_federation=edge_federation,
            )
            epoch = await unless_stopped(launch, stop)
            if epoch is not None:
                write_json(out / "run.json", run_record(config, spec, epoch, placement, parties))
                finish_by = epoch + spec.end_slot * params.slot_s + EXIT_GRACE_S
                failed = await wait_parties(parties, finish_by, stop)
            if stop.is_set():
                await stop_parties(parties, STOP_GRACE_S)
                failed = [party.name for party in parties if party.dead]
            (out / "authority" / "stop").touch()
            if supervisor is not None:
                wait_s = INTERRUPTED_DRAIN_S if stop.is_set() else config.drain_wait()
                restarts = await authority_end(supervisor, out / "authority", wait_s)
        except BaseException:
            await stop_parties(parties)
            (out / "authority" / "stop").touch()
            if supervisor is not None:
                supervisor.cancel()
            raise
        finally:
            if flower is not None and federation is None:  # failed or stopped early
                with contextlib.suppress(BaseException):
                    federation = await flower
            await learners.stop()
            if federation is not None:
                await asyncio.to_thread(federation.stop)
    interrupted = signals[0] if signals else None
    summary = summarise_run(out, local, spec, params.slot_s, parties, failed, interrupted)
    summary["security"] = {"tls": not config.insecure, "node_auth": not config.insecure}
    wall_s = time.time() - started
    if (out / "authority" / "summary.json").exists():
        summary["federation"] = federation_summary(out, edges, hosts, restarts, wall_s)
    else:  # given up, or interrupted before it finished: nothing of it to summarise
        summary["federation"] = {"authority_finished": False, "authority_restarts": restarts}
        if interrupted is None:
            summary["failed_parties"].append("authority")
    summary["federation"]["learner_restarts"] = learners.restarts
    summary["federation"]["learners_given_up"] = learners.given_up
    summary["failed_parties"] += [f"{edge}-learner" for edge in learners.given_up]
    flower_restarts = flower_supervision(federation)
    summary["federation"].update(flower_restarts)
    summary["failed_parties"] += [
        "superlink" if name == SUPERLINK else f"{name}-supernode"
        for name in flower_restarts["flower_given_up"]
    ]
    flower_record = federation.flower_record if federation is not None else None
    summary["federation"]["flower"] = flower_record  # which Flower path ran
    write_json(out / SUMMARY_FILE, summary)
    if interrupted is not None:
        raise RunInterrupted(interrupted, summary)
    return summary


INTERRUPTED_DRAIN_S = 20.0
"""How long an interrupted run lets the authority drain the outboxes and write its
summary before it is given up."""


async def _start_flower(
    run_dir: Path,
    nodes: tuple[NodeSpec, ...],
    config: FederatedRunConfig,
    placement: Placement,
    cloud_host: str,
    keys: KeyFolder,
) -> LocalFederation:
    """The Flower deployment through the placement: the SuperLink (and so the authority's
    ServerApp) on the cloud host, each SuperNode on its topology host. On loopback the
    launcher's defaults are kept as they are (no placement arguments at all)."""
    placed = (
        {}
        if placement.label == "loopback"
        else {
            "placement": placement,
            "superlink_host": cloud_host,
        }
    )
    secure = None if config.insecure else Security(keys.path, tls=True, node_auth=True)
    launch = LaunchConfig(
        run_dir,
        nodes,
        security=secure,
        superexec_poll_s=config.superexec_poll_s,
        supernode_idle_poll_s=config.supernode_idle_poll_s,
        warm_clientapps=True,
        accelerators=config.accelerators,
        meter_wire=True,
        startup_timeout_s=config.parties.startup_timeout_s,
        max_restarts=config.max_flower_restarts,
        durable_state=config.durable_superlink,
        **placed,
    )
    federation = LocalFederation(launch)
    try:
        await asyncio.to_thread(federation.start)
    except BaseException:
        await asyncio.to_thread(federation.stop)
        raise
    return federation


def superlink_sans(placement: Placement, cloud_host: str, hosts: list[str]) -> list[str]:
    """The addresses the SuperLink on `cloud_host` is dialed at through `placement` (by
    itself and by every host of `hosts`), for its certificate: what
    `FlowerCommands.check_keys` requires; loopback adds nothing to the default SANs."""
    listen = placement.listen_address(cloud_host)
    dialed = {placement.address(cloud_host, cloud_host), LOOPBACK if listen in BIND_ALL else listen}
    dialed |= {placement.address(cloud_host, host) for host in hosts}
    return sorted(dialed)


def _terminal_node_config(
    out: Path, keys: KeyFolder, host: str, run_id: bytes, faults: dict[str, str]
) -> dict[str, str]:
    """A terminal SuperNode's node config: mailbox, bundle, the run's id (and, test only,
    the name it claims in query.hello when a fault makes it impersonate another)."""
    node_config = {
        "mailbox": str(out / "mailboxes" / host),
        "bundle": str(keys.bundle(host)),
        "run-id": run_id.hex(),
    }
    victim = impersonated(faults.get(host, ""))
    if victim:
        node_config["claimed-name"] = victim
    return node_config
