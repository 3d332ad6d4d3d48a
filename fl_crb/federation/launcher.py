"""A real Flower deployment: SuperLink and SuperNodes as processes, `flwr run`.

`LocalFederation` starts `flower-superlink` and one `flower-supernode` per node, each with
its own FLWR_HOME under the run folder, all with the offline settings (no telemetry, no
update check, no runtime dependency installation), waits until every SuperNode is
online, runs the app with `flwr run ... --stream`, and stops everything in order:
SuperNodes first (they would otherwise retry a vanished SuperLink), then the wire meter,
then the SuperLink. Every process runs in its own session and is stopped with its whole
descendance, the SuperExec and ClientApp processes Flower spawned included
(`processes.ProcessSet`).

Where: every process starts through a `Placement` (`fl_crb.runtime.placement`) on a
topology host: the SuperLink, and every `flwr` CLI call, on `superlink_host`, each
SuperNode on its node's host. The default runs all on this machine at 127.0.0.1; the
emulator passes a placement that starts them inside Mininet hosts. The SuperLink binds
its host's listen address and nodes dial it at the address the placement gives for
that pair of hosts. A SuperNode's own Runtime API (used only by its SuperExec and
ClientApps, unencrypted) always binds 127.0.0.1 of its host. The wire meter listens on
the SuperLink host's listen address: inside this process when the placement runs that
host's commands unchanged (this machine), else as a process of its own on that host
(`PlacedMeter`; `python -m fl_crb.federation.launcher meter ...`). Nothing here connects
from this process to the SuperLink's host, so this process may run outside the emulated
network.

Security (`Security`, from a folder made by `fl-crb keys`): with TLS, the SuperLink serves
its certificate and every SuperNode, ServerApp and CLI call checks it against the CA;
with node authentication, the SuperLink accepts only registered SuperNodes: each node's
public key is registered (`flwr supernode register`) before the node starts, and the
node signs its requests with its private key. The certificate must name every address
processes dial; `LocalFederation` checks that before starting anything.

Run folder layout:

    superlink/      FLWR_HOME of the SuperLink (and its ServerApp processes)
    nodes/<name>/   FLWR_HOME of each SuperNode (and its ClientApp processes)
    cli/            FLWR_HOME of the `flwr` CLI: config.toml names the SuperLink as "local"
    app/            the Flower app project (`write_app_project`) unless one is given
    logs/           one log per process and per `flwr run`
    nodes.json      node name → role, host, Flower node id, ports

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
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fl_crb.federation.app_project import toml_value, write_app_project
from fl_crb.federation.keys import KeyFolder, certificate_names
from fl_crb.federation.processes import ProcessSet, free_port, run_once
from fl_crb.federation.wire_meter import Snapshot, WireMeter, read_snapshot
from fl_crb.runtime.placement import LOOPBACK, Loopback, Placement

OFFLINE_ENVIRONMENT = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
"""Environment every Flower process gets: no telemetry, no update check."""
_NODE_ID = re.compile(r"SuperNode ID: (\d+)")
_RUN_ID = re.compile(r"Successfully started run (\d+)")
_BIND_ALL = ("0.0.0.0", "::")
_LISTENING = "Uvicorn running on"
"""The SuperLink's log line once its port is bound."""
_METER_READY = "METER READY "


@dataclass(frozen=True)
class NodeSpec:
    """One SuperNode to start."""

    name: str
    """Unique name (the topology's host name); its folder, its node config `name`, and
    the name of its authentication key in the keys folder."""
    role: str
    """Its node config `role`: "terminal" or "edge"."""
    host: str | None = None
    """Topology host it runs on (what the placement maps); None: the host named `name`."""

    @property
    def placed_on(self) -> str:
        """The topology host this node runs on."""
        return self.host or self.name


@dataclass(frozen=True)
class Security:
    """TLS and SuperNode authentication from a keys folder made by `fl-crb keys`."""

    keys_dir: Path
    """The keys folder (`keys.KeyFolder` layout)."""
    tls: bool = True
    """Serve and check the SuperLink's certificate on every connection to it."""
    node_auth: bool = True
    """Accept only SuperNodes whose public key was registered (needs `tls`: Flower refuses
    SuperNode authentication over plain HTTP)."""

    def __post_init__(self) -> None:
        if self.node_auth and not self.tls:
            raise ValueError(
                "Security(node_auth=True, tls=False): Flower 1.42 authenticates SuperNodes "
                "only over TLS; set tls=True or node_auth=False"
            )


@dataclass(frozen=True)
class LaunchConfig:
    """How to start the deployment."""

    run_dir: Path
    """Folder for every FLWR_HOME, log and result of this deployment."""
    nodes: tuple[NodeSpec, ...]
    """SuperNodes to start."""
    host: str = LOOPBACK
    """Address every process binds to and is reached at when `placement` is None."""
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
    """Put a `WireMeter` between the SuperNodes and the SuperLink to count wire bytes
    (with TLS it sees only opaque bytes: totals per node, no per-endpoint split)."""
    startup_timeout_s: float = 60.0
    """How long to wait for the SuperLink port and every SuperNode's registration."""
    stop_timeout_s: float = 10.0
    """How long a process gets to exit after SIGTERM before it is killed."""
    security: Security | None = None
    """TLS and SuperNode authentication; None runs everything `--insecure`."""
    placement: Placement | None = None
    """Where each process runs and how it is reached; None: this machine, at `host`
    (with the default host that is exactly `Loopback()`)."""
    superlink_host: str = "cloud"
    """Topology host of the SuperLink, its ServerApps and every `flwr` CLI call."""


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


class _ThisMachine:
    """Every host is this machine, bound to and reached at one address."""

    label = "this-machine"

    def __init__(self, address: str):
        self._address = address

    def command(self, host: str, argv: list[str]) -> list[str]:
        """`argv` unchanged: the process runs here."""
        return list(argv)

    def listen_address(self, host: str) -> str:
        """The one address."""
        return self._address

    def address(self, host: str, peer: str | None = None) -> str:
        """The one address."""
        return self._address


@dataclass(frozen=True)
class PlacedMeter:
    """A `WireMeter` running as a process on the SuperLink's host (process "meter")."""

    ports: dict[str, int]
    """Listening port per node name, on the SuperLink host's listen address."""
    control_address: str
    """host:port serving its snapshot, reachable from the SuperLink's host."""

    def snapshot(self) -> Snapshot:
        """Its cumulative counters (works only where `control_address` is reachable)."""
        return read_snapshot(self.control_address)


def _serve_meter(arguments: list[str]) -> None:
    """`python -m fl_crb.federation.launcher meter UPSTREAM PORT LISTEN NODE...`: run a
    `WireMeter` until SIGTERM, after printing its ports on a "METER READY {json}" line."""
    upstream, port, listen, *names = arguments
    meter = WireMeter(upstream, int(port), listen)
    ports = meter.start(names)
    ready = {"ports": ports, "control_address": meter.control_address}
    print(_METER_READY + json.dumps(ready), flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    meter.stop()


def _executable(name: str) -> str:
    """A Flower command from this interpreter's environment, else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise FederationError(f"{name} not found: install fl-crb[federate] (flwr 1.42)")
    return found


def _host_port(address: str, port: int) -> str:
    """host:port, with IPv6 addresses bracketed."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class LocalFederation:
    """SuperLink + SuperNodes started through a placement; use as a context manager."""

    def __init__(self, config: LaunchConfig):
        names = [node.name for node in config.nodes]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"LaunchConfig.nodes needs distinct node names, got {names}")
        self.config = config
        self.run_dir = Path(config.run_dir).resolve()
        self.placement: Placement = config.placement or (
            Loopback() if config.host == LOOPBACK else _ThisMachine(config.host)
        )
        self.keys = KeyFolder(Path(config.security.keys_dir).resolve()) if config.security else None
        if self.keys is not None:
            self._check_keys(config.nodes)
        self.superlink_port = 0
        self.node_ids: dict[str, int] = {}
        """Flower node id per node name, read from each SuperNode's log once it is online."""
        self.meter: WireMeter | PlacedMeter | None = None
        """The wire meter: in this process, or a process on the SuperLink's host."""
        self.processes = ProcessSet()
        """Every process started: "superlink", "meter" (when placed elsewhere), "node-<name>"
        and "node-<name>-executor" (warm ClientApps)."""
        self._nodes: dict[str, dict] = {}
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

    @property
    def tls(self) -> bool:
        """Whether connections to the SuperLink use TLS."""
        return self.config.security is not None and self.config.security.tls

    @property
    def node_auth(self) -> bool:
        """Whether the SuperLink accepts registered SuperNodes only."""
        return self.config.security is not None and self.config.security.node_auth

    # -- starting --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the SuperLink, the meter and the SuperNodes; wait until all are online."""
        for folder in ("superlink", "cli", "logs", "nodes"):
            (self.run_dir / folder).mkdir(parents=True, exist_ok=True)
        link = self.config.superlink_host
        listen = self.placement.listen_address(link)
        # A port free here; on another host (a fresh namespace) nothing else listens, and
        # a clash would end the SuperLink with its bind error in its log.
        here = self._runs_here(link) and listen not in _BIND_ALL
        self.superlink_port = free_port(listen if here else LOOPBACK)
        self._write_cli_config()
        self._spawn("superlink", link, self._superlink_command(listen), self.run_dir / "superlink")
        log = self.run_dir / "logs" / "superlink.log"
        # Its own log, not a connection: this process may not reach the SuperLink's host.
        self._wait(lambda: _LISTENING in log.read_text(errors="replace"), "superlink", "its port")
        if self.config.meter_wire:
            self.meter = self._start_meter(listen)
        for node in self.config.nodes:
            self._launch_node(node, register=True)
        for node in self.config.nodes:
            self._await_node(node)

    def _start_meter(self, listen: str) -> WireMeter | PlacedMeter:
        """The wire meter on the SuperLink's host: in this process if that host is this
        machine (the placement leaves its commands unchanged), else as a process there."""
        link = self.config.superlink_host
        upstream = self.placement.address(link, link)
        names = [node.name for node in self.config.nodes]
        if self._runs_here(link):
            meter = WireMeter(upstream, self.superlink_port, listen)
            meter.start(names)
            return meter
        command = [sys.executable, "-m", "fl_crb.federation.launcher", "meter"]
        command += [upstream, str(self.superlink_port), listen, *names]
        self._spawn("meter", link, command, self.run_dir / "superlink")
        log = self.run_dir / "logs" / "meter.log"
        self._wait(lambda: _METER_READY in log.read_text(errors="replace"), "meter", "its ports")
        ready = log.read_text(errors="replace").split(_METER_READY, 1)[1].splitlines()[0]
        return PlacedMeter(**json.loads(ready))

    def _runs_here(self, host: str) -> bool:
        """Whether the placement runs `host`'s commands unchanged, i.e. on this machine."""
        return self.placement.command(host, ["true"]) == ["true"]

    def start_node(self, node: NodeSpec, register: bool = True) -> int:
        """Start one more SuperNode and wait until it is online; its Flower node id.

        With node authentication its key is registered first unless `register` is False
        (the SuperLink then refuses the node: `FederationError` naming its log). A node
        added here is not behind the wire meter.
        """
        if node.name in self._nodes:
            raise ValueError(f"a SuperNode named {node.name!r} runs already")
        if self.keys is not None:
            self._check_keys((node,))
        self._launch_node(node, register)
        return self._await_node(node)

    def _check_keys(self, nodes: tuple[NodeSpec, ...]) -> None:
        """Every key file this deployment reads exists, and the certificate names its peers."""
        keys = self.keys
        if self.tls:
            keys.require(keys.ca_certificate, keys.superlink_certificate, keys.superlink_key)
            names = certificate_names(keys.superlink_certificate)
            link = self.config.superlink_host
            dialed = {self.placement.address(link, link)} | {
                self.placement.address(link, node.placed_on) for node in nodes
            }
            listen = self.placement.listen_address(link)
            dialed.add(LOOPBACK if listen in _BIND_ALL else listen)  # the SuperLink's SuperExec
            missing = sorted(dialed - set(names))
            if missing:
                raise ValueError(
                    f"{keys.superlink_certificate} is valid for {names} but the SuperLink is "
                    f"dialed at {missing}: recreate the keys with "
                    + " ".join(f"--san {address}" for address in missing)
                )
        if self.node_auth:
            for node in nodes:
                keys.require(keys.supernode_key(node.name), keys.supernode_public_key(node.name))

    def _superlink_command(self, listen: str) -> list[str]:
        command = [_executable("flower-superlink")]
        if self.tls:
            keys = self.keys
            command += [
                "--ssl-ca-certfile",
                str(keys.ca_certificate),
                "--ssl-certfile",
                str(keys.superlink_certificate),
                "--ssl-keyfile",
                str(keys.superlink_key),
            ]
        else:
            command.append("--insecure")
        if self.node_auth:
            command.append("--enable-supernode-auth")
        return [
            *command,
            "--host",
            listen,
            "--port",
            str(self.superlink_port),
            "--disable-runtime-dependency-installation",
        ]

    def _write_cli_config(self) -> None:
        """cli/config.toml: the SuperLink as the CLI's "local" connection."""
        link = self.config.superlink_host
        address = _host_port(self.placement.address(link, link), self.superlink_port)
        security = (
            f"root-certificates = {json.dumps(str(self.keys.ca_certificate))}\n"
            if self.tls
            else "insecure = true\n"
        )
        (self.run_dir / "cli" / "config.toml").write_text(
            f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "{address}"\n'
            + security,
            encoding="utf-8",
        )

    def _launch_node(self, node: NodeSpec, register: bool) -> None:
        """Register `node` (with node auth) and start its SuperNode (and warm executor)."""
        registered_id = self._register(node) if self.node_auth and register else None
        link = self.config.superlink_host
        metered = self.meter is not None and node.name in self.meter.ports
        fleet_port = self.meter.ports[node.name] if metered else self.superlink_port
        fleet = _host_port(self.placement.address(link, node.placed_on), fleet_port)
        runtime_port = free_port(LOOPBACK)
        home = self.run_dir / "nodes" / node.name
        home.mkdir(parents=True, exist_ok=True)
        node_pid = self._spawn(
            f"node-{node.name}",
            node.placed_on,
            self._supernode_command(node, fleet, runtime_port),
            home,
        )
        if self.config.warm_clientapps:
            executor = [
                sys.executable,
                "-m",
                "fl_crb.federation.warm_executor",
                "--insecure",  # the node's own Runtime API, on its host's loopback
                "--runtime-api-address",
                f"{LOOPBACK}:{runtime_port}",
                "--parent-pid",
                str(node_pid),
            ]
            self._spawn(f"node-{node.name}-executor", node.placed_on, executor, home)
        self._nodes[node.name] = {
            "role": node.role,
            "host": node.placed_on,
            "registered_node_id": registered_id,
            "fleet_address": fleet,
            "metered": metered,
            "runtime_port": runtime_port,
        }

    def _register(self, node: NodeSpec) -> int:
        """`flwr supernode register` the node's public key; the node id Flower assigns."""
        public_key = self.keys.supernode_public_key(node.name)
        arguments = ["supernode", "register", str(public_key), "local", "--name", node.name]
        listed = self._flwr([*arguments, "--format", "json"], timeout_s=60)
        try:
            return int(json.loads(listed.stdout)["node-id"])
        except (json.JSONDecodeError, KeyError, ValueError):
            raise FederationError(
                f"flwr supernode register refused {public_key} for node {node.name!r}: "
                f"{listed.stdout[-500:]}{listed.stderr[-500:]}"
            ) from None

    def _await_node(self, node: NodeSpec) -> int:
        """Wait until the node's log names its node id; record it and nodes.json."""
        log = self.run_dir / "logs" / f"node-{node.name}.log"
        self._wait(
            lambda: _NODE_ID.search(log.read_text(errors="replace")),
            f"node-{node.name}",
            "its registration",
        )
        node_id = int(_NODE_ID.search(log.read_text(errors="replace")).group(1))
        registered = self._nodes[node.name]["registered_node_id"]
        if registered is not None and registered != node_id:
            raise FederationError(
                f"node-{node.name} came online as node {node_id}, but its key was registered "
                f"as node {registered}; see {log}"
            )
        self.node_ids[node.name] = node_id
        self._nodes[node.name]["node_id"] = node_id
        (self.run_dir / "nodes.json").write_text(
            json.dumps(self._nodes, indent=1), encoding="utf-8"
        )
        return node_id

    def _supernode_command(self, node: NodeSpec, fleet: str, runtime_port: int) -> list[str]:
        if self.tls:
            arguments = ["--root-certificates", str(self.keys.ca_certificate)]
        else:
            arguments = ["--insecure"]
        if self.node_auth:
            arguments += ["--auth-supernode-private-key", str(self.keys.supernode_key(node.name))]
        arguments += [
            "--superlink",
            fleet,
            "--host",
            LOOPBACK,
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

    def _spawn(self, name: str, host: str, command: list[str], flwr_home: Path) -> int:
        """Start `command` on `host`; a placement that prefixes the command (`mnexec -d`)
        owns its session: a new session would make mnexec fork away from us."""
        placed = self.placement.command(host, command)
        log_path = self.run_dir / "logs" / f"{name}.log"
        return self.processes.spawn(
            name,
            placed,
            flwr_home,
            self._environment(flwr_home),
            log_path,
            new_session=placed == command,
        )

    def _flwr(
        self, arguments: list[str], timeout_s: float, log_path: Path | None = None
    ) -> subprocess.CompletedProcess:
        """Run the `flwr` CLI on the SuperLink's host with the "local" connection."""
        command = [_executable("flwr"), *arguments]
        placed = self.placement.command(self.config.superlink_host, command)
        environment = self._environment(self.run_dir / "cli")
        return run_once(placed, environment, timeout_s, log_path, new_session=placed == command)

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
        arguments = ["run", str(app_dir), "local", "--run-config", str(overrides), "--stream"]
        start = time.monotonic()
        try:
            self._flwr(arguments, timeout_s, log_path)
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
        listed = self._flwr(["ls", "local", "--run-id", str(run_id), "--format", "json"], 60)
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
        if isinstance(self.meter, WireMeter):
            self.meter.stop()
        self.processes.stop(self.processes.names(), timeout_s)


if __name__ == "__main__":
    if sys.argv[1:2] != ["meter"] or len(sys.argv) < 6:
        sys.exit("usage: python -m fl_crb.federation.launcher meter UPSTREAM PORT LISTEN NODE...")
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    _serve_meter(sys.argv[2:])
