"""A real Flower deployment on one machine: SuperLink and SuperNodes as processes, `flwr run`.

`LocalFederation` starts `flower-superlink` and one `flower-supernode` per node on
loopback, each with its own FLWR_HOME under the run folder, all with the offline settings
(no telemetry, no update check, no runtime dependency installation), waits until every
SuperNode has registered, runs the app with `flwr run ... --stream`, and stops everything
in order: SuperNodes first (they would otherwise retry a vanished SuperLink), then the
wire meter, then the SuperLink. Every process runs in its own session and is stopped
with its whole descendance, the SuperExec and ClientApp processes Flower spawned
included (`processes.ProcessSet`).

Run folder layout:

    superlink/      FLWR_HOME of the SuperLink (and its ServerApp processes)
    nodes/<name>/   FLWR_HOME of each SuperNode (and its ClientApp processes)
    cli/            FLWR_HOME of `flwr run`: config.toml names the SuperLink as "local"
    app/            the Flower app project (`write_app_project`) unless one is given
    logs/           one log per process and per `flwr run`
    nodes.json      node name → role, Flower node id, ports

Speed: the SuperExec's task poll is set through FLWR_SUPEREXEC_TASK_POLL_INTERVAL
(`superexec_poll_s`); with `supernode_idle_poll_s` the SuperNodes run through
`fast_supernode`, which shortens the SuperNode's fixed 3 s idle wait; with
`warm_clientapps` each SuperNode's ClientApps are forked by `warm_executor` instead of
started as fresh interpreters.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fl_crb.federation.app_project import toml_value, write_app_project
from fl_crb.federation.processes import ProcessSet, accepts, free_port
from fl_crb.federation.wire_meter import WireMeter

OFFLINE_ENVIRONMENT = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
"""Environment every Flower process gets: no telemetry, no update check."""
_NODE_ID = re.compile(r"SuperNode ID: (\d+)")
_RUN_ID = re.compile(r"Successfully started run (\d+)")


@dataclass(frozen=True)
class NodeSpec:
    """One SuperNode to start."""

    name: str
    """Unique name (the topology's host name); its folder and its node config `name`."""
    role: str
    """Its node config `role`: "terminal" or "edge"."""


@dataclass(frozen=True)
class LaunchConfig:
    """How to start the local deployment."""

    run_dir: Path
    """Folder for every FLWR_HOME, log and result of this deployment."""
    nodes: tuple[NodeSpec, ...]
    """SuperNodes to start."""
    host: str = "127.0.0.1"
    """Address every process binds to and connects to."""
    superexec_poll_s: float = 0.25
    """Seconds between the SuperExecs' polls for new tasks (Flower's default is 1 s).

    Each poll is an HTTP request to the SuperNode: at 0.05 s, 8 idle nodes took ~60 % of
    a core between them, at 0.25 s ~15 %, at 1 s ~5 % (2-core machine)."""
    supernode_idle_poll_s: float | None = None
    """Cap on the SuperNodes' idle wait (Flower's is a fixed 3 s); None runs them stock.

    Each idle poll is an HTTP request to the SuperLink (~0.85 kB up, ~0.13 kB down): at
    0.25 s, 8 idle nodes cost the SuperLink ~13 % of a core."""
    warm_clientapps: bool = False
    """Fork ClientApps from a warm parent (`warm_executor`) instead of fresh interpreters."""
    meter_wire: bool = True
    """Put a `WireMeter` between the SuperNodes and the SuperLink to count wire bytes."""
    startup_timeout_s: float = 60.0
    """How long to wait for the SuperLink port and every SuperNode's registration."""
    stop_timeout_s: float = 10.0
    """How long a process gets to exit after SIGTERM before it is killed."""


@dataclass(frozen=True)
class AppRun:
    """The outcome of one `flwr run`, as the SuperLink recorded it."""

    run_id: int
    """Flower's run id."""
    status: str
    """Final status, e.g. "finished:completed" or "finished:failed"."""
    details: str
    """Flower's status details (the ServerApp's exception when it failed)."""
    seconds: float
    """Wall time from starting `flwr run` to its exit."""
    log_path: Path
    """Output of `flwr run --stream`: the ServerApp's log."""
    flower_traffic: dict
    """Flower's own "network-traffic" account of the run (inbound/outbound/total bytes)."""

    @property
    def completed(self) -> bool:
        """Whether the ServerApp returned without an exception."""
        return self.status == "finished:completed"


class FederationError(RuntimeError):
    """A Flower process did not start, or a run failed; the message names the log to read."""


def _executable(name: str) -> str:
    """A Flower command from this interpreter's environment, else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FederationError(f"{name} not found: install fl-crb[federate] (flwr 1.42)")
    return found


class LocalFederation:
    """SuperLink + SuperNodes on this machine; use as a context manager."""

    def __init__(self, config: LaunchConfig):
        names = [node.name for node in config.nodes]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"LaunchConfig.nodes needs distinct node names, got {names}")
        self.config = config
        self.run_dir = Path(config.run_dir).resolve()
        self.superlink_port = 0
        self.node_ids: dict[str, int] = {}
        """Flower node id per node name, read from each SuperNode's log at registration."""
        self.meter: WireMeter | None = None
        self.processes = ProcessSet()
        """Every process started: "superlink", "node-<name>" (and "node-<name>-executor")."""
        self._runs = 0

    def __enter__(self) -> LocalFederation:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_) -> None:
        self.stop()

    # -- starting --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the SuperLink, the meter and the SuperNodes; wait until all registered."""
        host = self.config.host
        for folder in ("superlink", "cli", "logs", "nodes"):
            (self.run_dir / folder).mkdir(parents=True, exist_ok=True)
        self.superlink_port = free_port(host)
        (self.run_dir / "cli" / "config.toml").write_text(
            f'[superlink]\ndefault = "local"\n\n[superlink.local]\n'
            f'address = "{host}:{self.superlink_port}"\ninsecure = true\n',
            encoding="utf-8",
        )
        self._spawn(
            "superlink",
            [
                _executable("flower-superlink"),
                "--insecure",
                "--host",
                host,
                "--port",
                str(self.superlink_port),
                "--disable-runtime-dependency-installation",
            ],
            self.run_dir / "superlink",
        )
        self._wait(lambda: accepts(host, self.superlink_port), "superlink", "its port to open")
        fleet_ports = {node.name: self.superlink_port for node in self.config.nodes}
        if self.config.meter_wire:
            self.meter = WireMeter(host, self.superlink_port, host)
            fleet_ports = self.meter.start([node.name for node in self.config.nodes])
        runtime_ports = {}
        for node in self.config.nodes:
            runtime_ports[node.name] = free_port(host)
            home = self.run_dir / "nodes" / node.name
            home.mkdir(parents=True, exist_ok=True)
            node_pid = self._spawn(
                f"node-{node.name}",
                self._supernode_command(node, fleet_ports[node.name], runtime_ports[node.name]),
                home,
            )
            if self.config.warm_clientapps:
                executor = [
                    sys.executable,
                    "-m",
                    "fl_crb.federation.warm_executor",
                    "--insecure",
                    "--runtime-api-address",
                    f"{host}:{runtime_ports[node.name]}",
                    "--parent-pid",
                    str(node_pid),
                ]
                self._spawn(f"node-{node.name}-executor", executor, home)
        for node in self.config.nodes:
            log = self.run_dir / "logs" / f"node-{node.name}.log"
            self._wait(
                lambda log=log: _NODE_ID.search(log.read_text(errors="replace")),
                f"node-{node.name}",
                "its registration",
            )
            self.node_ids[node.name] = int(
                _NODE_ID.search(log.read_text(errors="replace")).group(1)
            )
        description = {
            node.name: {
                "role": node.role,
                "node_id": self.node_ids[node.name],
                "fleet_port": fleet_ports[node.name],
                "runtime_port": runtime_ports[node.name],
            }
            for node in self.config.nodes
        }
        (self.run_dir / "nodes.json").write_text(
            json.dumps(description, indent=1), encoding="utf-8"
        )

    def _supernode_command(self, node: NodeSpec, fleet_port: int, runtime_port: int) -> list[str]:
        arguments = [
            "--insecure",
            "--superlink",
            f"{self.config.host}:{fleet_port}",
            "--host",
            self.config.host,
            "--port",
            str(runtime_port),
            "--node-config",
            f'role="{node.role}" name="{node.name}"',
        ]
        if self.config.warm_clientapps:
            arguments += ["--isolation", "process"]  # the warm executor serves its tasks
        if self.config.supernode_idle_poll_s is None:
            return [_executable("flower-supernode"), *arguments]
        return [
            sys.executable,
            "-m",
            "fl_crb.federation.fast_supernode",
            "--idle-poll-s",
            str(self.config.supernode_idle_poll_s),
            "--",
            *arguments,
        ]

    def _environment(self, flwr_home: Path) -> dict[str, str]:
        # Flower spawns flower-superexec and flwr-clientapp by name: put ours first on PATH.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        return {
            **os.environ,
            **OFFLINE_ENVIRONMENT,
            "PATH": path,
            "FLWR_HOME": str(flwr_home),
            "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": str(self.config.superexec_poll_s),
        }

    def _spawn(self, name: str, command: list[str], flwr_home: Path) -> int:
        log_path = self.run_dir / "logs" / f"{name}.log"
        return self.processes.spawn(
            name, command, flwr_home, self._environment(flwr_home), log_path
        )

    def _wait(self, ready, name: str, what: str) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while not ready():
            if (status := self.processes.exit_status(name)) is not None:
                raise FederationError(
                    f"{name} exited with status {status} while waiting for {what}; "
                    f"see {self.run_dir / 'logs' / f'{name}.log'}"
                )
            if time.monotonic() > deadline:
                raise FederationError(
                    f"{name}: no {what} within {self.config.startup_timeout_s:g} s; "
                    f"see {self.run_dir / 'logs' / f'{name}.log'}"
                )
            time.sleep(0.05)

    # -- running ---------------------------------------------------------------------------

    def run_app(self, run_config: dict, timeout_s: float, app_dir: Path | None = None) -> AppRun:
        """`flwr run` the app with `run_config` overrides and wait for the run to end."""
        self._runs += 1
        if app_dir is None:
            app_dir = write_app_project(self.run_dir / "app")
        overrides = self.run_dir / f"run-config-{self._runs}.toml"
        overrides.write_text(
            "".join(f"{key} = {toml_value(key, value)}\n" for key, value in run_config.items()),
            encoding="utf-8",
        )
        log_path = self.run_dir / "logs" / f"flwr-run-{self._runs}.log"
        command = [
            _executable("flwr"),
            "run",
            str(app_dir),
            "local",
            "--run-config",
            str(overrides),
            "--stream",
        ]
        start = time.monotonic()
        with open(log_path, "wb") as log:
            try:
                subprocess.run(
                    command,
                    env=self._environment(self.run_dir / "cli"),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=timeout_s,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise FederationError(
                    f"flwr run did not finish within {timeout_s:g} s; see {log_path}"
                ) from None
        seconds = time.monotonic() - start
        # `flwr run --stream` exits 0 even when the ServerApp fails: ask the SuperLink.
        started = _RUN_ID.search(log_path.read_text(errors="replace"))
        if started is None:
            raise FederationError(f"flwr run did not start a run; see {log_path}")
        run = self._run_record(int(started.group(1)))
        return AppRun(
            run_id=int(started.group(1)),
            status=run["status"],
            details=run.get("status-details", ""),
            seconds=seconds,
            log_path=log_path,
            flower_traffic=run.get("network-traffic", {}),
        )

    def probe(self, plan: str, rounds: int, timeout_s: float = 600.0) -> dict:
        """Flower's bare message round trip: run the app's probe mode, return its result.

        `plan` is the probe plan ("request_bytes:reply_bytes,..."), each entry exchanged
        `rounds` times with every node; see `flower_app` for the result's fields.
        """
        result_path = self.run_dir / f"probe-{self._runs + 1}.json"
        config = {
            "mode": "probe",
            "expected-nodes": len(self.config.nodes),
            "probe-plan": plan,
            "probe-rounds": rounds,
            "result-path": str(result_path),
            "wire-meter-address": self.meter.control_address if self.meter else "",
        }
        run = self.run_app(config, timeout_s)
        if not run.completed:
            raise FederationError(f"probe run {run.run_id} {run.status}: {run.details}")
        return {**json.loads(result_path.read_text(encoding="utf-8")), "run": run}

    def _run_record(self, run_id: int) -> dict:
        """The SuperLink's record of one run (`flwr ls --run-id ... --format json`)."""
        command = [_executable("flwr"), "ls", "local", "--run-id", str(run_id), "--format", "json"]
        listed = subprocess.run(
            command,
            env=self._environment(self.run_dir / "cli"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        try:
            return json.loads(listed.stdout)["runs"][0]
        except (json.JSONDecodeError, KeyError, IndexError):
            raise FederationError(
                f"flwr ls could not describe run {run_id}: {listed.stdout[-500:]}"
                f"{listed.stderr[-500:]}"
            ) from None

    # -- stopping --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the SuperNodes, the meter, then the SuperLink (SIGTERM, then SIGKILL)."""
        timeout_s = self.config.stop_timeout_s
        self.processes.stop([n for n in self.processes.names() if n.startswith("node-")], timeout_s)
        if self.meter is not None:
            self.meter.stop()
        self.processes.stop(self.processes.names(), timeout_s)
