"""The trusted authority's records in its state folder: its log, its events, its refusals.

- authority.log: one line per thing worth a reader's eye (start, joins, returns, every
  event), also printed on the ServerApp's output (the `flwr run` log);
- events.jsonl: one JSON line per event (a refused or bad message, a node error, a node
  missing rounds, answering late or coming back), stamped with the round it happened in;
- the refusals by kind and code, counted over every restart (the authority keeps them in
  state.json and summary.json);
- any other JSON file of the folder, whole (written atomically: state.json, ready.json,
  summary.json) or a line at a time (rounds.jsonl).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from fl_crb.federation.mailbox import count_refusal
from fl_crb.files import write_atomically


def read_json(path: Path) -> dict | None:
    """The JSON object in `path`, None if there is no such file."""
    return json.loads(path.read_text()) if path.exists() else None


class AuthorityRecords:
    """Writes the authority's log, events and JSON files; counts its refusals."""

    def __init__(
        self,
        state_dir: Path,
        round_now: Callable[[], int],
        refusals: dict[str, dict[str, int]],
    ):
        self.state_dir = state_dir
        self.round_now = round_now
        """The authority's current round, which every event is stamped with."""
        self.refusals = refusals
        """What the authority refused, {kind: {code: count}}, over every restart."""

    def write_json(self, name: str, data: dict, indent: int | None = None) -> None:
        """Replace file `name` with `data`, atomically."""
        write_atomically(self.state_dir / name, json.dumps(data, indent=indent).encode())

    def append(self, name: str, record: dict) -> None:
        """Add `record` as one JSON line to file `name`."""
        with open(self.state_dir / name, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")

    def log(self, text: str) -> None:
        """A line in authority.log and on the ServerApp's output (the `flwr run` log)."""
        line = f"{time.strftime('%H:%M:%S')} authority: {text}"
        print(line, flush=True)
        with open(self.state_dir / "authority.log", "a", encoding="utf-8") as file:
            file.write(line + "\n")

    def refused(self, message: str, code: str, node: str, detail: str, **extra) -> None:
        """Count and log a refused message (`message`: "upload", "weights", "identity")."""
        count_refusal(self.refusals, message, code)
        self.event("rejected", node, detail, code=code, message=message, **extra)

    def event(self, kind: str, node: str, detail: str, **extra) -> None:
        """A line in events.jsonl (stamped with the current round) and in the log."""
        round_number = self.round_now()
        self.append(
            "events.jsonl",
            {"round": round_number, "kind": kind, "node": node, "detail": detail, **extra},
        )
        code = f" ({extra['code']})" if "code" in extra else ""
        kind = f"{kind} {extra['message']}" if extra.get("message", "upload") != "upload" else kind
        post = f" post {extra['post']}" if "post" in extra else ""
        self.log(f"round {round_number}: {kind}{code} from {node}{post}: {detail}")
