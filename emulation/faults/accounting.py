"""After a run with faults: did every task and every acknowledged upload end up somewhere?

`accounting(run_dir, summary, records)` gives summary.json's `accounting` object:

- `tasks_unaccounted`: the data plane's own count (tasks neither finished, dropped at
  their deadline, nor counted as lost to a fault; `fl_crb.runtime.local_run`);
- `acknowledged_uploads_lost`: uploads the authority acknowledged to a terminal but that
  its durable pool does not account for. A terminal's collect handler keeps the last
  acknowledgement it applied (mailboxes/HOST/handler.json: every post id up to `ack` is
  processed). The pool's commit record (authority/pool/commit.json, written after the
  journal's fsync) holds, per terminal, the latest upload sequence number it stored;
  the authority's events.jsonl names every refused upload by post id. A terminal posts
  genuine uploads only (an emulation injects no upload faults), so its post ids and
  sequence numbers run together from 1: an acknowledged post above both the stored
  sequence and the last refused post was acknowledged without being kept. Must be 0.
  None in a run without the federation (no uploads);
- `restarts`: each supervised party's restarts as the data plane counted them
  (`authority`, each edge learner's where the run counts them, and each terminal's and
  edge server's the coordinator supervised: `terminal t2`, `edge-server edge1`, from the
  summary's `restarts`), and `restarts_seen` as the fault injector saw them happen;
- `dead_parties`: the parties the data plane reported dead, and which fault killed each
  (the kill of that party, not of another party on its host).
"""

from __future__ import annotations

import json
from pathlib import Path

from emulation.faults.inject import FaultRecord

POOL_COMMIT = Path("authority") / "pool" / "commit.json"
EVENTS = Path("authority") / "events.jsonl"


def accounting(
    run_dir: Path, summary: dict[str, object], records: list[FaultRecord]
) -> dict[str, object]:
    """summary.json's `accounting` object (see the module docstring)."""
    federation = summary.get("federation")
    lost, acknowledged, problem = None, None, None
    if isinstance(federation, dict):
        try:
            per_terminal = acknowledged_uploads(run_dir, list(federation.get("terminals", {})))
        except ValueError as error:
            problem = str(error)
        else:
            lost = {name: entry["lost"] for name, entry in per_terminal.items() if entry["lost"]}
            acknowledged = sum(entry["acknowledged"] for entry in per_terminal.values())
    killers = {
        r.target: r.event
        for r in records
        if r.kind in ("kill", "restart") and r.applied_s is not None and r.error is None
    }
    dead = summary.get("dead_parties") or []
    return {
        "tasks_unaccounted": summary.get("tasks_unaccounted"),
        "acknowledged_uploads": acknowledged,
        "acknowledged_uploads_lost": None if lost is None else sum(lost.values()),
        "acknowledged_uploads_lost_by_terminal": lost,
        **({"uploads_not_accounted_because": problem} if problem else {}),
        "restarts": _restarts(federation) | _data_plane_restarts(summary, records),
        "restarts_seen": {
            r.target: sum(1 for s in records if s.target == r.target and s.restarted_s)
            for r in records
            if r.kind == "restart"
        },
        "dead_parties": [
            {"party": d["party"], "killed_by_event": killers.get(_fault_target(d))}
            for d in dead
            if isinstance(d, dict)
        ],
    }


def acknowledged_uploads(run_dir: Path, terminals: list[str]) -> dict[str, dict[str, int]]:
    """Per terminal: uploads acknowledged to it, and those of them the pool lacks."""
    commit_path = run_dir / POOL_COMMIT
    try:
        stored = json.loads(commit_path.read_text())["sequences"]
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(
            f"{commit_path}: cannot read the authority's pool commit record ({error}); the "
            "run's uploads cannot be accounted for"
        ) from None
    refused: dict[str, int] = {}
    events_path = run_dir / EVENTS
    if events_path.exists():
        for line in events_path.read_text().splitlines():
            event = json.loads(line)
            if event.get("kind") == "rejected" and "post" in event:
                node = event["node"]
                refused[node] = max(refused.get(node, 0), int(event["post"]))
    result = {}
    for name in terminals:
        handler = run_dir / "mailboxes" / name / "handler.json"
        ack = int(json.loads(handler.read_text()).get("ack", 0)) if handler.exists() else 0
        kept_through = max(int(stored.get(name, 0)), refused.get(name, 0))
        result[name] = {"acknowledged": ack, "lost": max(0, ack - kept_through)}
    return result


def _fault_target(death: dict) -> str:
    """How a schedule names the data-plane party that died (`edge-server edge4`, not the
    `edge-learner edge4` on the same host)."""
    kind = "edge-server" if death.get("role") == "edge" else "terminal"
    return f"{kind} {death['party']}"


def _data_plane_restarts(
    summary: dict[str, object], records: list[FaultRecord]
) -> dict[str, object]:
    """The terminals' and edge servers' restarts as their coordinator counted them, each
    named as the schedule names it (`terminal t2`); the coordinator supervises the hosts
    the schedule restarts."""
    counted = summary.get("restarts")
    if not isinstance(counted, dict):
        return {}
    kinds = {
        str(death["party"]): "edge-server" if death.get("role") == "edge" else "terminal"
        for death in summary.get("restarted_deaths") or []
        if isinstance(death, dict)
    }
    for record in records:
        kind, _, host = record.target.partition(" ")
        if record.kind in ("kill", "stop", "restart") and kind in ("terminal", "edge-server"):
            kinds[host] = kind
    return {f"{kinds.get(name, 'party')} {name}": count for name, count in counted.items()}


def _restarts(federation: object) -> dict[str, object]:
    """The supervised parties' restarts as the data plane counted them."""
    if not isinstance(federation, dict):
        return {}
    restarts: dict[str, object] = {
        "authority": federation.get("authority_restarts", 0),
        "superlink": federation.get("superlink_restarts", 0),
    }
    for key, kind in (("learner_restarts", "edge-learner"), ("supernode_restarts", "supernode")):
        counted = federation.get(key)
        if isinstance(counted, dict):
            restarts |= {f"{kind} {host}": count for host, count in counted.items()}
    return restarts
