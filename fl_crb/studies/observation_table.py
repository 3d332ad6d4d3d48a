"""Who observes what, per design: derived from the designs' message flows, not written by hand.

A design is a list of `Flow`s: what travels from which party to which, whose data it
holds, how the sender's identity travels with it, whether it is sealed end to end, and
whether it passes the SuperLink (the control plane, TLS-protected on the wire when TLS
is on) or goes directly over the network (the data plane: offloaded tasks, plain TCP).
`observations` applies one rule per kind of party:

- a flow's sender and receiver read its content and know who sent it (unless the
  identity was stripped before it was sent);
- a party that carries a flow on between them (a relaying edge server, `relayed_by`)
  reads what is not sealed, sees a cleartext identity, and sees every size and time;
- the SuperLink operator relays every control-plane flow: it reads what is not sealed,
  sees a cleartext identity, and sees every size and time;
- a network observer sees sizes and times of every flow; without TLS it reads what the
  SuperLink reads, plus the data plane; with TLS only the data plane's contents and, for
  the control plane, which address talks to the SuperLink.
The table of docs/threat-model.md is the same model written as prose; this one is
generated, for the three designs the study compares.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

PARTIES = (
    "terminal",
    "edge server",
    "authority",
    "SuperLink operator",
    "network observer, no TLS",
    "network observer, TLS",
)
"""Rows of the table, in order."""

ITEMS = ("trajectories", "weights", "task data")
"""Kinds of data a flow carries."""

COLUMNS = (
    "trajectory contents",
    "which terminal a trajectory came from",
    "Q-network weights",
    "offloaded task data",
    "sizes and timing",
)
"""Columns of the table, in order."""


@dataclass(frozen=True)
class Flow:
    """One kind of message of a design."""

    name: str
    """What it is, e.g. "trajectory upload"."""
    sender: str
    """Party sending it (one of `PARTIES`)."""
    receiver: str
    """Party it is meant for."""
    item: str
    """Kind of data it carries (one of `ITEMS`)."""
    scope: str
    """Whose data: "own" (the sending terminal's), "sampled" (anonymous samples of all
    terminals' data), "all", or "offloaders" (each terminal that offloads to the edge)."""
    identity: str
    """How the terminal the data belongs to is known: "cleartext" (readable in transit:
    a header or the network address), "sealed" (inside the sealed content), "stripped"."""
    sealed: bool
    """Content encrypted end to end for the receiver."""
    control_plane: bool
    """Relayed by the SuperLink (Flower message); else sent directly (data plane)."""
    on_network: bool = True
    """False for data that stays on one device (a terminal training on its own data)."""
    relayed_by: str = ""
    """Party that carries it on between sender and receiver (the relay uplink's edge
    server); empty: none."""


_OFFLOAD = Flow(
    "task offload", "terminal", "edge server", "task data", "offloaders", "cleartext", False, False
)
_UPLOAD = Flow(
    "trajectory upload", "terminal", "authority", "trajectories", "own", "cleartext", True, True
)
_BATCH = Flow(
    "training batch", "authority", "edge server", "trajectories", "sampled", "stripped", False, True
)
_WEIGHTS_UP = Flow(
    "trained weights", "edge server", "authority", "weights", "all", "cleartext", False, True
)
_WEIGHTS_DOWN = Flow(
    "weights to terminals", "authority", "terminal", "weights", "all", "cleartext", False, True
)
_WEIGHTS_FROM_EDGE = Flow(
    "weights from the edge", "edge server", "terminal", "weights", "all", "cleartext", False, False
)
"""An edge hands each new version, signed, to its terminals over their runtime connection
(plain TCP); the authority relays one only to a terminal whose edge link is behind."""
_RELAYED_UPLOADS = tuple(
    Flow(
        name,
        "terminal",
        "authority",
        "trajectories",
        "own",
        "cleartext",
        True,
        control_plane,
        relayed_by="edge server",
    )
    for name, control_plane in (
        ("upload handed to the edge", False),
        ("uploads relayed by the edge", True),
    )
)
"""The relay uplink's upload: sealed for the authority, handed to the managing edge over
the runtime connection, carried on in the edge SuperNode's `train` reply."""

DESIGNS: dict[str, tuple[Flow, ...]] = {
    "crb-drqn (this design)": (
        _OFFLOAD,
        _UPLOAD,
        _BATCH,
        _WEIGHTS_UP,
        _WEIGHTS_FROM_EDGE,
        _WEIGHTS_DOWN,
    ),
    "crb-drqn, relay uplink": (
        _OFFLOAD,
        *_RELAYED_UPLOADS,
        _BATCH,
        _WEIGHTS_UP,
        _WEIGHTS_FROM_EDGE,
    ),
    "independent learning, no uploads": (
        _OFFLOAD,
        Flow(
            "local training",
            "terminal",
            "terminal",
            "trajectories",
            "own",
            "stripped",
            False,
            False,
            False,
        ),
        Flow(
            "local weights",
            "terminal",
            "terminal",
            "weights",
            "own",
            "stripped",
            False,
            False,
            False,
        ),
    ),
    "uploads without encryption": (
        _OFFLOAD,
        Flow(
            "trajectory upload",
            "terminal",
            "authority",
            "trajectories",
            "own",
            "cleartext",
            False,
            True,
        ),
        _BATCH,
        _WEIGHTS_UP,
        _WEIGHTS_DOWN,
    ),
}
"""The designs compared: CRB-DRQN with sealed uploads and an anonymous pool (each
terminal a SuperNode, `--uplink direct`; or handing its uploads to its edge, `--uplink
relay`); each terminal learning alone on its own device (earlier DRL offloading work);
CRB-DRQN with uploads sent as plain Flower messages."""

_RANK = {"no": 0, "own": 1, "sampled batches, no ids": 2, "offloaders'": 2, "all terminals'": 3}


def _reads(party: str, flow: Flow) -> bool:
    """Whether `party` can read `flow`'s content."""
    if party in (flow.sender, flow.receiver):
        return True
    if not flow.on_network:
        return False
    if party == flow.relayed_by:
        return not flow.sealed
    if party == "SuperLink operator":
        return flow.control_plane and not flow.sealed
    if party == "network observer, no TLS":
        return not flow.sealed
    if party == "network observer, TLS":
        return not flow.sealed and not flow.control_plane
    return False


def _identifies(party: str, flow: Flow) -> bool:
    """Whether `party` learns which terminal `flow`'s data belongs to."""
    if flow.identity == "stripped" or not flow.on_network:
        return False
    if party == flow.receiver:
        return True
    if party == flow.relayed_by:
        return flow.identity == "cleartext"
    if party in ("SuperLink operator", "network observer, no TLS"):
        return flow.identity == "cleartext" and (
            flow.control_plane or party != "SuperLink operator"
        )
    if party == "network observer, TLS":
        return flow.identity == "cleartext" and not flow.control_plane
    return False


def _sees_traffic(party: str, flow: Flow) -> bool:
    if not flow.on_network:
        return False
    if party in (flow.sender, flow.receiver, flow.relayed_by) or party.startswith(
        "network observer"
    ):
        return True
    return party == "SuperLink operator" and flow.control_plane


def _contents(party: str, flow: Flow) -> str:
    if party == flow.sender == "terminal" or (party == flow.sender and flow.scope == "own"):
        return "own"
    if not _reads(party, flow):
        return "no"
    return {
        "own": "all terminals'",
        "sampled": "sampled batches, no ids",
        "all": "all terminals'",
        "offloaders": "offloaders'",
    }[flow.scope]


def _best(values: list[str]) -> str:
    return max(values, key=lambda value: _RANK[value], default="no")


def observations(design: str) -> dict[str, dict[str, str]]:
    """party → column → what that party observes in `design`."""
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r}; known: {sorted(DESIGNS)}")
    flows = DESIGNS[design]
    table: dict[str, dict[str, str]] = {}
    for party in PARTIES:
        trajectory_flows = [f for f in flows if f.item == "trajectories"]
        contents = _best([_contents(party, f) for f in trajectory_flows])
        linked = [f for f in trajectory_flows if _reads(party, f) and _identifies(party, f)]
        if party == "terminal" and contents != "no":
            link = "own"
        elif linked:
            link = "yes"
        elif any(_reads(party, f) for f in trajectory_flows):
            link = "no (ids stripped)"
        else:
            link = "no"
        weights = [f for f in flows if f.item == "weights" and _reads(party, f)]
        traffic = [f.name for f in flows if _sees_traffic(party, f)]
        table[party] = {
            "trajectory contents": contents,
            "which terminal a trajectory came from": link,
            "Q-network weights": "yes" if weights else "no",
            "offloaded task data": _best(
                [_contents(party, f) for f in flows if f.item == "task data"]
            ),
            "sizes and timing": ", ".join(traffic) if traffic else "none",
        }
    return table


def write_tables(out_dir: Path) -> tuple[Path, Path]:
    """observation-table.csv (one row per design and party) and observation-table.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "observation-table.csv", out_dir / "observation-table.md"
    lines = ["# Who observes what, per design", ""]
    with csv_path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["design", "party", *COLUMNS])
        for design, flows in DESIGNS.items():
            table = observations(design)
            lines += [f"## {design}", "", "Flows: " + "; ".join(_describe(f) for f in flows), ""]
            lines += ["| party | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
            for party in PARTIES:
                row = [table[party][column] for column in COLUMNS]
                writer.writerow([design, party, *row])
                lines.append(f"| {party} | " + " | ".join(row) + " |")
            lines.append("")
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return csv_path, md_path


def _describe(flow: Flow) -> str:
    protection = "sealed" if flow.sealed else "not sealed"
    plane = "via the SuperLink" if flow.control_plane else "direct"
    if flow.relayed_by:
        plane += f", carried by the {flow.relayed_by}"
    return (
        f"{flow.name} ({flow.sender} → {flow.receiver}, {protection}, {plane}, id {flow.identity})"
    )
