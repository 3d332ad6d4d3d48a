"""The `flwr` CLI calls of a deployment: registering node keys, running the app.

Every call runs on the SuperLink's host (through the placement) with the CLI's own
FLWR_HOME (`run_dir/cli`, whose config.toml names the SuperLink as the "local"
connection, with its CA under TLS), and is killed with its whole process group on
timeout (`processes.run_once`). `flwr run --stream` exits 0 even when the ServerApp
fails, so a run's outcome is read back from the SuperLink (`flwr ls --run-id`).

A run that may have to be started again at once (the authority's, after it or the
SuperLink died) asks for `standby_next`: the next `flwr run` of the same app and run
config is then started ahead as a `standby_cli` process, which imports Flower's CLI
while the current run goes on and submits the next run the moment it is told, instead
of paying seconds of imports after a death. `close` stands it down.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fl_crb.federation.deploy.app_project import toml_value
from fl_crb.federation.deploy.flower_commands import FlowerCommands, flower_executable
from fl_crb.federation.deploy.launch_config import AppRun, FederationError
from fl_crb.federation.deploy.processes import finish_once, run_once
from fl_crb.federation.deploy.standby_cli import GO
from fl_crb.federation.deploy.standby_cli import MODULE as STANDBY_MODULE
from fl_crb.runtime.placement import Placement

_RUN_ID = re.compile(r"Successfully started run (\d+)")
STANDBY_STOP_S = 10.0
"""How long a standby `flwr run` that is stood down may take to exit."""


@dataclass
class _Standby:
    """A `flwr run` started ahead (`standby_cli`), waiting to be told to submit."""

    number: int
    """The run number it stands by for."""
    what: tuple[str, str]
    """The app folder and the run config it runs (as text), to match the next call."""
    process: subprocess.Popen
    new_session: bool


class FlowerCli:
    """The `flwr` CLI of one deployment, run on its SuperLink's host."""

    def __init__(self, commands: FlowerCommands, placement: Placement, run_dir: Path):
        self.commands = commands
        self.placement = placement
        self.run_dir = run_dir
        """The deployment's run folder: cli/ is the CLI's FLWR_HOME, logs/ its run logs."""
        self._standby: _Standby | None = None

    def _placed(self, command: list[str]) -> tuple[list[str], dict[str, str], bool]:
        """`command` placed on the SuperLink's host, its environment, and whether it is
        to be given a session of its own (the placement did not wrap it)."""
        placed = self.placement.command(self.commands.config.superlink_host, command)
        environment = self.commands.environment(self.run_dir / "cli")
        return placed, environment, placed == command

    def call(
        self, arguments: list[str], timeout_s: float, log_path: Path | None = None
    ) -> subprocess.CompletedProcess:
        """Run `flwr ARGUMENTS` on the SuperLink's host with the "local" connection."""
        placed, environment, new_session = self._placed([flower_executable("flwr"), *arguments])
        return run_once(placed, environment, timeout_s, log_path, new_session=new_session)

    def register(self, node_name: str, public_key: Path) -> int:
        """`flwr supernode register` a node's public key; the node id Flower assigns."""
        arguments = ["supernode", "register", str(public_key), "local", "--name", node_name]
        listed = self.call([*arguments, "--format", "json"], timeout_s=60)
        try:
            return int(json.loads(listed.stdout)["node-id"])
        except (json.JSONDecodeError, KeyError, ValueError):
            raise FederationError(
                f"flwr supernode register refused {public_key} for node {node_name!r}: "
                f"{listed.stdout[-500:]}{listed.stderr[-500:]}"
            ) from None

    def run(
        self,
        app_dir: Path,
        run_config: dict,
        timeout_s: float,
        number: int,
        standby_next: bool = False,
    ) -> AppRun:
        """`flwr run` the app with `run_config` overrides and wait for the run to end.

        `number` names its files: run-config-N.toml and logs/flwr-run-N.log. With
        `standby_next`, run N+1 of the same app and config stands by meanwhile."""
        what = (str(app_dir), json.dumps(run_config, sort_keys=True))
        standby, self._standby = self._standby, None
        if standby is not None and (standby.number, standby.what) != (number, what):
            self._stand_down(standby)
            standby = None
        if standby is None:
            arguments = self._run_arguments(app_dir, run_config, number)
        if standby_next:
            self._standby = self._stand_by(app_dir, run_config, number + 1, what)
        log_path = self.run_dir / "logs" / f"flwr-run-{number}.log"
        start = time.monotonic()
        try:
            if standby is not None:
                finish_once(standby.process, timeout_s, standby.new_session, f"{GO}\n".encode())
            else:
                self.call(arguments, timeout_s, log_path)
        except subprocess.TimeoutExpired:
            raise FederationError(
                f"flwr run did not finish within {timeout_s:g} s; see {log_path}"
            ) from None
        seconds = time.monotonic() - start
        started = _RUN_ID.search(log_path.read_text(errors="replace"))
        if started is None:
            raise FederationError(f"flwr run did not start a run; see {log_path}")
        run = self.run_record(int(started.group(1)))
        return AppRun(
            run_id=int(started.group(1)),
            status=run["status"],
            details=run.get("status-details", ""),
            seconds=seconds,
            log_path=log_path,
            flower_traffic=run.get("network-traffic", {}),
        )

    def _run_arguments(self, app_dir: Path, run_config: dict, number: int) -> list[str]:
        """`flwr run` arguments for run `number`, its run-config-N.toml written."""
        overrides = self.run_dir / f"run-config-{number}.toml"
        overrides.write_text(
            "".join(f"{key} = {toml_value(key, value)}\n" for key, value in run_config.items()),
            encoding="utf-8",
        )
        return ["run", str(app_dir), "local", "--run-config", str(overrides), "--stream"]

    def _stand_by(
        self, app_dir: Path, run_config: dict, number: int, what: tuple[str, str]
    ) -> _Standby:
        """Start run `number`'s `flwr run` ahead, as a `standby_cli` process."""
        arguments = self._run_arguments(app_dir, run_config, number)
        command = [sys.executable, "-m", STANDBY_MODULE, *arguments]
        placed, environment, new_session = self._placed(command)
        log_path = self.run_dir / "logs" / f"flwr-run-{number}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                placed,
                env=environment,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=new_session,
            )
        return _Standby(number, what, process, new_session)

    def _stand_down(self, standby: _Standby) -> None:
        """End a standby `flwr run` without running it (killed if it does not exit)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            finish_once(standby.process, STANDBY_STOP_S, standby.new_session, b"")

    def close(self) -> None:
        """Stand down the `flwr run` standing by, if any."""
        standby, self._standby = self._standby, None
        if standby is not None:
            self._stand_down(standby)

    def run_record(self, run_id: int) -> dict:
        """The SuperLink's record of one run (`flwr ls --run-id ... --format json`)."""
        listed = self.call(["ls", "local", "--run-id", str(run_id), "--format", "json"], 60)
        try:
            return json.loads(listed.stdout)["runs"][0]
        except (json.JSONDecodeError, KeyError, IndexError):
            raise FederationError(
                f"flwr ls could not describe run {run_id}: {listed.stdout[-500:]}"
                f"{listed.stderr[-500:]}"
            ) from None
