"""Pieces of the federated coordinator: starting weights, the authority's supervisor, results.

- `start_weights_files`: a trained run folder or a weights file → one weights file per
  edge learner (CRB-DRQN trains one network per edge), as wide as the method's learners.
- `supervise_authority`: runs the authority (`flwr run`, mode "authority") and starts it
  again when it dies before it was asked to stop, up to `max_authority_restarts` times;
  past them it is given up (`AuthorityGivenUp`), and `authority_end` records why.
  A new run recovers the durable pool, the replay guard and the acknowledgements from the
  authority's folder. A ServerApp killed outright leaves its `flwr run` streaming until
  the SuperLink gives the run up, so the supervisor also watches the process whose pid
  the authority wrote to ready.json, and starts the next run as soon as it is gone. A
  SuperLink that dies ends the authority's run with it; the next run starts once the
  SuperLink serves again (`LocalFederation.serving`, its own supervisor restarts it) and
  the old ServerApp process is gone (two authorities never share the pool).
- `start_learner`, `learner_ready`, `stop_learners`: the edge learner services' processes.
- `terminal_summary`, `federation_summary`, `run_record`: the run folder's records, with
  every party's refusals of weights, batches, acks, uploads and node identities, each
  node's missed rounds and reconnections, and the nodes lost at the end (`lost_nodes`)
  with the uploads they still hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

from fl_crb.federation.deploy.launch_config import FederationError
from fl_crb.federation.deploy.launcher import LocalFederation
from fl_crb.federation.deploy.processes import alive
from fl_crb.federation.edge_learner_service import EdgeServiceConfig
from fl_crb.federation.mailbox import EdgeMailbox, RelayStore, TerminalMailbox
from fl_crb.federation.metering.accounting import read_records, totals
from fl_crb.learn.method_config import MethodConfig
from fl_crb.mec.params import MECParams
from fl_crb.policies.spec import TrainedRun, WeightsFile
from fl_crb.runtime.config import save_config
from fl_crb.runtime.local_run import SINGLE_THREADED
from fl_crb.runtime.party import READY
from fl_crb.runtime.placement import Placement

AUTHORITY_RUN_LIMIT_S = 24 * 3600.0
"""`flwr run` of the authority is given up after this long (the run ends it far sooner)."""
EXIT_REPORT_GRACE_S = 10.0
"""After the authority, asked to stop, has ended its process, how long its `flwr run` may
take to report the run's end (a normal end reports within about a second)."""
DEATH_REPORT_GRACE_S = 2.0
"""After the authority's process is gone while the run goes on, how long its `flwr run`
may take to report the run's end (with the ServerApp's exception, if it raised one)
before the run counts as dead and the next one starts: a killed ServerApp's run is
never reported until the SuperLink gives it up, and every second here is a second
without rounds."""
OLD_SERVERAPP_EXIT_S = 15.0
"""How long the next run waits for the previous ServerApp process to be gone (it exits
with its SuperExec when the SuperLink dies, within a second or so) before starting."""


def start_weights_files(
    start: TrainedRun | WeightsFile | None, method: MethodConfig, params: MECParams, folder: Path
) -> list[str] | None:
    """One weights file per edge learner from `start` (a trained run's networks are
    exported into `folder`), or None to start fresh; refuses a start whose networks are
    not as wide as the method's learners (`fl_crb.training.start_weights`)."""
    if start is None:
        return None
    from fl_crb.training.start_weights import edge_weights_files, resolve_widths

    resolve_widths(start, method.learner.hidden, method.learner.lstm_hidden)
    return edge_weights_files(start, params, folder)


async def wait_for_file(path: Path, deadline: float, watched: asyncio.Task) -> None:
    """Wait until `path` exists; fail if `watched` ends first or at `deadline`."""
    while not path.exists():
        if watched.done():
            watched.result()  # raises its error
            raise RuntimeError(f"the authority ended before writing {path}")
        if time.time() > deadline:
            raise RuntimeError(f"the authority did not write {path} in time; see its log")
        await asyncio.sleep(0.1)


def _authority_pid(state_dir: Path) -> int | None:
    try:
        return int(json.loads((state_dir / "ready.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


class AuthorityGivenUp(RuntimeError):
    """The authority failed more often than `max_authority_restarts` allows."""


async def supervise_authority(
    federation: LocalFederation, run_config: dict, state_dir: Path, config
) -> int:
    """Run the authority until it completes after the stop request; returns its restarts,
    or raises `AuthorityGivenUp` once it has failed past `config.max_authority_restarts`."""
    restarts = 0
    while True:
        previous = _authority_pid(state_dir)
        if restarts:
            await _until_next_run_may_start(federation, previous, config)
        superlink_restarts = _superlink_restarts(federation)
        run = asyncio.ensure_future(  # the next run stands by, ready to be submitted
            asyncio.to_thread(federation.run_app, run_config, AUTHORITY_RUN_LIMIT_S, None, True)
        )
        # A run given up below (its ServerApp killed) or left when the supervisor is
        # cancelled ends in its thread later; its outcome is noted, never raised unseen.
        run.add_done_callback(lambda done: done.cancelled() or done.exception())
        gone_since = None
        while not run.done():
            pid = _authority_pid(state_dir)
            if gone_since is None and pid is not None and pid != previous and not alive(pid):
                gone_since = time.monotonic()
            stopping = (state_dir / "stop").exists()
            grace_s = EXIT_REPORT_GRACE_S if stopping else DEATH_REPORT_GRACE_S
            if gone_since is not None and time.monotonic() - gone_since > grace_s:
                break  # killed: its flwr run may stream on for a while; start the next
            await asyncio.sleep(0.1)
        if run.done():
            try:
                outcome = run.result()
            except FederationError as error:
                outcome = error
            if not isinstance(outcome, Exception) and outcome.completed:
                return restarts
            reason = getattr(outcome, "details", None) or str(outcome)
        else:
            reason = f"its ServerApp process {_authority_pid(state_dir)} is gone"
        if _superlink_restarts(federation) != superlink_restarts or not (
            federation.superlink_serving()
        ):
            reason = f"the SuperLink died, and the run with it ({reason})"
        if restarts >= config.max_authority_restarts:
            raise AuthorityGivenUp(f"the authority failed {restarts + 1} times; last: {reason}")
        restarts += 1
        with open(state_dir / "supervisor.log", "a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%H:%M:%S')} restart {restarts}: {reason}\n")


def _superlink_restarts(federation: LocalFederation) -> int:
    supervisor = federation.supervisor
    return supervisor.restarts.get("superlink", 0) if supervisor is not None else 0


async def _until_next_run_may_start(
    federation: LocalFederation, previous_pid: int | None, config
) -> None:
    """Wait until the previous ServerApp process is gone and the SuperLink serves; a
    SuperLink that is not back within the parties' start-up timeout fails the run."""
    give_up = time.monotonic() + OLD_SERVERAPP_EXIT_S
    while previous_pid is not None and alive(previous_pid) and time.monotonic() < give_up:
        await asyncio.sleep(0.05)
    timeout_s = config.parties.startup_timeout_s
    give_up = time.monotonic() + timeout_s
    while not federation.superlink_serving():
        if time.monotonic() > give_up:
            raise RuntimeError(
                f"the SuperLink did not serve again within {timeout_s:g} s; the authority cannot "
                f"run (see {federation.run_dir / 'logs'})"
            )
        await asyncio.sleep(0.05)


async def authority_end(supervisor: asyncio.Task, state_dir: Path, wait_s: float) -> int:
    """Wait for the authority, asked to stop, to finish its last rounds, at most `wait_s`;
    its restarts. One that does not finish by then, or that its supervisor gave up
    earlier (failed past its restarts, perhaps mid-run), is given up: a line in
    supervisor.log says why, its restarts are counted from that log, and the run's
    results are still written (its pool is durable); the caller finds no authority
    summary and names the authority failed."""
    try:
        return await asyncio.wait_for(asyncio.shield(supervisor), wait_s)
    except TimeoutError:
        supervisor.cancel()
        reason = f"its last rounds took over {wait_s:g} s"
    except AuthorityGivenUp as given_up:
        reason = str(given_up)
    log = state_dir / "supervisor.log"
    restarts = len(log.read_text().splitlines()) if log.exists() else 0
    with open(log, "a", encoding="utf-8") as file:
        file.write(f"{time.strftime('%H:%M:%S')} given up: {reason}\n")
    return restarts


def terminal_summary(out: Path, host: str) -> dict[str, object]:
    """A terminal's uploads (from its party summary) and the weight versions it acted with."""
    party = out / "parties" / f"{host}.json"
    summary = json.loads(party.read_text()) if party.exists() else {}
    versions: dict[str, int] = {}
    tasks = out / "parties" / f"{host}.tasks.jsonl"
    if tasks.exists():
        for line in tasks.open():
            label = json.loads(line)["decided_by"]
            versions[label] = versions.get(label, 0) + 1
    return {
        "refusals": _merged(
            TerminalMailbox(out / "mailboxes" / host).handler_state()["refusals"],
            summary.get("refusals", {}),
        ),
        "uploads": summary.get("uploads", 0),
        "posted": summary.get("posted", 0),
        "faults_posted": summary.get("faults_posted", {}),
        "weights_versions_loaded": summary.get("weights_versions_loaded", []),
        "tasks_by_decider": versions,
        "network_widths": [summary.get("hidden"), summary.get("lstm_hidden")],
        **({"relay": relay} if (relay := _terminal_relay(summary)) else {}),
    }


def _terminal_relay(summary: dict) -> dict | None:
    """A relaying terminal's side of the relay uplink: what it handed its edge, the
    acknowledgements it took, what its outbox held at its end (None: direct uplink)."""
    handed, outbox = summary.get("upload_relay"), summary.get("relay_outbox")
    if handed is None or outbox is None:
        return None
    return {**handed, **outbox}


async def start_learner(
    out: Path, service: EdgeServiceConfig, placement: Placement
) -> asyncio.subprocess.Process:
    """Start an edge learner service on its edge's host, stdout piped for READY."""
    path = out / "config" / f"{service.name}.learner.json"
    save_config(service, path)
    argv = [sys.executable, "-m", "fl_crb.federation.edge_learner_service", str(path)]
    with (out / "logs" / f"{service.name}-learner.log").open("wb") as log:
        return await asyncio.create_subprocess_exec(
            *placement.command(service.name, argv),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env={**os.environ, **SINGLE_THREADED},
            start_new_session=True,  # a Ctrl-C reaches the coordinator, which stops it
        )


async def learner_ready(
    process: asyncio.subprocess.Process, name: str, logs: Path, ready_by: float
) -> None:
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), max(0.0, ready_by - time.time()))
    except TimeoutError:
        raise RuntimeError(f"{name} did not become READY in time; see {logs / name}.log") from None
    if not line.decode(errors="replace").startswith(READY):
        raise RuntimeError(f"{name} failed to start (said {line!r}); see {logs / name}.log")


async def stop_learners(learners: list[asyncio.subprocess.Process]) -> None:
    """SIGTERM each learner (it finishes its batch and writes its summary), then reap."""
    for learner in learners:
        if learner.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                learner.send_signal(signal.SIGTERM)
    for learner in learners:
        try:
            await asyncio.wait_for(learner.wait(), 30)
        except TimeoutError:
            learner.kill()
            await learner.wait()


def run_record(config, spec, epoch: float, placement: Placement, parties: list) -> dict:
    return {
        "placement": placement.label,
        "run": asdict(spec),
        "federated": asdict(config),
        "epoch_unix_s": epoch,
        "parties": [party.name for party in parties],
    }


def federation_summary(
    out: Path, edges: list[str], hosts: list[str], restarts: int, wall_s: float
) -> dict:
    """Rounds, uploads, rejections, pool, weight versions, network widths and bytes."""
    authority = json.loads((out / "authority" / "summary.json").read_text())
    rounds = [json.loads(line) for line in (out / "authority" / "rounds.jsonl").open()]
    events = out / "authority" / "events.jsonl"
    events = [json.loads(line) for line in events.open()] if events.exists() else []
    rejected: dict[str, int] = {}
    for event in events:
        if event["kind"] == "rejected" and event.get("message", "upload") == "upload":
            rejected[event["code"]] = rejected.get(event["code"], 0) + 1
    terminals = {host: terminal_summary(out, host) for host in hosts}
    learners = {edge: out / "parties" / f"{edge}.learner.json" for edge in edges}
    learners = {e: json.loads(p.read_text()) for e, p in learners.items() if p.exists()}
    by_party = {"authority": authority.get("refusals", {})}
    by_party |= {e: EdgeMailbox(out / "mailboxes" / e).learner_state()["refusals"] for e in edges}
    by_party |= {host: terminal["refusals"] for host, terminal in terminals.items()}
    exchanges = [r["exchange_s"] for r in rounds]
    return {
        "authority_finished": True,
        "rounds": authority["rounds"],
        "authority_restarts": restarts,
        "mean_round_exchange_s": sum(exchanges) / len(exchanges) if exchanges else None,
        "round_deadline_s": authority.get("round_deadline_s"),
        "quorum_nodes": authority.get("quorum_nodes"),
        "participation": authority.get("participation", {}),
        "lost_nodes": lost_nodes(out, authority.get("lost_nodes", {})),
        "uploads_posted": sum(t["posted"] for t in terminals.values()),
        "uploads_accepted": authority["accepted_total"],
        "uploads_rejected": rejected,
        "refusals": _merged(*by_party.values()),
        "refusals_by_party": by_party,
        "node_identity": authority.get("node_identity"),
        "test_transit_faults_injected": authority.get("test_transit_faults_injected", {}),
        "pool_size": authority["pool_size"],
        "edge_versions": authority["edge_versions"],
        "learner_widths": {e: [s["hidden"], s["lstm_hidden"]] for e, s in learners.items()},
        "terminals": terminals,
        "bytes": totals(read_records(out / "authority" / "accounting.jsonl")),
        "wall_s": round(wall_s, 1),
        **({"relay": relay_summary(out, authority, edges)} if "relay" in authority else {}),
    }


def relay_summary(out: Path, authority: dict, edges: list[str]) -> dict:
    """The relay uplink's account: per edge, the uploads its server took and the test
    faults it injected, what its store held at the end, the uploads the authority took
    from it; the sequence gaps the authority saw per terminal; and the uploads refused
    because an edge relayed them for a terminal it does not manage."""
    per_edge = {}
    for edge in edges:
        party = out / "parties" / f"{edge}.json"
        store = (json.loads(party.read_text()) if party.exists() else {}).get("upload_store")
        per_edge[edge] = {
            "server": store,
            "store_backlog_at_end": RelayStore(out / "mailboxes" / edge).backlog(),
            "uploads_relayed": authority["relay"]["uploads_relayed_by_edge"].get(edge, 0),
        }
    refused = authority.get("refusals", {}).get("upload", {})
    return {
        "edges": per_edge,
        "sequence_gaps_by_terminal": authority["relay"]["sequence_gaps_by_terminal"],
        "not_managed_refused": refused.get("not-managed", 0),
    }


def lost_nodes(out: Path, lost: dict[str, dict]) -> dict[str, dict]:
    """The nodes the authority did not hear from in its last round (`Authority.run`), each
    with `uploads_held`: the sealed uploads in its terminal's outbox that the pool lacks
    (post ids above the last one the authority accepted from it; 0 for an edge). They
    stay there, never acknowledged; `outbox_uploads` also counts those the pool has but
    whose acknowledgement never reached the terminal."""
    result = {}
    for name, reported in lost.items():
        node = {key: value for key, value in reported.items() if key != "acknowledged_post"}
        acknowledged = reported.get("acknowledged_post") or 0
        if node["role"] != "terminal":
            result[name] = {**node, "uploads_held": 0, "outbox_uploads": 0}
            continue
        outbox = TerminalMailbox(out / "mailboxes" / name)
        posts = [post for post, _ in outbox.pending(outbox.backlog())]
        held = sum(1 for post in posts if post > acknowledged)
        result[name] = {**node, "uploads_held": held, "outbox_uploads": len(posts)}
    return result


def _merged(*refusals: dict) -> dict[str, dict[str, int]]:
    """Refusal counts {kind: {code: count}} summed."""
    total: dict[str, dict[str, int]] = {}
    for counts in refusals:
        for kind, codes in counts.items():
            for code, count in codes.items():
                total.setdefault(kind, {})[code] = total.get(kind, {}).get(code, 0) + count
    return total
