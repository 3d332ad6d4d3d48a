"""A real Flower deployment: SuperLink and SuperNodes as processes, `flwr run`.

`LocalFederation` starts `flower-superlink` and one `flower-supernode` per node, each with
its own FLWR_HOME under the run folder, all with the offline settings (no telemetry, no
update check, no runtime dependency installation), waits until every SuperNode is
online, runs the app with `flwr run ... --stream`, and stops everything in order:
SuperNodes first (they would otherwise retry a vanished SuperLink), then the wire meter,
then the SuperLink. Every process runs in its own session and is stopped with its whole
descendance, the SuperExec and ClientApp processes Flower spawned included
(`processes.ProcessSet`). What to start is a `LaunchConfig` (`launch_config`); the
command lines, with TLS and SuperNode authentication, come from `flower_commands`; the
`flwr` CLI calls from `flower_cli`.

Where: every process starts through a `Placement` (`fl_crb.runtime.placement`) on a
topology host: the SuperLink, and every `flwr` CLI call, on `superlink_host`, each
SuperNode on its node's host. The default runs all on this machine at 127.0.0.1; the
emulator passes a placement that starts them inside Mininet hosts. The SuperLink binds
its host's listen address and nodes dial it at the address the placement gives for that
pair of hosts (or, with `LaunchConfig.superlink_address`, at that address of a SuperLink
started elsewhere: then only the SuperNodes start here; a SuperLink started with
`admitted_nodes` registers those nodes' keys for them). A SuperNode's own Runtime API
(used only by its SuperExec and ClientApps, unencrypted) always binds 127.0.0.1 of its
host. The wire meter listens on the SuperLink host's listen address: inside this process
when the placement runs that host's commands unchanged (this machine), else as a process
of its own on that host (`metering.meter_process`). Nothing here connects from this
process to the SuperLink's host, so this process may run outside the emulated network.
With node authentication each node's public key is registered (`flower_cli`) before the
node starts.

Run folder layout:

    superlink/      FLWR_HOME of the SuperLink (and its ServerApp processes)
    nodes/<name>/   FLWR_HOME of each SuperNode (and its ClientApp processes)
    cli/            FLWR_HOME of the `flwr` CLI: config.toml names the SuperLink as "local"
    app/            the Flower app project (`write_app_project`) unless one is given
    logs/           one log per process and per `flwr run`
    nodes.json      node name → role, host, Flower node id, ports, pid of the SuperNode
                    process online with that id (rewritten when one comes back online)
    superlink.json  pid and port of the SuperLink process serving (rewritten on restart)
    superlink/state.db  the SuperLink's state, with `durable_state` (else in memory)
    logs/<name>.<n>.log the log of the n-th process of a restarted SuperLink or node
    logs/flower-supervisor.log  one line per restart (`flower_supervisor`)
    flower.json     which Flower path runs: version, accelerators (`flower_record`)

Speed: the SuperExec's task poll is set through FLWR_SUPEREXEC_TASK_POLL_INTERVAL
(`superexec_poll_s`); with `supernode_idle_poll_s` the SuperNodes run through
`accelerators.fast_supernode`, which shortens the SuperNode's fixed 3 s idle wait; with
`warm_clientapps` each SuperNode's ClientApps are forked by `accelerators.warm_executor`
instead of started as fresh interpreters. Both only where `LaunchConfig.accelerators`
allows them and the installed Flower is the one they patch; otherwise stock Flower runs
and `start` logs one line saying which are off and why. `flower.json` in the run folder
(`flower_record`) says which path ran.

Restarts: with `LaunchConfig.max_restarts`, a `flower_supervisor.FlowerSupervisor`
watches the SuperLink and every SuperNode once all are online, and starts one that died
again with its very command line (`restart_superlink`, `restart_node`; a node's warm
executor is started anew beside it). `serving` is clear while the SuperLink is down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fl_crb.federation.accelerators import WARM_EXECUTOR
from fl_crb.federation.deploy.flower_cli import FlowerCli
from fl_crb.federation.deploy.flower_commands import BIND_ALL, FlowerCommands, host_port
from fl_crb.federation.deploy.launch_config import AppRun, FederationError, LaunchConfig, NodeSpec
from fl_crb.federation.deploy.processes import (
    ProcessSet,
    free_port,
    run_once,
    set_session_share,
)
from fl_crb.federation.metering.meter_process import PlacedMeter, meter_command, parse_ready
from fl_crb.federation.metering.wire_meter import WireMeter
from fl_crb.runtime.placement import LOOPBACK, Loopback, Placement

if TYPE_CHECKING:
    from fl_crb.federation.deploy.flower_supervisor import FlowerSupervisor

_NODE_ID = re.compile(r"SuperNode ID: (\d+)")
_LISTENING = "Uvicorn running on"
"""The SuperLink's log line once its port is bound."""
ACTIVATION_REFUSED = "Failed to activate SuperNode"
"""A SuperNode's last words when the SuperLink refuses to activate its registered node:
Flower 1.42 activates a node only once it counts the node's earlier session offline."""
ACTIVATION_RETRY_S = 1.0
"""Wait between attempts to start a SuperNode whose activation the SuperLink refused."""
SESSION_END_TIMEOUT_S = 30.0
"""How long ending a dead SuperNode's session at the SuperLink may take (`node_session`)."""
_LOG = logging.getLogger(__name__)


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


class LocalFederation:
    """SuperLink + SuperNodes started through a placement; use as a context manager."""

    def __init__(self, config: LaunchConfig):
        names = [node.name for node in config.nodes]
        if not (names or config.admitted_nodes) or len(set(names)) != len(names):
            raise ValueError(
                f"LaunchConfig.nodes needs distinct node names, got {names} (or, for a "
                "SuperLink alone, admitted_nodes)"
            )
        self.config = config
        self.run_dir = Path(config.run_dir).resolve()
        self.placement: Placement = config.placement or (
            Loopback() if config.host == LOOPBACK else _ThisMachine(config.host)
        )
        self.commands = FlowerCommands(config, self.placement)
        """Command lines, CLI config and environment of its Flower processes."""
        self.commands.check_keys(config.nodes)
        self.cli = FlowerCli(self.commands, self.placement, self.run_dir)
        """The `flwr` CLI calls (key registration, `flwr run`) on the SuperLink's host."""
        self.superlink_port = 0
        self.node_ids: dict[str, int] = {}
        """Flower node id per node name, read from each SuperNode's log once it is online."""
        self.admitted_ids: dict[str, int] = {}
        """Flower node id registered for each of `LaunchConfig.admitted_nodes`."""
        self.meter: WireMeter | PlacedMeter | None = None
        """The wire meter: in this process, or a process on the SuperLink's host."""
        self.processes = ProcessSet()
        """Every process started: "superlink", "meter" (when placed elsewhere), "node-<name>"
        and "node-<name>-executor" (warm ClientApps)."""
        self.command_lines: dict[str, list[str]] = {}
        """The command line each process of `processes` was started with, by name."""
        self._nodes: dict[str, dict] = {}
        self._specs: dict[str, NodeSpec] = {}
        self._runs = 0
        self.serving = threading.Event()
        """Set while the SuperLink serves (started here, online, not being restarted)."""
        self.supervisor: FlowerSupervisor | None = None
        """Restarts the SuperLink and the SuperNodes that die (`LaunchConfig.max_restarts`)."""
        self._stopping = threading.Event()
        self._records_lock = threading.Lock()

    def __enter__(self) -> LocalFederation:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_) -> None:
        self.stop()

    def start(self) -> None:
        """Start the SuperLink, the meter and the SuperNodes; wait until all are online.

        With `LaunchConfig.superlink_address` only the SuperNodes start, dialing it."""
        for folder in ("superlink", "cli", "logs", "nodes"):
            (self.run_dir / folder).mkdir(parents=True, exist_ok=True)
        if self.commands.off_notice:
            _LOG.warning(self.commands.off_notice)
        (self.run_dir / "flower.json").write_text(
            json.dumps(self.flower_record, indent=1), encoding="utf-8"
        )
        if self.config.superlink_address is not None:
            for node in self.config.nodes:
                self._launch_node(node, register=False)
            for node in self.config.nodes:
                self._await_node(node)
            return
        link = self.config.superlink_host
        listen = self.placement.listen_address(link)
        # A port free here; on another host (a fresh namespace) nothing else listens, and
        # a clash would end the SuperLink with its bind error in its log.
        here = self._runs_here(link) and listen not in BIND_ALL
        self.superlink_port = self.config.superlink_port or free_port(listen if here else LOOPBACK)
        (self.run_dir / "cli" / "config.toml").write_text(
            self.commands.cli_config(self.superlink_port), encoding="utf-8"
        )
        database = self.run_dir / "superlink" / "state.db" if self.config.durable_state else None
        superlink = self.commands.superlink(listen, self.superlink_port, database)
        self._spawn("superlink", link, superlink, self.run_dir / "superlink")
        log = self.run_dir / "logs" / "superlink.log"
        # Its own log, not a connection: this process may not reach the SuperLink's host.
        self._wait(lambda: _LISTENING in log.read_text(errors="replace"), "superlink", "its port")
        self._record_superlink()
        if self.config.meter_wire:
            self.meter = self._start_meter(listen)
        for name in self.config.admitted_nodes if self.commands.node_auth else ():
            public_key = self.commands.keys.supernode_public_key(name)
            self.admitted_ids[name] = self.cli.register(name, public_key)
        for node in self.config.nodes:
            self._launch_node(node, register=True)
        for node in self.config.nodes:
            self._await_node(node)
        self.serving.set()
        if self.config.max_restarts:
            from fl_crb.federation.deploy.flower_supervisor import FlowerSupervisor

            self.supervisor = FlowerSupervisor(self, self.config.max_restarts)
            self.supervisor.start()

    @property
    def flower_record(self) -> dict[str, object]:
        """Which Flower path runs: its version, the accelerators that run (none: stock
        Flower), why those asked for are off, the SuperNodes' idle poll in effect."""
        return self.commands.flower_record()

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
        command = meter_command(upstream, self.superlink_port, listen, names)
        self._spawn("meter", link, command, self.run_dir / "superlink")
        self._favour("meter")
        log = self.run_dir / "logs" / "meter.log"
        self._wait(lambda: parse_ready(log.read_text(errors="replace")), "meter", "its ports")
        return parse_ready(log.read_text(errors="replace"))

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
        self.commands.check_keys((node,))
        self._launch_node(node, register)
        return self._await_node(node)

    def _launch_node(self, node: NodeSpec, register: bool) -> None:
        """Register `node` (with node auth) and start its SuperNode (and warm executor)."""
        registered_id = None
        if self.commands.node_auth and register:
            public_key = self.commands.keys.supernode_public_key(node.name)
            registered_id = self.cli.register(node.name, public_key)
        link = self.config.superlink_host
        metered = self.meter is not None and node.name in self.meter.ports
        fleet_port = self.meter.ports[node.name] if metered else self.superlink_port
        fleet = self.config.superlink_address or host_port(
            self.placement.address(link, node.placed_on), fleet_port
        )
        runtime_port = free_port(LOOPBACK)
        home = self.run_dir / "nodes" / node.name
        home.mkdir(parents=True, exist_ok=True)
        node_pid = self._spawn(
            f"node-{node.name}",
            node.placed_on,
            self.commands.supernode(node, fleet, runtime_port),
            home,
        )
        if WARM_EXECUTOR in self.commands.accelerators:
            executor = self.commands.warm_executor(runtime_port, node_pid)
            self._spawn(f"node-{node.name}-executor", node.placed_on, executor, home)
        self._specs[node.name] = node
        self._nodes[node.name] = {
            "role": node.role,
            "host": node.placed_on,
            "registered_node_id": registered_id,
            "fleet_address": fleet,
            "metered": metered,
            "runtime_port": runtime_port,
        }

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
        self._nodes[node.name]["pid"] = self.processes.pid(f"node-{node.name}")
        self._write_record("nodes.json", self._nodes)
        return node_id

    def superlink_serving(self) -> bool:
        """Whether the SuperLink started here serves: its process runs, not restarting."""
        return self.serving.is_set() and self.processes.exit_status("superlink") is None

    def restart_superlink(self) -> None:
        """Start the SuperLink, which has exited, again with its command line; return once
        its port is bound. `serving` is clear meanwhile."""
        self.serving.clear()
        self.processes.restart("superlink", self._set_log_aside("superlink"))
        log = self.run_dir / "logs" / "superlink.log"
        self._wait(lambda: _LISTENING in log.read_text(errors="replace"), "superlink", "its port")
        self._record_superlink()
        self.serving.set()

    def _record_superlink(self) -> None:
        """superlink.json: the pid and port of the SuperLink process serving now, and
        its session's nice value (`_favour`)."""
        record = {
            "pid": self.processes.pid("superlink"),
            "port": self.superlink_port,
            "session_nice": self._favour("superlink"),
        }
        self._write_record("superlink.json", record)

    def _favour(self, name: str) -> int:
        """Give process `name`'s session `LaunchConfig.superlink_session_nice`, for the
        SuperLink and the wire meter that relays its every request; the nice value it
        has now (0 where not permitted: one log line, and the run goes on without)."""
        nice = self.config.superlink_session_nice
        refused = set_session_share(self.processes.pid(name), nice) if nice else None
        if refused is not None:
            _LOG.info("the %s's session keeps its CPU share: %s", name, refused)
        return 0 if refused is not None else nice

    def _write_record(self, name: str, record: dict) -> None:
        """Write run_dir/`name` as JSON whole (a temporary file, then a rename: readers,
        such as a fault injector, never see half of it; restarts write from threads)."""
        with self._records_lock:
            temporary = self.run_dir / f".{name}.tmp"
            temporary.write_text(json.dumps(record, indent=1), encoding="utf-8")
            os.replace(temporary, self.run_dir / name)

    def restart_node(self, name: str, patience_s: float) -> int:
        """Start the SuperNode `name`, which has exited, again with its command line (and
        a new warm executor beside it); its Flower node id once it is online again.

        Flower refuses to activate a registered node while it still counts the node's
        earlier session online, which lasts up to `HEARTBEAT_PATIENCE` heartbeat
        intervals (60 s in 1.42) after the dead process's last heartbeat: with node
        authentication, on the Flower whose internal client `node_session` uses (where the
        accelerators run), that session is ended first, signed with the node's key;
        otherwise (Flower as shipped), or should the SuperLink still refuse, the node is
        started again every `ACTIVATION_RETRY_S` until `patience_s` has passed (its log
        holds the last attempt only). `FederationError` if it is not online by then or
        fails otherwise."""
        node, executor = self._specs[name], f"node-{name}-executor"
        if executor in self.processes.names():
            self.processes.stop([executor], self.config.stop_timeout_s)
        log = self._set_log_aside(f"node-{name}")
        if self.commands.node_auth and self.commands.accelerators:  # Flower internals
            self._end_session(node)
        give_up = time.monotonic() + patience_s
        while True:
            pid = self.processes.restart(f"node-{name}", log)
            if WARM_EXECUTOR in self.commands.accelerators:
                runtime_port = self._nodes[name]["runtime_port"]
                command = self.commands.warm_executor(runtime_port, pid)
                self._spawn(executor, node.placed_on, command, self.run_dir / "nodes" / name)
            try:
                return self._await_node(node)
            except FederationError:
                refused = ACTIVATION_REFUSED in log.read_text(errors="replace")
                if not refused or time.monotonic() + ACTIVATION_RETRY_S > give_up:
                    raise
            if executor in self.processes.names():
                self.processes.stop([executor], self.config.stop_timeout_s)
            time.sleep(ACTIVATION_RETRY_S)

    def restart_executor(self, name: str) -> None:
        """Start the warm executor of the SuperNode `name`, which has exited while its
        node runs, again beside it: without it, the node stores its messages and never
        runs their ClientApps."""
        executor = f"node-{name}-executor"
        self.processes.stop([executor], self.config.stop_timeout_s)
        runtime_port = self._nodes[name]["runtime_port"]
        command = self.commands.warm_executor(runtime_port, self.processes.pid(f"node-{name}"))
        self._spawn(executor, self._specs[name].placed_on, command, self.run_dir / "nodes" / name)

    def _end_session(self, node: NodeSpec) -> None:
        """End the dead node's session at the SuperLink (`node_session`, on its host, with
        its key), so that its new process is activated at once; if that fails, the
        restart waits for the session to expire instead (its line in the node's log)."""
        from fl_crb.federation.deploy.node_session import MODULE as NODE_SESSION_MODULE

        keys = self.commands.keys
        command = [sys.executable, "-m", NODE_SESSION_MODULE]
        command += ["--superlink", self._nodes[node.name]["fleet_address"]]
        command += ["--root-certificates", str(keys.ca_certificate)] if self.commands.tls else []
        command += ["--auth-supernode-private-key", str(keys.supernode_key(node.name))]
        command += ["--node-id", str(self.node_ids[node.name])]
        placed = self.placement.command(node.placed_on, command)
        log = self.run_dir / "logs" / f"node-{node.name}.session.log"
        with contextlib.suppress(subprocess.TimeoutExpired):
            environment = self.commands.environment(self.run_dir / "nodes" / node.name)
            run_once(placed, environment, SESSION_END_TIMEOUT_S, log, placed == command)

    def _set_log_aside(self, name: str) -> Path:
        """Move logs/<name>.log to logs/<name>.<n>.log (the n-th process's, first free n)
        and return the path of the log the next process writes."""
        log = self.run_dir / "logs" / f"{name}.log"
        number = 1
        while (aside := log.with_name(f"{name}.{number}.log")).exists():
            number += 1
        if log.exists():
            log.rename(aside)
        return log

    def _spawn(self, name: str, host: str, command: list[str], flwr_home: Path) -> int:
        """Start `command` on `host`; a placement that prefixes the command (`mnexec -d`)
        owns its session: a new session would make mnexec fork away from us."""
        placed = self.placement.command(host, command)
        self.command_lines[name] = placed
        log_path = self.run_dir / "logs" / f"{name}.log"
        return self.processes.spawn(
            name,
            placed,
            flwr_home,
            self.commands.environment(flwr_home),
            log_path,
            new_session=placed == command,
        )

    def _wait(self, ready, name: str, what: str) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while not ready():
            if self._stopping.is_set():
                raise FederationError(f"{name}: the deployment is stopping")
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

    def run_app(
        self,
        run_config: dict,
        timeout_s: float,
        app_dir: Path | None = None,
        standby_next: bool = False,
    ) -> AppRun:
        """`flwr run` the app with `run_config` overrides and wait for the run to end;
        with `standby_next`, the next such `flwr run` stands by meanwhile (`flower_cli`)."""
        self._runs += 1
        if app_dir is None:
            from fl_crb.federation.deploy.app_project import write_app_project

            app_dir = write_app_project(self.run_dir / "app")
        return self.cli.run(app_dir, run_config, timeout_s, self._runs, standby_next)

    def probe(self, plan: str, rounds: int, timeout_s: float = 600.0) -> dict:
        """Flower's bare message round trip: run the app's probe mode, return its result.

        `plan` is the probe plan ("request_bytes:reply_bytes,..."), each entry exchanged
        `rounds` times with every node; see `server_app` for the result's fields.
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

    def stop(self) -> None:
        """Stop the supervisor, the SuperNodes, the meter, then the SuperLink (SIGTERM,
        then SIGKILL)."""
        timeout_s = self.config.stop_timeout_s
        self._stopping.set()
        if self.supervisor is not None:
            self.supervisor.stop()
        self.cli.close()
        self.processes.stop([n for n in self.processes.names() if n.startswith("node-")], timeout_s)
        if isinstance(self.meter, WireMeter):
            self.meter.stop()
        self.processes.stop(self.processes.names(), timeout_s)
