"""The federated face's coordinator: `run_federated(config)` behind `fl-crb federate --local`.

It starts one edge learner service per edge (`edge_learner_service`); then, at the same
time, the Flower deployment (`LocalFederation`: SuperLink, one SuperNode per edge and per
terminal, the wire meter) and the runtime's edge servers and terminal parties
(`local_run.launch_parties`; each terminal runs as the federation's `terminal`, with its
federated decider); once all are up, the trusted authority (a `flwr run` of the app's
authority mode, restarted by a supervisor if it dies: the new run recovers the durable
pool); and only once the authority serves does it give the parties their epoch. After
`duration_s` of arrivals and the drain, it asks the authority to stop (stop file; the
authority drains every terminal's outbox and delivers the last acknowledgements first),
stops the learners, then the Flower processes, and writes the run folder:

    DIR/tasks.csv, summary.json, run.json, topology.yaml, logs/, parties/, config/
                            as `run-local` (summary.json gains a "federation" section)
    DIR/authority/          the authority's folder: pool/, rounds.jsonl, events.jsonl,
                            authority.log (rejections), accounting.jsonl, summary.json
    DIR/mailboxes/<host>/   each node's mailbox
    DIR/keys/               X25519 keys: authority.pem and <terminal>.pem (0600)
    DIR/flower/             the Flower deployment's run folder (`launcher`)

Placement: every process starts through the given `Placement`: the learners on their
edge hosts, the runtime parties on theirs, and (through `LocalFederation`'s own placement
support, `_start_flower`) the SuperLink with the authority on the cloud host and each
SuperNode on its host. Only loopback has been run so far; a Mininet placement needs the
run folder (mailboxes, the authority's folder, keys) on a file system every host shares,
as Mininet hosts do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from fl_crb.federation.authority_config import AuthorityConfig, AuthorityTerminal
from fl_crb.federation.crypto import generate_private_key, public_key_bytes, save_private_key
from fl_crb.federation.deploy.launch_config import LaunchConfig, NodeSpec
from fl_crb.federation.deploy.launcher import LocalFederation
from fl_crb.federation.deploy.run_support import (
    federation_summary,
    hand_out_starting_weights,
    learner_ready,
    run_record,
    start_learner,
    start_weights_files,
    stop_learners,
    supervise_authority,
    wait_for_file,
)
from fl_crb.federation.edge_learner_service import EdgeServiceConfig
from fl_crb.federation.terminal import MODULE as FEDERATED_TERMINAL_MODULE
from fl_crb.runtime.config import FederatedTerminal, save_config
from fl_crb.runtime.decider import FEDERATED_POLICY
from fl_crb.runtime.local_run import (
    EXIT_GRACE_S,
    SUMMARY_FILE,
    LocalRunConfig,
    launch_parties,
    run_spec,
    stop_parties,
    summarise_run,
    wait_parties,
)
from fl_crb.runtime.party import write_json
from fl_crb.runtime.placement import Loopback, Placement

FEDERATED_STARTUP_TIMEOUT_S = 180.0
"""The usual `LocalRunConfig.startup_timeout_s` of a federated run's parties, longer than
a local run's: the Flower processes, the edge learners and the authority start on the
same cores at the same time (and are given as long)."""


def federated_parties(
    topology_path: str, duration_s: float, out_dir: str, **settings: object
) -> LocalRunConfig:
    """The parties of a federated run (`FederatedRunConfig.parties`): a local run's
    settings whose terminals act with the weights the federation delivers
    (`FEDERATED_POLICY`) and whose start may take `FEDERATED_STARTUP_TIMEOUT_S` unless
    `settings` say otherwise; `settings` are further `LocalRunConfig` fields."""
    settings = {
        "terminals_override": None,
        "arrival_rate_override_bps": None,
        "startup_timeout_s": FEDERATED_STARTUP_TIMEOUT_S,
        **settings,
    }
    return LocalRunConfig(
        topology_path=topology_path,
        policy=FEDERATED_POLICY,
        duration_s=duration_s,
        out_dir=out_dir,
        **settings,
    )


@dataclass(frozen=True)
class FederatedRunConfig:
    """One federated run: the data plane's parties and the federation around them."""

    parties: LocalRunConfig
    """The runtime's edge servers and terminals, as a local run has them (`federated_parties`
    builds them); `policy` must be `FEDERATED_POLICY` (the terminals act with the weights
    the federation delivers). Its `startup_timeout_s` also bounds the start of the
    learners, the Flower nodes and the authority (`FEDERATED_STARTUP_TIMEOUT_S` is the usual
    value), its `seed` also seeds the learners' initialisation and the authority's
    sampling, and its `realtime_priority` keeps the Flower processes sharing the parties'
    cores from delaying their slots."""
    starting_weights: str | None = None
    """A training run folder or a weights file (`save_weights_file`) the edge learners
    start from; None: each learner starts freshly initialised."""
    round_period_s: float = 2.0
    """Seconds between the starts of the authority's rounds."""
    epsilon: float = 0.1
    """Terminals' exploration probability once they hold weights."""
    batches_per_round: int | None = None
    """Batches (training steps) per edge per round; None: one per slot of the period,
    the simulator trainer's rate of one step per slot."""
    pool_capacity: int = 20_000
    """Trajectories the authority's pool keeps."""
    min_pool_trajectories: int = 32
    """Edges get batches once the pool holds this many trajectories."""
    upload_faults: tuple[tuple[str, str], ...] = ()
    """Test-only: (terminal host, "tamper@K,replay@K,malformed@K") faults to inject."""
    max_authority_restarts: int = 3
    """How often the supervisor starts a dead authority again before giving up."""
    supernode_idle_poll_s: float = 0.25
    """The SuperNodes' idle poll (`LaunchConfig`); Flower's own is a fixed 3 s."""
    superexec_poll_s: float = 0.25
    """The SuperExecs' task poll (`LaunchConfig`)."""

    def __post_init__(self) -> None:
        if self.parties.policy != FEDERATED_POLICY:
            raise ValueError(
                f"parties.policy must be {FEDERATED_POLICY!r} in a federated run (the "
                f"edge learners' starting weights go in starting_weights), got "
                f"{self.parties.policy!r}"
            )
        if not self.round_period_s > 0:
            raise ValueError(f"round period must be > 0 s, got {self.round_period_s!r}")
        if not 0 <= self.epsilon <= 1:
            raise ValueError(f"epsilon must lie in [0, 1], got {self.epsilon!r}")
        if self.min_pool_trajectories < 4:
            raise ValueError(
                f"the pool must hold at least one batch (4 trajectories) before training, "
                f"got a minimum of {self.min_pool_trajectories}"
            )
        if self.batches_per_round is not None and self.batches_per_round < 0:
            raise ValueError(f"batches per round must be >= 0, got {self.batches_per_round}")


async def run_federated(
    config: FederatedRunConfig, placement: Placement | None = None
) -> dict[str, object]:
    """Run the federated face for the configured duration; returns the summary."""
    placement = placement or Loopback()
    out = Path(config.parties.out_dir).resolve()
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"run folder {out} is not empty; give a new folder for each run")
    local = replace(config.parties, out_dir=str(out))
    spec, params, terminals = run_spec(local)
    topology = spec.topology()
    edges, hosts = topology.edge_names, topology.terminal_names[:terminals]
    managing = params.per_terminal(terminals).managing_edge
    faults = dict(config.upload_faults)
    if unknown := sorted(set(faults) - set(hosts)):
        raise ValueError(f"upload faults name {unknown}, which are not terminals of {hosts}")
    for sub in ("config", "logs", "parties", "keys", "mailboxes", "authority"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local.topology_path, out / "topology.yaml")
    start_weights = start_weights_files(config.starting_weights, params, out / "keys")
    if start_weights:
        hand_out_starting_weights(start_weights, managing, hosts, out / "mailboxes")

    authority_key = generate_private_key()
    save_private_key(authority_key, out / "keys" / "authority.pem")
    upload_run_id = os.urandom(16)
    public_keys = {}
    for host in hosts:
        key = generate_private_key()
        save_private_key(key, out / "keys" / f"{host}.pem")
        public_keys[host] = public_key_bytes(key).hex()

    def federation_of(d: int, host: str) -> FederatedTerminal:
        return FederatedTerminal(
            terminal_id=host,
            mailbox=str(out / "mailboxes" / host),
            key_path=str(out / "keys" / f"{host}.pem"),
            authority_public_key_hex=public_key_bytes(authority_key).hex(),
            upload_run_id_hex=upload_run_id.hex(),
            epsilon=config.epsilon,
            faults=faults.get(host, ""),
        )

    batches = config.batches_per_round
    authority = AuthorityConfig(
        state_dir=str(out / "authority"),
        upload_run_id_hex=upload_run_id.hex(),
        authority_key_path=str(out / "keys" / "authority.pem"),
        terminals=tuple(
            AuthorityTerminal(host, public_keys[host], edges[int(managing[d])])
            for d, host in enumerate(hosts)
        ),
        edges=tuple(edges),
        history_slots=params.history_slots,
        trajectory_length=4,
        pool_capacity=config.pool_capacity,
        pool_alpha=1.0,
        batch_trajectories=4,
        min_pool_trajectories=config.min_pool_trajectories,
        batches_per_round=round(config.round_period_s / params.slot_s)
        if batches is None
        else batches,
        round_period_s=config.round_period_s,
        stop_path=str(out / "authority" / "stop"),
        seed=local.seed,
    )
    learners: list[asyncio.subprocess.Process] = []
    parties: list = []
    federation: LocalFederation | None = None
    flower: asyncio.Task | None = None
    supervisor: asyncio.Task | None = None
    authority_path = out / "config" / "authority.json"
    started = time.time()
    nodes = tuple(  # each node's mailbox path is in its node config, for its ClientApps
        NodeSpec(name, role, node_config={"mailbox": str(out / "mailboxes" / name)})
        for role, names in (("edge", edges), ("terminal", hosts))
        for name in names
    )
    try:
        for e, edge in enumerate(edges):
            service = EdgeServiceConfig(
                name=edge,
                mailbox=str(out / "mailboxes" / edge),
                edges=params.edges,
                history_slots=params.history_slots,
                trajectory_length=4,
                summary_path=str(out / "parties" / f"{edge}.learner.json"),
                initial_weights_path=start_weights[e] if start_weights else None,
                seed=local.seed * 1000 + e,
            )
            learners.append(await start_learner(out, service, placement))
        # Flower starts while the parties start (both take seconds of imports); the
        # parties' epoch waits until the authority serves, so every arrival is served.
        flower = asyncio.create_task(
            _start_flower(out / "flower", nodes, config, placement, topology.cloud_host)
        )

        async def start_authority() -> None:
            nonlocal federation, supervisor
            ready_by = time.time() + local.startup_timeout_s
            for edge, learner in zip(edges, learners, strict=True):
                await learner_ready(learner, f"{edge}-learner", out / "logs", ready_by)
            federation = await flower
            meter = federation.meter.control_address
            save_config(replace(authority, wire_meter_address=meter), authority_path)
            run_config = {
                "mode": "authority",
                "authority-config": str(authority_path),
            }
            supervisor = asyncio.create_task(
                supervise_authority(federation, run_config, out / "authority", config)
            )
            await wait_for_file(out / "authority" / "ready.json", ready_by, supervisor)

        epoch = await launch_parties(
            out,
            local,
            spec,
            FEDERATED_POLICY,
            placement,
            parties,
            federation_of,
            start_authority,
            terminal_module=FEDERATED_TERMINAL_MODULE,
        )
        write_json(out / "run.json", run_record(config, spec, epoch, placement, parties))
        failed = await wait_parties(parties, epoch + spec.end_slot * params.slot_s + EXIT_GRACE_S)
        (out / "authority" / "stop").touch()
        restarts = await asyncio.wait_for(supervisor, local.startup_timeout_s)
    except BaseException:
        await stop_parties(parties)
        (out / "authority" / "stop").touch()
        if supervisor is not None:
            supervisor.cancel()
        if flower is not None and federation is None:
            with contextlib.suppress(BaseException):
                federation = await flower
        raise
    finally:
        await stop_learners(learners)
        if federation is not None:
            await asyncio.to_thread(federation.stop)
    summary = summarise_run(out, local, spec, params.slot_s, parties, failed)
    summary["federation"] = federation_summary(out, hosts, restarts, time.time() - started)
    write_json(out / SUMMARY_FILE, summary)
    return summary


async def _start_flower(
    run_dir: Path,
    nodes: tuple[NodeSpec, ...],
    config: FederatedRunConfig,
    placement: Placement,
    cloud_host: str,
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
    launch = LaunchConfig(
        run_dir,
        nodes,
        superexec_poll_s=config.superexec_poll_s,
        supernode_idle_poll_s=config.supernode_idle_poll_s,
        warm_clientapps=True,
        meter_wire=True,
        startup_timeout_s=config.parties.startup_timeout_s,
        **placed,
    )
    federation = LocalFederation(launch)
    try:
        await asyncio.to_thread(federation.start)
    except BaseException:
        await asyncio.to_thread(federation.stop)
        raise
    return federation
