"""`fl-crb edge`: an edge host's runtime edge server, edge learner service and SuperNode.

Steps: load its bundle → fetch the run's settings (and, if the run starts from trained
weights, its learner's starting weights file, a signed request) → start the edge learner
service (`edge_learner_service`) and the runtime edge server (on `--listen`:
`--runtime-port`) → start its SuperNode against the authority's SuperLink (TLS, its own
key) → measure its clock offset and say hello with the address terminals reach its edge
server at → pass the epoch to the edge server → when the edge server is done, keep the
learner and the SuperNode up until the authority finishes its last rounds → stop them →
report (the edge server's and the learner's summaries, the learner's restarts).

The learner is supervised (`LearnerSupervisor`): one that dies during the run is started
again from its last checkpoint in S/mailbox, at most `MAX_LEARNER_RESTARTS` times
(S/learners.json, S/logs/learner-supervisor.log).

The edge server is the federation's (`fl_crb.federation.edge`: the runtime's edge server
handing the learner's signed weights to the terminals it manages as they are published);
an edge started after the epoch begins at the current slot.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import replace
from pathlib import Path

from fl_crb.federation.deploy.launch_config import NodeSpec
from fl_crb.federation.deploy.learner_supervisor import LearnerSupervisor
from fl_crb.federation.edge import MODULE as FEDERATED_EDGE_MODULE
from fl_crb.federation.edge_learner_service import EdgeServiceConfig
from fl_crb.federation.roles.party_processes import (
    give_epoch,
    party_ready,
    record_command,
    start_party,
    start_supernode,
    stop_party,
    supernode_launch,
    wait_party,
)
from fl_crb.federation.roles.party_role import PartyHost, PartyRoleConfig, read_json
from fl_crb.runtime.config import Address, EdgeConfig, FederatedEdge
from fl_crb.runtime.local_run import EXIT_GRACE_S
from fl_crb.runtime.placement import Loopback

EDGE_REPORT = ("tasks_received", "finished", "dropped", "first_slot", "overruns", "boundaries")
"""Fields of the edge server's summary the report carries."""
LEARNER_REPORT = ("version", "train_steps", "batch_files", "refused_files")
"""Fields of the learner's summary the report carries (those it has)."""


async def run_edge(config: PartyRoleConfig, say=print) -> dict:
    """Run an edge host's part of the run; returns its report."""
    party = PartyHost(config, say)
    try:
        return await _run(party, config, say)
    finally:
        party.client.stop()  # a retry still waiting in its thread (stopped by a signal)


async def _run(party: PartyHost, config: PartyRoleConfig, say) -> dict:
    state, host = party.state_dir, party.host
    settings, spec = await party.settings_as("edge")
    topology = spec.topology()
    edge = topology.edge_names.index(host)
    params = topology.mec_params()
    weights_path = await _start_weights(party) if settings.start_weights else None
    service = EdgeServiceConfig(
        name=host,
        mailbox=str(state / "mailbox"),
        edges=params.edges,
        history_slots=params.history_slots,
        trajectory_length=settings.method.trajectory_length,
        learner=replace(settings.method.learner, seed=spec.target.seed * 1000 + edge),
        summary_path=str(state / "party" / f"{host}.learner.json"),
        bundle=str(party.bundle_path),
        run_id_hex=settings.upload_run_id_hex,
        initial_weights_path=None if weights_path is None else str(weights_path),
    )
    server_config = EdgeConfig(
        run=spec,
        edge=edge,
        listen=Address(config.listen, config.runtime_port),
        summary_path=str(state / "party" / f"{host}.json"),
        federation=FederatedEdge(mailbox=str(state / "mailbox")),
    )
    learner = LearnerSupervisor(state, Loopback(), settings.startup_timeout_s)
    server = federation = None
    status, finished = None, False
    try:
        await learner.start([service])
        record_command(
            state,
            f"{host}-learner",
            [
                sys.executable,
                "-m",
                "fl_crb.federation.edge_learner_service",
                str(state / "config" / f"{host}.learner.json"),
            ],
        )
        server = await start_party(state, host, FEDERATED_EDGE_MODULE, server_config)
        port = (await party_ready(server, settings.startup_timeout_s))["port"]
        node = NodeSpec(host, "edge", node_config={"mailbox": str(state / "mailbox")})
        launch = supernode_launch(state, node, settings, party.client.host, party.bundle_path)
        federation = await start_supernode(state, launch)
        await learner.ready(time.time() + settings.startup_timeout_s)
        learner.watch()  # a learner that dies is started again from its checkpoint
        advertised = config.advertise or party.client.local_address or config.listen
        say(
            f"edge {host}: runtime server on {config.listen}:{port} (terminals reach it at "
            f"{advertised}:{port}); learner READY; SuperNode online at "
            f"{launch.superlink_address}"
        )
        epoch = await party.hello({"runtime": {"host": advertised, "port": port}})
        say(
            f"edge {host}: epoch {epoch:.3f} (in {epoch - time.time():+.1f} s); "
            f"{spec.end_slot} slots of {settings.slot_s:g} s"
        )
        await give_epoch(server, epoch)
        status = await wait_party(server, epoch + spec.end_slot * settings.slot_s + EXIT_GRACE_S)
        if status != 0:
            say(f"edge {host}: its edge server exited with status {status}; {server.tail()}")
        finished = await party.wait_until_finished()
    finally:
        if server is not None:
            await stop_party(server)
        await learner.stop()
        if federation is not None:
            await asyncio.to_thread(federation.stop)
    edge_summary = read_json(state / "party" / f"{host}.json")
    learner_summary = read_json(state / "party" / f"{host}.learner.json")
    report = {
        "edge_server_exit": status,
        "authority_finished": finished,
        "edge_server": {k: edge_summary[k] for k in EDGE_REPORT if k in edge_summary},
        "learner": {k: learner_summary[k] for k in LEARNER_REPORT if k in learner_summary},
        "learner_refusals": learner_summary.get("refusals", {}),
        "learner_restarts": learner.restarts.get(host, 0),
        "learner_given_up": learner.given_up.get(host),
    }
    await party.report(report)
    return report


async def _start_weights(party: PartyHost) -> Path:
    """The learner's starting weights file, fetched from the authority (signed request)."""
    data = await asyncio.to_thread(
        party.client.signed, "/weights", {"kind": "weights"}, party.signer
    )
    path = party.state_dir / "start-weights.npz"
    path.write_bytes(data)
    party.say(f"edge {party.host}: starting weights, {len(data)} bytes, in {path}")
    return path
