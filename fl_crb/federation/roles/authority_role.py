"""`fl-crb authority`: the SuperLink, the run service and the trusted authority on one host.

Steps: load the authority's bundle and check it against the topology → plan the run
(its `RunSpec`, the federation's run id, the learners' starting weights if the run
starts from trained ones) → start the SuperLink alone (TLS with the bundle's
certificate, every node's public key registered) → start the run service
(`run_service`) → wait for the start quorum's hellos (a party says hello once its
SuperNode is online) → start the authority (`flwr run` of the app in authority mode,
supervised: `run_support.supervise_authority`) and wait until it serves (its ready.json:
the quorum's nodes answered its own hellos) → choose the epoch (`RunService.start`) →
wait until the run's last slot and the parties' exit grace → stop the authority (stop
file: it drains every terminal's outbox first) → tell the parties the run is finished
and wait for their reports → stop the service and the SuperLink → write S/summary.json
(`authority_summary`).

The authority starts only once the quorum's SuperNodes are online, and the epoch comes
only once it serves, as in the one-coordinator run (`federated_run`, whose Flower
deployment waits for every SuperNode before the authority, and whose parties get their
epoch once it serves): a ServerApp started before its nodes greets each as it connects,
one at a time, on a machine still busy starting the parties, and every arrival before
it serves would wait for its rounds. The SuperLink keeps its state in memory
(`LaunchConfig.durable_state` off), as the coordinator's does unless a fault schedule ends
it: the on-disk state made Flower fail Fleet requests under load ("database is
locked"), and nothing here restarts the SuperLink.

State directory S:

    S/topology.yaml      the topology as served
    S/config/            authority.json (the ServerApp's `AuthorityConfig`)
    S/authority/         the authority's folder: pool/, rounds.jsonl, events.jsonl,
                         authority.log, accounting.jsonl, summary.json
    S/start-weights/     a trained run's per-edge starting weights, served to the edges
    S/flower/            the SuperLink's FLWR_HOME, the `flwr` CLI's, logs (`launcher`)
    S/service.log        the run service's notes: hellos, offsets, refusals, reports
    S/processes.json     every command line started (the SuperLink)
    S/summary.json       the run's summary
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from fl_crb.federation.authority_config import AuthorityConfig, AuthorityTerminal
from fl_crb.federation.deploy.flower_commands import BIND_ALL
from fl_crb.federation.deploy.launch_config import LaunchConfig, Security
from fl_crb.federation.deploy.launcher import LocalFederation
from fl_crb.federation.deploy.run_config import FederatedRunConfig
from fl_crb.federation.deploy.run_support import (
    authority_end,
    start_weights_files,
    supervise_authority,
    wait_for_file,
)
from fl_crb.federation.host_bundle import AuthorityKeys, HostBundle
from fl_crb.federation.roles.authority_summary import authority_summary
from fl_crb.federation.roles.party_processes import record_command
from fl_crb.federation.roles.run_service import RunServer, RunService
from fl_crb.federation.roles.settings import TOPOLOGY_FILE, RunSettings
from fl_crb.federation.roles.signed_requests import RequestVerifier
from fl_crb.policies.spec import absolute
from fl_crb.runtime.config import RunSpec, save_config
from fl_crb.runtime.local_run import run_spec
from fl_crb.runtime.party import write_json
from fl_crb.runtime.placement import LOOPBACK

READY_TIMEOUTS = 2
"""Once the start quorum said hello, the authority is given this many start-up timeouts
to serve: its ServerApp's wait for its quorum's answers (one start-up timeout, then it
fails naming the nodes missing) and a restarted ServerApp's start."""
STOP_AFTER_END_S = 3.0
"""After the run's last slot, how long the authority waits (the terminals' last outcomes
and uploads) before it asks the authority to stop."""


@dataclass(frozen=True)
class AuthorityRoleConfig:
    """One `fl-crb authority`."""

    run: FederatedRunConfig
    """The run, as `fl-crb federate` describes it; its parties' `out_dir` is the state
    directory."""
    bundle: Path
    """The authority's bundle (DIR/<cloud host>/ of `fl-crb keys`)."""
    listen: str = "0.0.0.0"
    """Address the SuperLink and the run service bind."""
    service_port: int = 9300
    """The run service's port (0: a free port)."""
    superlink_port: int = 9301
    """The SuperLink's port (0: a free port)."""
    start_lead_s: float = 5.0
    """The epoch is this far after the authority's rounds serve (the start quorum said
    hello before)."""
    join_timeout_s: float = 600.0
    """How long to wait for the start quorum's hellos."""
    report_wait_s: float = 60.0
    """After the run, how long to wait for the parties' reports."""


class AuthorityHost:
    """The authority's host as the launcher's placement: commands run here, the SuperLink
    binds `listen` and this host dials it on loopback when `listen` binds every address."""

    label = "authority-host"

    def __init__(self, listen: str) -> None:
        self._listen = listen

    def command(self, host: str, argv: list[str]) -> list[str]:
        return list(argv)

    def listen_address(self, host: str) -> str:
        return self._listen

    def address(self, host: str, peer: str | None = None) -> str:
        return LOOPBACK if self._listen in BIND_ALL else self._listen


@dataclass(frozen=True)
class AuthorityPlan:
    """What `plan_run` made before any process starts."""

    state: Path
    """The state directory S (absolute)."""
    keys: AuthorityKeys
    """The authority's checked bundle."""
    spec: RunSpec
    """The run's spec on this host (its topology S/topology.yaml)."""
    settings: RunSettings
    """What the run service serves (its SuperLink port set once the SuperLink listens)."""
    roles: dict[str, str]
    """Every party: host → "edge" or "terminal"."""
    launch: LaunchConfig
    """The SuperLink alone, every party's key admitted."""
    authority_path: Path
    """S/config/authority.json, the ServerApp's `AuthorityConfig`."""
    start_weights: dict[str, Path]
    """Edge → its learner's starting weights file (empty: fresh learners)."""
    quorum: int
    """Parties that must say hello before the epoch is chosen, and nodes that must answer
    before the authority's first round (the run's `quorum`, `--quorum`)."""


async def run_authority(config: AuthorityRoleConfig, say=print) -> dict:
    """Run the authority's host for one run: plan → start → serve → stop → summarise."""
    started = time.time()
    plan = plan_run(config)
    note = _notes(plan.state / "service.log", say)
    service = RunService(
        plan.settings,
        RequestVerifier(
            {host: plan.keys.supernode_public_keys[host] for host in plan.roles},
            plan.settings.upload_run_id_hex,
        ),
        plan.roles,
        plan.quorum,
        config.start_lead_s,
        plan.start_weights,
        note,
    )
    federation = LocalFederation(plan.launch)
    server: RunServer | None = None
    restarts = None
    try:
        await asyncio.to_thread(federation.start)
        for name, argv in federation.command_lines.items():
            record_command(plan.state, name, argv)
        # the port the SuperLink got, if it was to pick one
        service.settings = replace(plan.settings, superlink_port=federation.superlink_port)
        server = RunServer(
            service,
            config.listen,
            config.service_port,
            plan.keys.superlink_certificate,
            plan.keys.superlink_key,
        )
        server.start()
        _announce(plan, service, server.port, note)
        restarts = await _serve(plan, config, service, federation, note)
    finally:
        (plan.state / "authority" / "stop").touch()
        service.finish()
        if server is not None:
            await asyncio.sleep(min(2.0, config.report_wait_s))  # the parties see "finished"
            server.stop()
        await asyncio.to_thread(federation.stop)
    summary = authority_summary(
        plan.state,
        service,
        service.settings,
        restarts,
        federation.flower_record,
        time.time() - started,
    )
    write_json(plan.state / "summary.json", summary)
    return summary


def plan_run(config: AuthorityRoleConfig) -> AuthorityPlan:
    """Load the bundle, check it against the topology, and write what the run needs into
    the state directory (topology, starting weights, the authority's config)."""
    run = config.run
    state = Path(run.parties.out_dir).resolve()
    if state.exists() and any(p.name != "bundle" for p in state.iterdir()):
        raise ValueError(f"state directory {state} holds an earlier run; give a new one per run")
    bundle = Path(config.bundle).resolve()
    keys = HostBundle.load(bundle, role="authority").authority()
    local = replace(run.parties, out_dir=str(state))
    # the authority runs no runtime party: each edge and terminal checks that it may take
    # the parties' real-time priority (`party_role.may_take_realtime`), not this host
    spec, params, terminals = run_spec(replace(local, realtime_priority=None))
    spec = replace(spec, realtime_priority=local.realtime_priority)
    topology = spec.topology()
    edges, hosts = topology.edge_names, topology.terminal_names[:terminals]
    _check_bundle(bundle, keys.host, topology.cloud_host, [*edges, *hosts], keys)
    for sub in ("config", "authority"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local.target.topology_path, state / TOPOLOGY_FILE)
    run_id = os.urandom(16).hex()
    start = absolute(local.policy).start
    weights = start_weights_files(start, run.method, params, state / "start-weights") or []
    settings = RunSettings(
        run=replace(spec, target=replace(spec.target, topology_path=TOPOLOGY_FILE)),
        topology_yaml=(state / TOPOLOGY_FILE).read_text(encoding="utf-8"),
        upload_run_id_hex=run_id,
        method=run.method,
        epsilon=run.epsilon,
        slot_s=params.slot_s,
        superlink_port=config.superlink_port,
        tls=not run.insecure,
        node_auth=not run.insecure,
        accelerators=run.accelerators,
        supernode_idle_poll_s=run.supernode_idle_poll_s,
        superexec_poll_s=run.superexec_poll_s,
        start_weights=bool(weights),
        pace_uplink=local.pace_uplink,
        pace_ticks_per_slot=local.pace_ticks_per_slot,
        startup_timeout_s=local.startup_timeout_s,
    )
    roles = {**dict.fromkeys(edges, "edge"), **dict.fromkeys(hosts, "terminal")}
    quorum = run.quorum.of(len(roles))
    launch = LaunchConfig(
        state / "flower",
        (),
        security=None if run.insecure else Security(bundle, tls=True, node_auth=True),
        superexec_poll_s=run.superexec_poll_s,
        accelerators=run.accelerators,
        meter_wire=False,
        startup_timeout_s=local.startup_timeout_s,
        placement=AuthorityHost(config.listen),
        superlink_host=topology.cloud_host,
        superlink_port=config.superlink_port,
        admitted_nodes=tuple(roles),
    )
    managing = params.per_terminal(terminals).managing_edge
    authority = AuthorityConfig(
        state_dir=str(state / "authority"),
        upload_run_id_hex=run_id,
        bundle=str(bundle),
        terminals=tuple(
            AuthorityTerminal(host, edges[int(e)]) for host, e in zip(hosts, managing, strict=True)
        ),
        edges=tuple(edges),
        history_slots=params.history_slots,
        method=run.method,
        batches_per_round=round(run.round_period_s / params.slot_s)
        if run.batches_per_round is None
        else run.batches_per_round,
        round_period_s=run.round_period_s,
        round_deadline_s=run.round_deadline(),
        stop_path=str(state / "authority" / "stop"),
        quorum_nodes=quorum,
        node_wait_s=local.startup_timeout_s,  # its quorum's SuperNodes are online by then
        seed=local.target.seed,
        node_auth=not run.insecure,
    )
    authority_path = state / "config" / "authority.json"
    save_config(authority, authority_path)
    start_weights = {edge: Path(weights[e]) for e, edge in enumerate(edges)} if weights else {}
    return AuthorityPlan(
        state, keys, spec, settings, roles, launch, authority_path, start_weights, quorum
    )


def _notes(log_path: Path, say) -> Callable[[str], None]:
    """One line on the output and, with the time, in S/service.log."""

    def note(text: str) -> None:
        say(f"fl-crb authority: {text}")
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%H:%M:%S')} {text}\n")

    return note


def _announce(plan: AuthorityPlan, service: RunService, port: int, note) -> None:
    """What it serves and whom it waits for."""
    settings, listen = service.settings, plan.launch.placement.listen_address("")
    security = (
        f"TLS, node authentication; {len(plan.roles)} node keys registered"
        if settings.tls
        else "INSECURE: no TLS, no node authentication"
    )
    edges = [host for host, role in plan.roles.items() if role == "edge"]
    terminals = [host for host, role in plan.roles.items() if role == "terminal"]
    note(
        f"run {settings.upload_run_id_hex} on {plan.spec.topology().name}: run service "
        f"https://{listen}:{port}, SuperLink {listen}:{settings.superlink_port} ({security})"
    )
    note(
        f"waiting for edges {', '.join(edges)} and terminals {', '.join(terminals)} "
        f"(start quorum {service.quorum} of {len(plan.roles)})"
    )


async def _serve(
    plan: AuthorityPlan,
    config: AuthorityRoleConfig,
    service: RunService,
    federation: LocalFederation,
    note,
) -> int:
    """Run the authority (supervised) through the run; its restarts."""
    await wait_for_start_quorum(service, config.join_timeout_s, note)
    run_config = {"mode": "authority", "authority-config": str(plan.authority_path)}
    supervisor = asyncio.create_task(
        supervise_authority(federation, run_config, plan.state / "authority", config.run)
    )
    try:
        ready_s = READY_TIMEOUTS * config.run.parties.startup_timeout_s
        await wait_for_file(
            plan.state / "authority" / "ready.json", time.time() + ready_s, supervisor
        )
        epoch = service.start()
        spec, slot_s = plan.spec, plan.settings.slot_s
        note(
            f"epoch {epoch:.3f}: {spec.arrival_slots} slots of arrivals, {spec.end_slot} in "
            f"all, {slot_s:g} s each"
        )
        record = {"epoch_unix_s": epoch, "settings": settings_dict(service.settings)}
        write_json(plan.state / "run.json", record)
        end = epoch + spec.end_slot * slot_s + STOP_AFTER_END_S
        while time.time() < end:
            if supervisor.done():
                supervisor.result()  # its error
            await asyncio.sleep(min(1.0, max(0.0, end - time.time())))
        (plan.state / "authority" / "stop").touch()
        note("run over: stopping the authority (it drains the terminals' outboxes first)")
        drain_s = config.run.drain_wait()
        restarts = await authority_end(supervisor, plan.state / "authority", drain_s)
    finally:
        if not supervisor.done():
            supervisor.cancel()
    service.finish()
    await _reports(service, config.report_wait_s, note)
    return restarts


def settings_dict(settings: RunSettings) -> dict:
    """The settings as served, the topology's text aside (it is in S/topology.yaml)."""
    return {k: v for k, v in asdict(settings).items() if k != "topology_yaml"}


def _check_bundle(
    path: Path, host: str, cloud: str, parties: list[str], keys: AuthorityKeys
) -> None:
    """The bundle is the topology's authority's and knows every party; ValueError naming
    the bundle and the fix otherwise."""
    if host != cloud:
        raise ValueError(f"{path}: the bundle of {host!r}, but the topology's cloud is {cloud!r}")
    missing = [h for h in parties if h not in keys.supernode_public_keys]
    if missing:
        raise ValueError(
            f"{path}: no SuperNode key for {missing}: the bundles were made for another "
            "topology; make them with `fl-crb keys --topology T --out DIR` for this one"
        )


async def wait_for_start_quorum(service: RunService, timeout_s: float, note) -> None:
    """Wait until the start quorum said hello; RuntimeError naming the parties that never
    did, and where to look, after `timeout_s`."""
    give_up = time.monotonic() + timeout_s
    while not service.quorum_reached.is_set():
        if time.monotonic() > give_up:
            missing = sorted(set(service.roles) - set(service.progress.hellos))
            raise RuntimeError(
                f"only {len(service.progress.hellos)} of the start quorum {service.quorum} "
                f"said hello within {timeout_s:g} s; never came: {', '.join(missing)} (see "
                "their `fl-crb edge` / `fl-crb terminal` output; a party says hello once its "
                "SuperNode is online), or lower --quorum"
            )
        await asyncio.sleep(0.1)
    note(
        f"start quorum: {len(service.progress.hellos)} of {len(service.roles)} said hello; "
        "starting the authority's rounds"
    )


async def _reports(service: RunService, wait_s: float, note) -> None:
    """Wait until every party that said hello reported, at most `wait_s`."""
    give_up = time.monotonic() + wait_s
    while set(service.progress.hellos) - set(service.reports):
        if time.monotonic() > give_up:
            missing = sorted(set(service.progress.hellos) - set(service.reports))
            note(f"no report from {', '.join(missing)} within {wait_s:g} s")
            return
        await asyncio.sleep(0.2)
