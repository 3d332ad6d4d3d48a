"""Partial participation, node by node: when each node joined, the rounds it missed, and
how often it came back.

A node misses a round when nothing is heard from it during that round: no reply in time
and no late reply to an earlier round. The trusted authority (`authority`) tells
`Participation` who joined (an answered hello) and, at the end of each round, who was
heard; it learns which nodes began missing rounds and which came back, for
events.jsonl and authority.log, and keeps the counts in state.json across restarts and
in summary.json (`records`). Nodes still silent in the last round are the lost ones
(`missing`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass


@dataclass
class NodeParticipation:
    """One node's part in the rounds."""

    joined_round: int | None = None
    """The round it first answered in (0: at start-up); None: never."""
    missed_rounds: int = 0
    """Rounds in which nothing was heard from it (before it joined too)."""
    reconnections: int = 0
    """Times it answered again after missing one or more rounds since it joined."""
    missing_since: int | None = None
    """First round of its current run of missed rounds; None: it answered the last one."""


class Participation:
    """Per node: rounds missed, when it joined, how often it came back; node by name."""

    def __init__(self, names: Iterable[str], saved: dict[str, dict] | None = None):
        saved = saved or {}
        self.nodes = {name: NodeParticipation(**saved.get(name, {})) for name in names}

    def joined(self, name: str, round_number: int) -> None:
        """`name` answered for the first time (a hello) in `round_number`."""
        node = self.nodes[name]
        if node.joined_round is None:
            node.joined_round = round_number
            node.missing_since = None

    def close_round(self, round_number: int, heard: set[str]) -> tuple[list[str], dict[str, int]]:
        """Count round `round_number`, in which the nodes `heard` answered (in time, or
        late to an earlier round): the names that began missing rounds in it, and those
        that came back in it with the number of rounds they had missed."""
        began, returned = [], {}
        for name, node in self.nodes.items():
            if name in heard:
                if node.missing_since is not None and node.joined_round is not None:
                    returned[name] = round_number - node.missing_since
                    node.reconnections += 1
                node.missing_since = None
                continue
            node.missed_rounds += 1
            if node.missing_since is None:
                node.missing_since = round_number
                began.append(name)
        return began, returned

    def missing(self) -> dict[str, int | None]:
        """Nodes not heard from in the last round: name → first round of that silence
        (None for a node that never joined)."""
        return {
            name: node.missing_since if node.joined_round is not None else None
            for name, node in self.nodes.items()
            if node.missing_since is not None or node.joined_round is None
        }

    def records(self) -> dict[str, dict]:
        """Every node's participation as JSON-ready data."""
        return {name: asdict(node) for name, node in self.nodes.items()}
