"""What a role host recorded of the processes it started, for the tests that check nothing
was handed a path of another host (`tests/test_roles.py`, `tests/test_emulation_roles.py`).

A role command writes every command line it started to STATE/processes.json and every
process's config to STATE/config/*.json (`fl_crb.federation.roles.party_processes`);
`recorded_strings` gives every text value in them, paths among them.
"""

from __future__ import annotations

import json
from pathlib import Path


def recorded_strings(state: Path) -> list[str]:
    """Every string of `state`'s processes.json and config/*.json (those that exist)."""
    files = [state / "processes.json", *sorted((state / "config").glob("*.json"))]
    return [s for path in files if path.exists() for s in _strings(json.loads(path.read_text()))]


def _strings(value: object) -> list[str]:
    """The strings in a JSON value, however deeply nested."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
