"""The role deployment's summary, written by `fl-crb authority` as S/summary.json.

It reads only the authority's own state directory (the authority's folder: its summary,
rounds and rejection events) and what the parties told the run service (their clock
offsets in their hellos, their end-of-run reports): nothing from another host's disk.

    security        {"tls": bool, "node_auth": bool}
    rounds, authority_restarts, mean_round_exchange_s, pool_size, edge_versions
    uploads_posted (the terminals' reports), uploads_accepted, uploads_rejected {code: n}
    refusals        the authority's own refusals {kind: {code: n}}
    tasks, finished, dropped   summed over the terminals' reports
    clock_offsets   {host: {offset_ms, uncertainty_ms, flagged}}; flagged: above a tenth
                    of a slot (`clock_offset.OFFSET_LIMIT_SLOTS`)
    flagged_offsets the hosts flagged
    service_refusals  refused requests to the run service {code: n}, and their messages
    parties         each party's report (its Flower path in `flower`); missing_reports: who
                    said hello but never reported
    flower          the SuperLink's Flower (`LocalFederation.flower_record`)
"""

from __future__ import annotations

import json
from pathlib import Path

from fl_crb.federation.roles.clock_offset import OFFSET_LIMIT_SLOTS, flagged
from fl_crb.federation.roles.run_service import RunService
from fl_crb.federation.roles.settings import RunSettings


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open()] if path.exists() else []


def authority_summary(
    state: Path,
    service: RunService,
    settings: RunSettings,
    restarts: int | None,
    flower: dict,
    wall_s: float,
) -> dict:
    """The summary of the run the authority in `state` served (see the module docstring)."""
    folder = state / "authority"
    own_path = folder / "summary.json"
    own = json.loads(own_path.read_text()) if own_path.exists() else {}
    rounds = _lines(folder / "rounds.jsonl")
    rejected: dict[str, int] = {}
    for event in _lines(folder / "events.jsonl"):
        if event.get("kind") == "rejected" and event.get("message", "upload") == "upload":
            rejected[event["code"]] = rejected.get(event["code"], 0) + 1
    exchanges = [r["exchange_s"] for r in rounds if "exchange_s" in r]
    reports = dict(service.reports)
    terminals = [r.get("terminal", {}) for r in reports.values() if r.get("role") == "terminal"]
    offsets = {
        host: {
            "offset_ms": round(offset.offset_s * 1e3, 3),
            "uncertainty_ms": round(offset.delay_s * 5e2, 3),
            "flagged": flagged(offset.offset_s, settings.slot_s),
        }
        for host, offset in sorted(service.offsets.items())
    }
    return {
        "security": {"tls": settings.tls, "node_auth": settings.node_auth},
        "run_id": settings.upload_run_id_hex,
        "epoch_unix_s": service.progress.epoch_unix_s,
        "slot_s": settings.slot_s,
        "completed": restarts is not None and bool(own),
        "rounds": own.get("rounds", len(rounds)),
        "authority_restarts": restarts,
        "mean_round_exchange_s": sum(exchanges) / len(exchanges) if exchanges else None,
        "uploads_posted": sum(t.get("posted", 0) for t in terminals),
        "uploads_accepted": own.get("accepted_total"),
        "uploads_rejected": rejected,
        "refusals": own.get("refusals", {}),
        "pool_size": own.get("pool_size"),
        "edge_versions": own.get("edge_versions", {}),
        "tasks": sum(t.get("tasks", 0) for t in terminals),
        "finished": sum(t.get("finished", 0) for t in terminals),
        "dropped": sum(t.get("dropped", 0) for t in terminals),
        "offset_limit_ms": OFFSET_LIMIT_SLOTS * settings.slot_s * 1e3,
        "clock_offsets": offsets,
        "flagged_offsets": [host for host, o in offsets.items() if o["flagged"]],
        "hellos": list(service.progress.hellos),
        "service_refusals": dict(service.refusals),
        "service_refused": list(service.refused),
        "parties": reports,
        "missing_reports": sorted(set(service.progress.hellos) - set(reports)),
        "flower": flower,
        "wall_s": round(wall_s, 1),
    }
