"""What a party host runs, as processes: its runtime party, its SuperNode, and their records.

A role command (`fl-crb edge`, `fl-crb terminal`) starts, in its state directory S:

- its runtime party (`python -m MODULE S/config/<host>.json`), which says READY on its
  standard output and waits for `START <epoch>` on its standard input
  (`fl_crb.runtime.party`); in a session of its own, so that a Ctrl-C reaches the role
  command only, which then stops it;
- its SuperNode (`LocalFederation` with `superlink_address`: the SuperLink on the
  authority's host, TLS and its own SuperNode key), FLWR_HOME under S/flower/.

Every command line started is recorded in S/processes.json (what a reader, or the test
that nothing reads another host's path, looks at).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fl_crb.federation.deploy.flower_commands import host_port
from fl_crb.federation.deploy.launch_config import LaunchConfig, NodeSpec, Security
from fl_crb.federation.deploy.launcher import LocalFederation
from fl_crb.federation.roles.settings import RunSettings
from fl_crb.runtime.config import save_config
from fl_crb.runtime.local_run import SINGLE_THREADED
from fl_crb.runtime.party import READY

PROCESSES_FILE = "processes.json"
"""S/processes.json: every command line the role started, by name."""
STOP_GRACE_S = 10.0
"""A party gets this long after SIGTERM to write its outputs before it is killed."""


def record_command(state_dir: Path, name: str, argv: list[str]) -> None:
    """Add `name`'s command line to S/processes.json."""
    path = state_dir / PROCESSES_FILE
    recorded = json.loads(path.read_text()) if path.exists() else {}
    recorded[name] = [str(part) for part in argv]
    path.write_text(json.dumps(recorded, indent=1) + "\n")


@dataclass
class PartyProcess:
    """A runtime party process started by a role command."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path

    def tail(self, lines: int = 6) -> str:
        text = self.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
        return f"last lines of {self.log_path}:\n" + "\n".join(text) if text else "its log is empty"


async def start_party(state_dir: Path, name: str, module: str, config: object) -> PartyProcess:
    """Write `config` to S/config/<name>.json and start `python -m module` on it."""
    config_path = state_dir / "config" / f"{name}.json"
    save_config(config, config_path)
    argv = [sys.executable, "-m", module, str(config_path)]
    record_command(state_dir, name, argv)
    log_path = state_dir / "logs" / f"{name}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env={**os.environ, **SINGLE_THREADED},
            start_new_session=True,
        )
    return PartyProcess(name, process, log_path)


async def party_ready(party: PartyProcess, timeout_s: float) -> dict:
    """The facts of the party's READY line; RuntimeError with its log's tail otherwise."""
    assert party.process.stdout is not None
    try:
        line = await asyncio.wait_for(party.process.stdout.readline(), timeout_s)
    except TimeoutError:
        raise RuntimeError(f"{party.name} did not become READY in time; {party.tail()}") from None
    text = line.decode(errors="replace").strip()
    if not text.startswith(READY):
        raise RuntimeError(f"{party.name} failed to start (said {text!r}); {party.tail()}")
    return json.loads(text[len(READY) :])


async def give_epoch(party: PartyProcess, epoch: float) -> None:
    """Send the party its `START <epoch>` line."""
    assert party.process.stdin is not None
    party.process.stdin.write(f"START {epoch!r}\n".encode())
    await party.process.stdin.drain()
    party.process.stdin.close()


async def wait_party(party: PartyProcess, finish_by: float) -> int:
    """Its exit status; killed (and reported as such) if still running at `finish_by`."""
    try:
        return await asyncio.wait_for(party.process.wait(), max(0.0, finish_by - time.time()))
    except TimeoutError:
        await stop_party(party, grace_s=0.0)
        raise RuntimeError(f"{party.name} did not finish in time and was killed") from None


async def stop_party(party: PartyProcess, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM, then SIGKILL after `grace_s`; reaps it."""
    if party.process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            party.process.send_signal(signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
        try:
            await asyncio.wait_for(party.process.wait(), grace_s or None)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                party.process.kill()
    await party.process.wait()


def supernode_launch(
    state_dir: Path,
    node: NodeSpec,
    settings: RunSettings,
    superlink_host: str,
    bundle: Path,
) -> LaunchConfig:
    """One SuperNode dialing the authority's SuperLink, from this host's bundle."""
    security = Security(bundle, tls=True, node_auth=settings.node_auth) if settings.tls else None
    return LaunchConfig(
        state_dir / "flower",
        (node,),
        security=security,
        superexec_poll_s=settings.superexec_poll_s,
        supernode_idle_poll_s=settings.supernode_idle_poll_s,
        warm_clientapps=True,
        accelerators=settings.accelerators,
        meter_wire=False,
        startup_timeout_s=settings.startup_timeout_s,
        superlink_address=host_port(superlink_host, settings.superlink_port),
    )


async def start_supernode(state_dir: Path, launch: LaunchConfig) -> LocalFederation:
    """Start the SuperNode and wait until the SuperLink admitted it; its command lines go
    to S/processes.json."""
    federation = LocalFederation(launch)
    try:
        await asyncio.to_thread(federation.start)
    except BaseException:
        await asyncio.to_thread(federation.stop)
        raise
    for name, argv in federation.command_lines.items():
        record_command(state_dir, name, argv)
    return federation
