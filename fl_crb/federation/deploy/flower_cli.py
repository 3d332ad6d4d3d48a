"""The `flwr` CLI calls of a deployment: registering node keys, running the app.

Every call runs on the SuperLink's host (through the placement) with the CLI's own
FLWR_HOME (`run_dir/cli`, whose config.toml names the SuperLink as the "local"
connection, with its CA under TLS), and is killed with its whole process group on
timeout (`processes.run_once`). `flwr run --stream` exits 0 even when the ServerApp
fails, so a run's outcome is read back from the SuperLink (`flwr ls --run-id`).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from fl_crb.federation.deploy.app_project import toml_value
from fl_crb.federation.deploy.flower_commands import FlowerCommands, flower_executable
from fl_crb.federation.deploy.launch_config import AppRun, FederationError
from fl_crb.federation.deploy.processes import run_once
from fl_crb.runtime.placement import Placement

_RUN_ID = re.compile(r"Successfully started run (\d+)")


class FlowerCli:
    """The `flwr` CLI of one deployment, run on its SuperLink's host."""

    def __init__(self, commands: FlowerCommands, placement: Placement, run_dir: Path):
        self.commands = commands
        self.placement = placement
        self.run_dir = run_dir
        """The deployment's run folder: cli/ is the CLI's FLWR_HOME, logs/ its run logs."""

    def call(
        self, arguments: list[str], timeout_s: float, log_path: Path | None = None
    ) -> subprocess.CompletedProcess:
        """Run `flwr ARGUMENTS` on the SuperLink's host with the "local" connection."""
        command = [flower_executable("flwr"), *arguments]
        placed = self.placement.command(self.commands.config.superlink_host, command)
        environment = self.commands.environment(self.run_dir / "cli")
        return run_once(placed, environment, timeout_s, log_path, new_session=placed == command)

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

    def run(self, app_dir: Path, run_config: dict, timeout_s: float, number: int) -> AppRun:
        """`flwr run` the app with `run_config` overrides and wait for the run to end.

        `number` names its files: run-config-N.toml and logs/flwr-run-N.log."""
        overrides = self.run_dir / f"run-config-{number}.toml"
        overrides.write_text(
            "".join(f"{key} = {toml_value(key, value)}\n" for key, value in run_config.items()),
            encoding="utf-8",
        )
        log_path = self.run_dir / "logs" / f"flwr-run-{number}.log"
        arguments = ["run", str(app_dir), "local", "--run-config", str(overrides), "--stream"]
        start = time.monotonic()
        try:
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
