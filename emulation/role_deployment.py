"""The emulator as the deployment test: the role commands, each on its host, from its bundle.

`run_roles(config, placement)` is a data plane with the signature of `emulation.run`'s
`DATA_PLANES` coordinators. It deploys what docs/deployment.md tells users to run on real
machines, on the hosts of the emulated network:

1. makes the keys (`create_keys`; the SuperLink's certificate names the cloud's
   addresses as every host dials it, `superlink_sans`) into `RUN/keys` (root's, 0700),
   and copies each host's bundle, and only its own, into that host's private state
   directory (`MininetPlacement.state_backing_dir`), owned by the host's user; the
   authority's inputs (the topology, a weights file or training run to start from) go
   into the cloud's state directory, since nothing else of the run folder is its user's;
2. starts `fl-crb authority` on the cloud host, `fl-crb edge` on each edge host and
   `fl-crb terminal` on each terminal host, each through
   `MininetPlacement.confined_command` (the host's own user, no capabilities), with
   `--bundle` and `--state` under the host's state directory (`STATE/bundle`,
   `STATE/run`), `--authority` the cloud's address as that host dials it, and the run's
   settings on the authority's command line (`authority_arguments`); each command's
   output goes to `RUN/logs/<host>.role.log`, a file the emulator opens;
3. waits until every command exits: a party still running `PARTY_GRACE_S` after the
   authority ended, or any command past the run's deadline, is stopped (SIGTERM, then
   SIGKILL after `STOP_GRACE_S`); on an error or a cancelled run all are stopped, and
   any process left running as a host's user is killed by its pid;
4. reads each host's state directory and writes the run folder the emulator's collect
   and report read (`fl_crb.runtime.local_run`'s layout):

       RUN/tasks.csv, summary.json   the terminals' task logs merged (`summarise_run`);
                                     summary.json gains "security" (the authority's),
                                     "federation" (`federation_summary`, plus the
                                     authority's own summary under "roles") and
                                     "role_commands" (each host's command line, user and
                                     exit status; `not_carried`; `leftovers_killed`:
                                     pids of processes that outlived their command)
       RUN/run.json                  the run's spec, the `FederatedRunConfig`, the epoch
                                     the authority chose and the role commands
       RUN/topology.yaml, parties/   the topology; each party's summary and task log
       RUN/authority/                the authority's folder (rounds, events, pool, ...)
       RUN/mailboxes/<host>/         each party's mailbox (refusals, learner state)
       RUN/logs/<host>.role.log      each command's output; RUN/logs/<host>/ its
                                     processes' logs (Flower's under flower/; the
                                     cloud's also service.log and the authority's
                                     summary.json)
       RUN/keys/                     the keys as the operator made them

The authority's command line carries every setting of the run the parties need, the
emulation's Flower polls, unpaced uplinks and real-time priority included; it serves
them to the parties. Those it has no flag for (the authority's restarts, the overrun
threshold) are listed in the summary's "role_commands.not_carried" rather than silently
dropped. With a real-time priority, the edges' and terminals' commands may take
SCHED_FIFO up to it (`MininetPlacement.confined_command`; "role_commands.realtime" says
how: RLIMIT_RTPRIO, or CAP_SYS_NICE where the emulator may not raise resource limits).
Test faults (`upload_faults`, `test_transit_faults`) are refused, since no role command
can inject them.

The code the hosts' users run may sit under a folder closed to them (a `mktemp -d`
clone): each host's mount namespace opens it (`host_state.code_exposure_commands`).

Stopping on request: `run_roles` installs SIGINT and SIGTERM handlers on its event loop
(`local_run.stop_on_signals`: `loop.add_signal_handler`, which the emulator's
`DataPlaneThread` loop keeps and hands the main thread's signals to, `emulation.monitor`;
elsewhere than the main thread, none is installed). A signal stops every role command
(SIGTERM: each stops its processes, which write their task logs and summaries), the run
folder is written from what the hosts left, and `RunInterrupted(signal, summary)` is
raised; a signal before the authority chose the epoch leaves no partial run
(`asyncio.CancelledError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from emulation.host_state import code_roots
from emulation.placement import MininetPlacement, realtime_grant
from fl_crb.federation.deploy.federated_run import superlink_sans
from fl_crb.federation.deploy.launch_config import SUPERLINK_SESSION_NICE
from fl_crb.federation.deploy.run_config import FederatedRunConfig, Quorum
from fl_crb.federation.deploy.run_support import federation_summary
from fl_crb.federation.keys import create_keys, plan_for_topology
from fl_crb.federation.roles.authority_role import READY_TIMEOUTS
from fl_crb.learn.method_config import LEARNER_FLAGS, METHOD_FLAGS, MethodConfig
from fl_crb.policies.spec import FEDERATED_NAME, TrainedRun, WeightsFile, absolute
from fl_crb.runtime.config import RunSpec
from fl_crb.runtime.local_run import (
    EDGE_ROLE,
    RUN_FILE,
    SUMMARY_FILE,
    TERMINAL_ROLE,
    LocalRunConfig,
    RunInterrupted,
    run_spec,
    stop_on_signals,
    summarise_run,
)
from fl_crb.runtime.party import write_json

AUTHORITY_ROLE = "authority"
"""The cloud host's role command."""
BUNDLE_DIR, RUN_DIR, INPUTS_DIR = "bundle", "run", "inputs"
"""Inside every host's state directory: its bundle, the role command's `--state`, and
(the cloud's) the authority's input files."""
PARTY_GRACE_S = 90.0
"""After the authority's command ended, how long the parties may take to send their
reports and stop their processes before they are stopped (at once if it failed)."""
STOP_GRACE_S = 20.0
"""A role command asked to stop (SIGTERM: it stops its own processes first) gets this
long before SIGKILL."""
RUN_MARGIN_S = 180.0
"""The run's deadline beyond its joining, arrivals and the authority's drain: the
authority's report wait and the stops."""
POLL_S = 0.5
"""Seconds between looks at the role commands."""
ROLE_START_LEAD_S = 10.0
"""The least start lead of a role deployment: the parties learn the epoch, chosen once
the authority's rounds serve, by polling the run service (over TLS, on hosts busy
starting 30 parties at once), not at once through a pipe as a coordinator's parties; a
party that learns it late starts at the slot under way, without the tasks before."""
JOIN_TIMEOUTS = 2
"""The authority waits this many start-up timeouts for the parties' hellos: each party
starts its processes (up to a start-up timeout) only once it reached the authority, and
a whole topology's start on one machine took 171 s of a coordinator's 180 (four-edge)."""


class RoleDeploymentError(RuntimeError):
    """The role deployment failed; the message names the host and its log."""


@dataclass
class RoleCommand:
    """One role command on one host, as started."""

    host: str
    role: str
    """"authority", "edge" or "terminal"."""
    argv: list[str]
    """The role command itself (what a user types, `fl-crb` as `python -m fl_crb.cli`)."""
    uid: int
    """The host's user it runs as."""
    log_path: Path
    realtime_priority: int | None = None
    """The SCHED_FIFO priority its processes may take (`confined_command`); None: none."""
    session_nice: int = 0
    """The nice value its processes may give their sessions (`confined_command`): the
    authority's, for its SuperLink (`LaunchConfig.superlink_session_nice`)."""
    process: asyncio.subprocess.Process | None = None
    stopped: bool = False
    """Whether the emulator stopped it (past its grace, or the run failed)."""
    exited_at: float | None = None

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.returncode


@dataclass
class CollectedParty:
    """A runtime party as `summarise_run` reads it: its name and role; it ran inside a
    role command, so its death is its command's report, not a process here."""

    name: str
    role: str
    dead: bool = False
    stopped: bool = False


async def run_roles(config: FederatedRunConfig, placement: MininetPlacement) -> dict[str, object]:
    """Deploy the role commands on the emulated hosts, run them to their end and write the
    run folder (see the module docstring); returns the summary."""
    _refuse_test_faults(config)
    _require_code_readable_by_all()
    lead_s = max(config.parties.start_lead_s, ROLE_START_LEAD_S)
    config = replace(config, parties=replace(config.parties, start_lead_s=lead_s))
    out = Path(config.parties.out_dir).resolve()
    if out.exists() and any(p.name != "hosts" for p in out.iterdir()):
        raise ValueError(f"run folder {out} is not empty; give a new folder for each run")
    local = replace(config.parties, out_dir=str(out))
    spec, params, terminals = run_spec(local)
    topology = spec.topology()
    cloud, edges = topology.cloud_host, topology.edge_names
    hosts = topology.terminal_names[:terminals]
    for sub in ("logs", "parties", "mailboxes"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local.target.topology_path, out / "topology.yaml")
    keys = out / "keys"
    keys.mkdir(mode=0o700)
    create_keys(
        keys, plan_for_topology(topology, superlink_sans(placement, cloud, [*edges, *hosts]))
    )
    for host in (cloud, *edges, *hosts):
        install_bundle(keys / host, placement, host)
    inputs = install_authority_inputs(local, placement, cloud)
    commands = [
        _command(
            placement,
            out,
            cloud,
            AUTHORITY_ROLE,
            authority_arguments(config, **inputs),
            session_nice=SUPERLINK_SESSION_NICE,
        )
    ]
    for host, role in [*((e, EDGE_ROLE) for e in edges), *((t, TERMINAL_ROLE) for t in hosts)]:
        address = placement.address(cloud, host)
        flags = party_arguments(address, _party_wait_s(local.startup_timeout_s))
        commands.append(
            _command(placement, out, host, role, flags, config.parties.realtime_priority)
        )
    started = time.time()
    deadline = started + _run_length_s(config, spec.end_slot * params.slot_s)
    leftovers: list[int] = []
    stop, received = asyncio.Event(), []
    try:
        with stop_on_signals(stop, received):
            for command in commands:
                await _start(command, placement)
            await _wait(
                commands,
                deadline,
                lambda: _record_epoch(out, config, spec, commands, placement),
                stop,
            )
    finally:
        await _stop_all(commands)
        leftovers = _kill_leftovers({command.uid for command in commands})
    interrupted = received[0] if received else None
    if interrupted is not None and not (out / RUN_FILE).exists():
        raise asyncio.CancelledError(f"{interrupted} before the run's epoch: no partial run")
    summary = collect_run(
        out, config, local, commands, placement, time.time() - started, interrupted
    )
    summary["role_commands"]["leftovers_killed"] = leftovers
    write_json(out / SUMMARY_FILE, summary)
    if interrupted is not None:
        raise RunInterrupted(interrupted, summary)
    return summary


def _refuse_test_faults(config: FederatedRunConfig) -> None:
    if config.upload_faults or config.test_transit_faults:
        raise ValueError(
            "upload_faults and test_transit_faults are test hooks of the one-coordinator "
            "run (fl-crb federate --local); the role commands cannot inject them"
        )


def _require_code_readable_by_all() -> None:
    """The hosts' users run this Python and this code (`host_state.code_roots`): a closed
    folder above them is opened inside each host (`code_exposure_commands`), but each of
    the folders themselves must let any user in; RoleDeploymentError naming the first that
    does not."""
    for root in code_roots():
        if root.is_dir() and root.stat().st_mode & 0o005 != 0o005:
            raise RoleDeploymentError(
                f"{root} is closed to other users, but every emulated host runs the role "
                f"commands from it as a user of its own: chmod o+rx {root}, or install "
                "fl-crb where every user can read it"
            )


def install_bundle(bundle: Path, placement: MininetPlacement, host: str) -> Path:
    """Copy `bundle` (DIR/<host>/ of the keys) into `host`'s state directory as
    STATE/bundle, owned by the host's user, folders 0700, modes kept (keys 0600); the
    copy as the emulator sees it."""
    target = placement.state_backing_dir(host) / BUNDLE_DIR
    shutil.copytree(bundle, target)
    _give_to(target, placement.net.host_uid(host))
    target.chmod(0o700)
    return target


def install_authority_inputs(
    local: LocalRunConfig, placement: MininetPlacement, cloud: str
) -> dict[str, str | None]:
    """Copy the topology and the starting weights (a weights file, or a training run's
    folder) into the cloud's STATE/inputs, owned by its user; their paths as the cloud's
    processes see them (`topology`, `start`: the --policy value, None to start fresh)."""
    backing = placement.state_backing_dir(cloud) / INPUTS_DIR
    seen = placement.state_dir(cloud) / INPUTS_DIR
    backing.mkdir()
    shutil.copyfile(local.target.topology_path, backing / "topology.yaml")
    start = absolute(local.policy).start
    policy = None
    if isinstance(start, WeightsFile):
        name = Path(start.path).name
        shutil.copyfile(start.path, backing / name)
        policy = f"{FEDERATED_NAME}:{seen / name}"
    elif isinstance(start, TrainedRun):
        name = Path(start.path).name
        shutil.copytree(start.path, backing / name)
        policy = f"{FEDERATED_NAME}:{seen / name}"
    _give_to(backing, placement.net.host_uid(cloud))
    return {"topology": str(seen / "topology.yaml"), "start": policy}


def _give_to(root: Path, uid: int) -> None:
    """`root` and everything under it to user and group `uid`."""
    os.chown(root, uid, uid)
    for directory, subdirs, files in os.walk(root):
        for name in [*subdirs, *files]:
            os.lchown(os.path.join(directory, name), uid, uid)


def authority_arguments(config: FederatedRunConfig, topology: str, start: str | None) -> list[str]:
    """`fl-crb authority`'s flags for the run `config` describes, the topology and the
    starting weights at the paths the cloud's processes see (the bundle and state flags
    come from `_command`)."""
    target, method = config.parties.target, config.method
    join_s = JOIN_TIMEOUTS * config.parties.startup_timeout_s
    argv = ["--topology", topology, "--duration", _seconds(target.duration_s),
            "--seed", str(target.seed)]  # fmt: skip
    if target.terminals_override is not None:
        argv += ["--terminals", str(target.terminals_override)]
    if target.arrival_rate_override_bps is not None:
        argv += ["--rate", f"{target.arrival_rate_override_bps!r}bps"]
    if start is not None:
        argv += ["--policy", start]
    argv += _method_flags(method)
    argv += ["--round-period", _seconds(config.round_period_s), "--quorum",
             _quorum(config.quorum), "--epsilon", repr(config.epsilon),
             "--start-lead", _seconds(config.parties.start_lead_s),
             "--join-timeout", _seconds(join_s)]  # fmt: skip
    if config.round_deadline_s is not None:
        argv += ["--round-deadline", _seconds(config.round_deadline_s)]
    if config.batches_per_round is not None:
        argv += ["--batches-per-round", str(config.batches_per_round)]
    argv += ["--supernode-poll", _seconds(config.supernode_idle_poll_s),
             "--superexec-poll", _seconds(config.superexec_poll_s),
             "--pace-ticks", str(config.parties.pace_ticks_per_slot)]  # fmt: skip
    if not config.parties.pace_uplink:
        argv.append("--no-pacing")
    if config.parties.realtime_priority is not None:
        argv += ["--realtime", str(config.parties.realtime_priority)]
    if not config.accelerators:
        argv.append("--no-accelerators")
    if config.insecure:
        argv.append("--insecure")
    return argv


def _method_flags(method: MethodConfig) -> list[str]:
    """Every learning setting as its flag (`method_config.LEARNER_FLAGS`, `METHOD_FLAGS`),
    so the authority's defaults never stand in for the run's."""
    argv = []
    for flags, owner in ((LEARNER_FLAGS, method.learner), (METHOD_FLAGS, method)):
        for name, flag in flags.items():
            argv += [flag, repr(getattr(owner, name))]
    return argv


def _seconds(value: float) -> str:
    return f"{value!r}s"


def _quorum(quorum: Quorum) -> str:
    if quorum.nodes is not None:
        return str(quorum.nodes)
    return "all" if quorum.share == 1.0 else repr(quorum.share)


def _party_wait_s(startup_timeout_s: float) -> float:
    """How long a party waits for the authority (`--give-up`): to be reachable, and, once
    it said hello, for the epoch, which comes once the last party of the start quorum
    said hello (`JOIN_TIMEOUTS`) and the authority's rounds serve (`READY_TIMEOUTS`)."""
    return (JOIN_TIMEOUTS + READY_TIMEOUTS) * startup_timeout_s


def party_arguments(authority: str, give_up_s: float) -> list[str]:
    """`fl-crb edge` or `fl-crb terminal`'s flags besides the bundle and the state: the
    authority's address as this host dials it, and how long to retry it."""
    return ["--authority", authority, "--give-up", _seconds(give_up_s)]


def not_carried(config: FederatedRunConfig) -> list[str]:
    """Settings of `config` the role commands cannot take (no flag of `fl-crb authority`
    carries them; the parties fetch theirs from the authority): named, with their value,
    where they differ from the authority's default."""
    defaults = FederatedRunConfig(parties=config.parties)
    parties = LocalRunConfig(config.parties.target, config.parties.policy, config.parties.out_dir)
    names = []
    if config.max_authority_restarts != defaults.max_authority_restarts:
        names.append(f"max_authority_restarts={config.max_authority_restarts!r}")
    if config.parties.overrun_threshold_fraction != parties.overrun_threshold_fraction:
        names.append(
            f"parties.overrun_threshold_fraction={config.parties.overrun_threshold_fraction!r}"
        )
    return names


def _command(
    placement: MininetPlacement,
    out: Path,
    host: str,
    role: str,
    flags: list[str],
    realtime_priority: int | None = None,
    session_nice: int = 0,
) -> RoleCommand:
    state = placement.state_dir(host)
    bundle, run = str(state / BUNDLE_DIR), str(state / RUN_DIR)
    argv = [sys.executable, "-m", "fl_crb.cli", role, "--bundle", bundle, "--state", run, *flags]
    log = out / "logs" / f"{host}.role.log"
    uid = placement.net.host_uid(host)
    return RoleCommand(host, role, argv, uid, log, realtime_priority, session_nice)


async def _start(command: RoleCommand, placement: MininetPlacement) -> None:
    """Start `command` confined to its host, its output in its log (opened here)."""
    with open(command.log_path, "wb") as log:
        command.process = await asyncio.create_subprocess_exec(
            *placement.confined_command(
                command.host, command.argv, command.realtime_priority, command.session_nice
            ),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"},
            start_new_session=True,
        )


def _run_length_s(config: FederatedRunConfig, arrivals_and_drain_s: float) -> float:
    """The longest the run may take: the authority's start and the parties' hellos, the
    start lead, the slots, the authority's drain, reports and stops."""
    parties = config.parties
    # the authority's start, the hellos, its rounds' start
    joining_s = (1 + JOIN_TIMEOUTS + READY_TIMEOUTS) * parties.startup_timeout_s
    return joining_s + parties.start_lead_s + arrivals_and_drain_s + RUN_MARGIN_S


async def _wait(
    commands: list[RoleCommand],
    deadline: float,
    each_poll: Callable[[], None],
    stop: asyncio.Event,
) -> None:
    """Until every command exited, calling `each_poll` every `POLL_S`; the parties get
    `PARTY_GRACE_S` after the authority, every command the run's `deadline`; those past
    theirs, and all once `stop` is set, are stopped."""
    authority = commands[0]
    while any(c.process and c.process.returncode is None for c in commands):
        each_poll()
        if stop.is_set():
            await _stop_all(commands)
            return
        now = time.time()
        for command in commands:
            if command.exited_at is None and command.exit_code is not None:
                command.exited_at = now
        if authority.exit_code not in (None, 0) or (
            authority.exited_at is not None and now > authority.exited_at + PARTY_GRACE_S
        ):
            await _stop_all(commands)
            return
        if now > deadline:
            await _stop_all(commands)
            return
        await asyncio.sleep(POLL_S)
    for command in commands:
        if command.exited_at is None:
            command.exited_at = time.time()


def _record_epoch(
    out: Path,
    config: FederatedRunConfig,
    spec: RunSpec,
    commands: list[RoleCommand],
    placement: MininetPlacement,
) -> None:
    """Write RUN/run.json once the authority's state holds the epoch."""
    if (out / RUN_FILE).exists():
        return
    with contextlib.suppress(OSError, ValueError, KeyError):  # not yet, or half-written
        cloud_run = json.loads(
            (placement.state_backing_dir(commands[0].host) / RUN_DIR / RUN_FILE).read_text()
        )
        write_run_record(out, config, spec, cloud_run["epoch_unix_s"], commands, placement)


async def _stop_all(commands: list[RoleCommand]) -> None:
    """SIGTERM every running command (it stops its own processes), SIGKILL its session
    after `STOP_GRACE_S`."""
    running = [c for c in commands if c.process and c.process.returncode is None]
    for command in running:
        command.stopped = True
        with contextlib.suppress(ProcessLookupError):
            command.process.send_signal(signal.SIGTERM)
    give_up = time.monotonic() + STOP_GRACE_S
    for command in running:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(command.process.wait(), max(0.1, give_up - time.monotonic()))
        if command.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(command.process.pid, signal.SIGKILL)
            await command.process.wait()
        command.exited_at = command.exited_at or time.time()


def _kill_leftovers(uids: set[int]) -> list[int]:
    """SIGKILL every process still running as one of the hosts' users (a role command's
    child that outlived it); their pids."""
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            uid = entry.stat().st_uid
        except OSError:
            continue
        if uid in uids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    return killed


def collect_run(
    out: Path,
    config: FederatedRunConfig,
    local: LocalRunConfig,
    commands: list[RoleCommand],
    placement: MininetPlacement,
    wall_s: float,
    interrupted: str | None = None,
) -> dict[str, object]:
    """Read every host's state directory and write the run folder; the summary.
    `interrupted`: the signal that stopped the run (the commands stopped for it are not
    failures)."""
    spec, params, _ = run_spec(local)
    authority = commands[0]
    cloud_state = placement.state_backing_dir(authority.host) / RUN_DIR
    cloud_summary = _json(cloud_state / "summary.json")
    cloud_run = _json(cloud_state / RUN_FILE)
    if cloud_run.get("epoch_unix_s") is None:
        raise RoleDeploymentError(
            f"the run never started: the authority on {authority.host} chose no epoch "
            f"(exit {authority.exit_code}); its output: {authority.log_path}\n"
            + _tail(authority.log_path)
        )
    _copy_tree(cloud_state / "authority", out / "authority")
    _copy_tree(cloud_state / "flower" / "logs", out / "logs" / authority.host / "flower")
    for name in ("service.log", "summary.json"):  # its notes (hellos, offsets), its summary
        if (cloud_state / name).exists():
            shutil.copyfile(cloud_state / name, out / "logs" / authority.host / name)
    parties = []
    for command in commands[1:]:
        state = placement.state_backing_dir(command.host) / RUN_DIR
        for path in sorted((state / "party").glob("*")) if (state / "party").is_dir() else []:
            shutil.copyfile(path, out / "parties" / path.name)
        _copy_tree(state / "mailbox", out / "mailboxes" / command.host)
        _copy_tree(state / "logs", out / "logs" / command.host)
        _copy_tree(state / "flower" / "logs", out / "logs" / command.host / "flower")
        parties.append(CollectedParty(command.host, command.role))
    roles = role_records(commands)
    write_run_record(out, config, spec, cloud_run["epoch_unix_s"], commands, placement)
    failed = [c.host for c in commands if c.exit_code != 0 and not (interrupted and c.stopped)]
    summary = summarise_run(out, local, spec, params.slot_s, parties, failed, interrupted)  # type: ignore[arg-type]
    secure = not config.insecure  # what the authority ran with, if it wrote no summary
    summary["security"] = cloud_summary.get("security", {"tls": secure, "node_auth": secure})
    topology = spec.topology()
    hosts = [p.name for p in parties if p.role == TERMINAL_ROLE]
    if (out / "authority" / "summary.json").exists():
        restarts = cloud_summary.get("authority_restarts") or 0
        summary["federation"] = federation_summary(
            out, topology.edge_names, hosts, restarts, wall_s
        )
    else:
        summary["federation"] = {"authority_finished": False}
    summary["federation"]["flower"] = cloud_summary.get("flower")
    summary["federation"]["roles"] = {k: v for k, v in cloud_summary.items() if k != "flower"}
    grant = None if config.parties.realtime_priority is None else realtime_grant()
    summary["role_commands"] = {**roles, "not_carried": not_carried(config), "realtime": grant}
    write_json(out / SUMMARY_FILE, summary)
    return summary


def role_records(commands: list[RoleCommand]) -> dict[str, dict[str, object]]:
    """Each host's role command: its role, command line, user, exit status, log."""
    return {
        c.host: {"role": c.role, "argv": c.argv, "uid": c.uid, "exit": c.exit_code,
                 "stopped": c.stopped, "log": str(c.log_path)}
        for c in commands
    }  # fmt: skip


def write_run_record(
    out: Path,
    config: FederatedRunConfig,
    spec: RunSpec,
    epoch: float,
    commands: list[RoleCommand],
    placement: MininetPlacement,
) -> None:
    """RUN/run.json: as soon as the authority chose the epoch (the emulator's progress
    lines then count slots), and again at the end with the commands' exits."""
    write_json(out / RUN_FILE, {
        "placement": f"{placement.label}-roles",
        "run": asdict(spec),
        "federated": asdict(config),
        "epoch_unix_s": epoch,
        "parties": [c.host for c in commands[1:]],
        "role_commands": role_records(commands),
    })  # fmt: skip


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _copy_tree(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)


def _tail(path: Path, lines: int = 12) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])
