"""`fl-crb terminal`: a terminal host's federated runtime terminal party and its SuperNode.

Steps: load its bundle → fetch the run's settings and wait until every edge said where
its runtime server listens → start its SuperNode against the authority's SuperLink (TLS,
its own key) and its terminal party (`python -m fl_crb.federation.terminal CONFIG`: the
runtime's terminal with the federated decider; its mailbox in S/mailbox, which its
SuperNode's handlers share) → measure its clock offset and say hello → pass the epoch
to the party → when the party is done, keep the SuperNode up until the authority has
drained its outbox and finished → stop → report (the party's tasks, uploads, the weight
versions it acted with).

Weights: its edge server hands the terminal its learner's signed weights over their
runtime connection (`fl_crb.federation.edge`), version 0 before the epoch, each newer
one as soon as it is published; the authority's rounds carry them too. Late joining: a
terminal that learns an epoch already past begins at the slot under way (its summary's
`first_slot`); the tasks of the slots before never arrived.
"""

from __future__ import annotations

import asyncio
import json
import time

from fl_crb.federation.deploy.launch_config import NodeSpec
from fl_crb.federation.roles.party_processes import (
    give_epoch,
    party_ready,
    start_party,
    start_supernode,
    stop_party,
    supernode_launch,
    wait_party,
)
from fl_crb.federation.roles.party_role import PartyHost, PartyRoleConfig, read_json
from fl_crb.federation.terminal import MODULE as FEDERATED_TERMINAL_MODULE
from fl_crb.policies.spec import Federated
from fl_crb.runtime.config import FederatedTerminal, TerminalConfig
from fl_crb.runtime.local_run import EXIT_GRACE_S

TERMINAL_REPORT = (
    "tasks",
    "finished",
    "dropped",
    "edge_lost",
    "uploads",
    "posted",
    "weights_versions_loaded",
    "refusals",
    "overruns",
    "boundaries",
)
"""Fields of the terminal party's summary the report carries (those it has)."""


async def run_terminal(config: PartyRoleConfig, say=print) -> dict:
    """Run a terminal host's part of the run; returns its report."""
    party = PartyHost(config, say)
    try:
        return await _run(party, config, say)
    finally:
        party.client.stop()  # a retry still waiting in its thread (stopped by a signal)


async def _run(party: PartyHost, config: PartyRoleConfig, say) -> dict:
    state, host = party.state_dir, party.host
    settings, spec = await party.settings_as("terminal")
    topology = spec.topology()
    edges = topology.edge_names
    say(f"terminal {host}: waiting for the edges' runtime addresses ({', '.join(edges)})")
    progress = await party.wait_for(
        lambda p: set(edges) <= set(p.edge_addresses()), "edge addresses", config.give_up_s
    )
    addresses = progress.edge_addresses()
    mailbox = str(state / "mailbox")
    terminal_config = TerminalConfig(
        run=spec,
        terminal=topology.terminal_names.index(host),
        edges=tuple(addresses[edge] for edge in edges),
        policy=Federated(),
        pace_uplink=settings.pace_uplink,
        pace_ticks_per_slot=settings.pace_ticks_per_slot,
        task_log_path=str(state / "party" / f"{host}.tasks.jsonl"),
        summary_path=str(state / "party" / f"{host}.json"),
        federation=FederatedTerminal(
            terminal_id=host,
            mailbox=mailbox,
            bundle=str(party.bundle_path),
            upload_run_id_hex=settings.upload_run_id_hex,
            agent=settings.method.agent_config(),
            epsilon=settings.epsilon,
        ),
    )
    node = NodeSpec(
        host,
        "terminal",
        node_config={
            "mailbox": mailbox,
            "bundle": str(party.bundle_path),
            "run-id": settings.upload_run_id_hex,
        },
    )
    status, finished, terminal, federation = None, False, None, None
    try:
        terminal = await start_party(state, host, FEDERATED_TERMINAL_MODULE, terminal_config)
        launch = supernode_launch(state, node, settings, party.client.host, party.bundle_path)
        federation = await start_supernode(state, launch)
        await party_ready(terminal, settings.startup_timeout_s)
        reached = ", ".join(f"{e} {a.host}:{a.port}" for e, a in addresses.items())
        say(
            f"terminal {host}: connected to {reached}; SuperNode online at "
            f"{launch.superlink_address}"
        )
        epoch = await party.hello()
        if time.time() > epoch:
            late_s = time.time() - epoch
            slot = int(late_s / settings.slot_s)
            say(f"terminal {host}: the run started {late_s:.1f} s ago; joining at slot {slot}")
        else:
            say(f"terminal {host}: epoch {epoch:.3f} (in {epoch - time.time():+.1f} s)")
        await give_epoch(terminal, epoch)
        status = await wait_party(terminal, epoch + spec.end_slot * settings.slot_s + EXIT_GRACE_S)
        if status != 0:
            say(f"terminal {host}: its party exited with status {status}; {terminal.tail()}")
        finished = await party.wait_until_finished()
    finally:
        if terminal is not None:
            await stop_party(terminal)
        if federation is not None:
            await asyncio.to_thread(federation.stop)
    summary = read_json(state / "party" / f"{host}.json")
    report = {
        "party_exit": status,
        "authority_finished": finished,
        "terminal": {k: summary[k] for k in TERMINAL_REPORT if k in summary},
        "tasks_by_decider": _tasks_by_decider(state / "party" / f"{host}.tasks.jsonl"),
    }
    await party.report(report)
    return report


def _tasks_by_decider(path) -> dict[str, int]:
    """How many of its tasks each decider label (crb-drqn@VERSION) decided (a task is
    logged as it arrives and again as it resolves: counted once)."""
    labels: dict[int, str] = {}
    if path.exists():
        for line in path.open():
            try:
                task = json.loads(line)
                labels[int(task["task_id"])] = str(task["decided_by"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a kill
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return counts
