"""Local mode: every party of a topology as its own process on 127.0.0.1, one run folder.

`run_local(config)` starts each edge server (on a free port), then each terminal, waits
until all are READY (listening, connected), gives them a common epoch a moment ahead,
waits for them to finish, and writes the run folder:

    DIR/run.json             what was run: the whole `LocalRunConfig`, the parties' shared
                             `RunSpec`, the epoch, the parties and their first pids
    DIR/topology.yaml        a copy of the topology file
    DIR/tasks.csv            every task's outcome (`fl_crb.runtime.tasklog`)
    DIR/summary.json         tasks, average delay, failure rate, overruns, bytes per party,
                             the parties that died (and what they held), reconnections and
                             redirected tasks per terminal; `interrupted` for a run stopped
                             by SIGINT or SIGTERM (its partial tasks.csv and summary)
    DIR/logs/PARTY.log       each party's log (its standard error)
    DIR/parties/PARTY.json   each party's own summary; PARTY.tasks.jsonl per terminal and
                             PARTY.outcomes.jsonl per edge, appended as the run goes
    DIR/config/PARTY.json    the config each party was started with
    DIR/weights/             a trained run's per-edge networks as weights files (policy
                             `TrainedRun`: each terminal acts with its managing edge's)

Without a network emulator the terminals pace their uplink at the topology's rate.

A party that dies during the run (killed, or failed) is reported in the summary with
when and how; what it held is counted, not lost from sight: a dead terminal's logged
tasks stay in tasks.csv, those it still held are `terminal-lost` (or settled by the edge
that had received them, `settle_dead_terminal`), and a dead edge's tasks are `edge-lost`
at their terminals.

The parties named in `LocalRunConfig.supervised` are started again when they die before
the run's last slot (`fl_crb.runtime.party_supervisor`: at most `RESTART_LIMIT` times,
one log line each, DIR/logs/PARTY.N.log for the N-th restart's log). The summary lists
each restarted death (`restarted_deaths`: when, how, what it held) and each supervised
party's restarts (`restarts`). A restarted terminal appends to its task log; the tasks
its dead process held are settled like a dead terminal's, and those that arrived while
no process of it ran are `terminal-lost` too (decided by `terminal-down`), so every task
of its workload up to its last life's start is in tasks.csv.

Each party runs in its own session, so a Ctrl-C at the terminal reaches the coordinator
only, which stops the parties and writes the partial run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from fl_crb.mec.params import MECParams
from fl_crb.policies.spec import (
    Baseline,
    Federated,
    PolicySpec,
    TrainedRun,
    WeightsFile,
    absolute,
)
from fl_crb.runtime.config import (
    Address,
    EdgeConfig,
    FederatedEdge,
    FederatedTerminal,
    RunSpec,
    RunTarget,
    TerminalConfig,
    save_config,
)
from fl_crb.runtime.party import READY, RESTART_ENV, write_json
from fl_crb.runtime.party_supervisor import (
    RESTART_LIMIT,
    EndedLife,
    RunWindow,
    Supervision,
    life_entry,
    restart_line,
)
from fl_crb.runtime.placement import Loopback, Placement
from fl_crb.runtime.tasklog import (
    EDGE_LOST,
    FAULT_LOST,
    TERMINAL_LOST,
    LiveTask,
    read_edge_outcomes,
    read_task_lines,
    read_task_table,
    settle_dead_terminal,
    weights_age_summary,
    write_task_csv,
)
from fl_crb.runtime.terminal import terminal_workload

RUN_FILE = "run.json"
TASKS_FILE = "tasks.csv"
SUMMARY_FILE = "summary.json"
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Numerical libraries in each party use one thread: many parties share few cores."""
EDGE_SERVER_MODULE = "fl_crb.runtime.edge_server"
"""The module an edge server party runs as (`python -m`), unless `launch_parties` is given
another."""
TERMINAL_MODULE = "fl_crb.runtime.terminal"
"""The module a terminal party runs as, unless `launch_parties` is given another."""
EXIT_GRACE_S = 30.0
"""How long after the last slot the parties may take to write their outputs and exit."""
STOP_GRACE_S = 2.0
"""An interrupted run's parties get SIGTERM, then SIGKILL this much later."""
EDGE_ROLE, TERMINAL_ROLE = "edge", "terminal"
TERMINAL_DOWN = "terminal-down"
"""`decided_by` of a task that arrived while no process of its terminal ran (between a
death and the restart): nothing decided it, it is `terminal-lost`."""


@dataclass(frozen=True)
class LocalRunConfig:
    """One local run: what it targets, what its terminals decide with, how its parties run."""

    target: RunTarget
    """Topology, overrides, workload seed and duration of arrivals."""
    policy: PolicySpec
    """What every terminal decides with: a live baseline, a weights file, or a training
    run folder (each terminal acting with its managing edge's network). A `Federated`
    policy needs the federation around the parties (`FederatedRunConfig`)."""
    out_dir: str
    """Run folder; created, and must not hold an earlier run."""
    pace_uplink: bool = True
    """Terminals pace their uplink at the topology's rate (nothing else shapes loopback)."""
    pace_ticks_per_slot: int = 4
    """Paced uplinks write a slot's bytes in this many steps."""
    overrun_threshold_fraction: float = 0.25
    """A slot boundary handled later than this fraction of a slot counts as an overrun."""
    startup_timeout_s: float = 120.0
    """How long the parties may take to become READY (imports, connections)."""
    start_lead_s: float = 1.0
    """The epoch is this far after the last party became READY."""
    realtime_priority: int | None = None
    """SCHED_FIFO priority for every party once READY (needs root); None: normal."""
    supervised: tuple[str, ...] = ()
    """Parties (topology host names of edges and terminals) started again, each at most
    `RESTART_LIMIT` times, when they die during the run (`party_supervisor`); the others
    stay dead, reported as dead."""

    def __post_init__(self) -> None:
        if isinstance(self.policy, Baseline) and not self.policy.live:
            raise ValueError(
                f"policy {self.policy.name} decides from every terminal's observation: "
                "simulation only, a live terminal cannot run it"
            )
        if self.pace_ticks_per_slot < 1:
            raise ValueError(f"--pace-ticks must be >= 1, got {self.pace_ticks_per_slot}")
        if not 0 < self.overrun_threshold_fraction <= 1:
            raise ValueError(
                "overrun_threshold_fraction must lie in (0, 1] of a slot, got "
                f"{self.overrun_threshold_fraction!r}"
            )
        if isinstance(self.supervised, str) or not all(
            isinstance(name, str) for name in self.supervised
        ):
            raise ValueError(f"supervised must be a list of party names, got {self.supervised!r}")
        object.__setattr__(self, "supervised", tuple(self.supervised))


@dataclass(frozen=True)
class _Launch:
    """How a party's process is started: again, for a supervised party that died."""

    out: Path
    module: str
    config_path: Path
    placement: Placement
    startup_timeout_s: float


@dataclass
class _Party:
    name: str
    process: asyncio.subprocess.Process
    """Its current process (the newest, for a party started again)."""
    log_path: Path
    """Its current process's log."""
    role: str = ""
    """edge or terminal."""
    exited_at: float | None = None
    """Unix time its current process's exit was noticed."""
    stopped: bool = field(default=False)
    """Whether the coordinator ended it (interrupted run, or past its exit grace)."""
    launch: _Launch | None = None
    supervision: Supervision | None = None
    """Its restarts, if the run supervises it; None: a death is final."""

    @property
    def dead(self) -> bool:
        """It ended with a failure the coordinator did not cause: killed or crashed."""
        code = self.process.returncode
        return code is not None and code != 0 and not self.stopped


class RunInterrupted(Exception):
    """The run was stopped by a signal; its partial run folder is written."""

    def __init__(self, signal_name: str, summary: dict[str, object]) -> None:
        self.signal_name = signal_name
        self.summary = summary
        super().__init__(f"run interrupted by {signal_name}")


async def run_local(
    config: LocalRunConfig, placement: Placement | None = None
) -> dict[str, object]:
    """Run every party, wait for them, write the run folder; returns the summary.

    `placement` says where each party runs (default: all on loopback); the emulator
    passes one that starts each party on its own Mininet host."""
    placement = placement or Loopback()
    out = Path(config.out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"run folder {out} is not empty; give a new folder for each run")
    if isinstance(config.policy, Federated):
        raise ValueError(
            f"policy {config.policy.describe()} needs the federation around the parties: "
            "run it with `fl-crb federate` (`FederatedRunConfig`), not as a local run"
        )
    spec, params, terminals = run_spec(config)
    policies = terminal_policies(config.policy, params, terminals, out / "weights")
    for sub in ("config", "logs", "parties"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(config.target.topology_path, out / "topology.yaml")
    cpu_before = _children_cpu_s()
    load_before = os.getloadavg()
    parties: list[_Party] = []
    stop = asyncio.Event()
    signals: list[str] = []
    with stop_on_signals(stop, signals):
        try:
            launch = launch_parties(out, config, spec, policies, placement, parties)
            epoch = await unless_stopped(launch, stop)
            if epoch is not None:
                _write_run_file(out, config, spec, params.slot_s, epoch, parties, placement)
                finish_by = epoch + spec.end_slot * params.slot_s + EXIT_GRACE_S
                failed = await wait_parties(parties, finish_by, stop)
        except BaseException:
            await stop_parties(parties)
            raise
        if stop.is_set():
            await stop_parties(parties, STOP_GRACE_S)
            failed = [p.name for p in parties if p.dead]
    interrupted = signals[0] if signals else None
    summary = summarise_run(out, config, spec, params.slot_s, parties, failed, interrupted)
    summary["machine"] = {
        "cpus": os.cpu_count(),
        "load_avg_1min_before": round(load_before[0], 2),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
        "parties_cpu_s": round(_children_cpu_s() - cpu_before, 2),
    }
    write_json(out / SUMMARY_FILE, summary)
    if interrupted is not None:
        raise RunInterrupted(interrupted, summary)
    return summary


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event, received: list[str]):
    """While inside, SIGINT and SIGTERM set `stop` (and are noted in `received`) instead
    of ending the program: the coordinator then stops its parties and writes the run."""
    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):

        def handle(signum: signal.Signals = signum) -> None:
            received.append(signum.name)
            stop.set()

        try:
            loop.add_signal_handler(signum, handle)
        except (ValueError, RuntimeError, NotImplementedError):  # not the main thread
            continue
        installed.append(signum)
    try:
        yield
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def unless_stopped(work: Awaitable[float], stop: asyncio.Event) -> float | None:
    """The result of `work`, or None (and `work` cancelled) if `stop` is set first."""
    task, stopped = asyncio.ensure_future(work), asyncio.ensure_future(stop.wait())
    await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return None


async def launch_parties(
    out: Path,
    config: LocalRunConfig,
    spec: RunSpec,
    policies: Sequence[PolicySpec],
    placement: Placement,
    parties: list[_Party],
    federation: Callable[[int, str], FederatedTerminal] | None = None,
    before_start: Callable[[], Awaitable[None]] | None = None,
    terminal_module: str = TERMINAL_MODULE,
    edge_module: str = EDGE_SERVER_MODULE,
    edge_mailboxes: Path | None = None,
    edge_federation: Callable[[int, str], FederatedEdge] | None = None,
) -> float:
    """Start every edge server, then every terminal (appended to `parties` as they start,
    so the caller can stop them on failure), wait until all are READY and send START.

    `policies[d]` is what terminal d decides with (`terminal_policies`);
    `federation(d, host)` gives terminal d its federated settings (None: not federated);
    `before_start()` is awaited once all are READY, before the epoch is chosen (the
    federated run starts its authority there); `terminal_module` is the module each
    terminal runs as (`python -m`; the federated run gives its own, whose terminals decide
    with their federated settings); `edge_module` likewise for each edge server (the
    federated run's edges hand their learners' weights to their terminals), and
    `edge_mailboxes` is the folder of those learners' mailboxes (<folder>/<edge name>,
    `FederatedEdge`; None: not federated), or `edge_federation(e, name)` gives edge e its
    whole `FederatedEdge` (the federated run's: its uplink too). Returns the run's epoch.

    The parties named in `config.supervised` get a `Supervision` (`wait_parties` starts
    them again when they die); each edge's config file is rewritten with the port it
    listens on, so that a restart binds that port again."""
    params, terminals = spec.model()
    topology = spec.topology()
    edge_names, terminal_names = topology.edge_names, topology.terminal_names
    window = RunWindow(slot_s=params.slot_s)
    spawn = _Spawner(out, placement, config, window)
    edges: list[EdgeConfig] = []
    for e, name in enumerate(edge_names):
        listen = Address(placement.listen_address(name), 0)
        if edge_federation is not None:
            federated = edge_federation(e, name)
        elif edge_mailboxes is not None:
            federated = FederatedEdge(str(edge_mailboxes / name))
        else:
            federated = None
        summary_path = str(out / "parties" / f"{name}.json")
        edges.append(EdgeConfig(spec, e, listen, summary_path, federation=federated))
        parties.append(await spawn(name, edge_module, edges[-1], EDGE_ROLE))
    ready_by = time.time() + config.startup_timeout_s
    edge_ports = [int((await _ready(party, ready_by))["port"]) for party in parties]
    for party, edge, port in zip(parties, edges, edge_ports, strict=True):
        assert party.launch is not None
        save_config(replace(edge, listen=replace(edge.listen, port=port)), party.launch.config_path)
    for d, name in enumerate(terminal_names[:terminals]):
        edges = tuple(
            Address(placement.address(edge, peer=name), port)
            for edge, port in zip(edge_names, edge_ports, strict=True)
        )
        terminal = TerminalConfig(
            spec,
            d,
            edges,
            policies[d],
            config.pace_uplink,
            config.pace_ticks_per_slot,
            str(out / "parties" / f"{name}.tasks.jsonl"),
            str(out / "parties" / f"{name}.json"),
            federation=None if federation is None else federation(d, name),
        )
        parties.append(await spawn(name, terminal_module, terminal, TERMINAL_ROLE))
    for party in parties[params.edges :]:
        await _ready(party, ready_by)
    if before_start is not None:
        await before_start()
    epoch = time.time() + config.start_lead_s
    window.epoch_unix_s, window.end_unix_s = epoch, epoch + spec.end_slot * params.slot_s
    for party in parties:
        await _send_start(party, epoch)
    return epoch


async def _send_start(party: _Party, epoch: float) -> None:
    assert party.process.stdin is not None
    party.process.stdin.write(f"START {epoch!r}\n".encode())
    await party.process.stdin.drain()
    party.process.stdin.close()


def run_spec(config: LocalRunConfig) -> tuple[RunSpec, MECParams, int]:
    """The shared facts of the run; checks the topology, duration and supervised parties
    before any process."""
    target = config.target
    topology = target.topology()
    params, terminals = topology.mec_params(), topology.terminal_count
    parties = [*topology.edge_names, *topology.terminal_names[:terminals]]
    unknown = [name for name in config.supervised if name not in parties]
    if unknown:
        raise ValueError(
            f"supervised parties {unknown}: not an edge or terminal of topology "
            f"{topology.name!r} ({', '.join(parties[:8])}{', ...' if len(parties) > 8 else ''})"
        )
    _check_realtime(config.realtime_priority)
    arrival_slots = round(target.duration_s / params.slot_s)
    if arrival_slots < 1:
        raise ValueError(
            f"duration {target.duration_s}s is shorter than one slot ({params.slot_s}s)"
        )
    deadline_slots = int(params.per_terminal(terminals).deadline_slots.max())
    spec = RunSpec(
        run_id=secrets.randbits(63),
        target=replace(target, topology_path=str(Path(target.topology_path).resolve())),
        arrival_slots=arrival_slots,
        end_slot=arrival_slots + deadline_slots + 2,
        overrun_threshold_s=config.overrun_threshold_fraction * params.slot_s,
        realtime_priority=config.realtime_priority,
    )
    return spec, params, terminals


def terminal_policies(
    policy: PolicySpec, params: MECParams, terminals: int, folder: Path
) -> list[PolicySpec]:
    """What each terminal decides with, paths made absolute: the policy itself, except
    for a training run folder, whose per-edge networks are exported into `folder` as
    weights files (`fl_crb.training.start_weights`), each terminal getting its managing
    edge's. Refuses a missing or unfitting start before any process starts."""
    if isinstance(policy, WeightsFile) and not Path(policy.path).is_file():
        raise ValueError(f"policy {policy.describe()}: weights file {policy.path} does not exist")
    if not isinstance(policy, TrainedRun):
        return [absolute(policy)] * terminals
    from fl_crb.training.start_weights import edge_weights_files  # torch: only here

    files = edge_weights_files(policy, params, folder)
    managing = params.per_terminal(terminals).managing_edge
    return [WeightsFile(files[int(managing[d])]) for d in range(terminals)]


def _check_realtime(priority: int | None) -> None:
    """Refuse a real-time priority the parties could not take, before starting any."""
    if priority is None:
        return
    low, high = os.sched_get_priority_min(os.SCHED_FIFO), os.sched_get_priority_max(os.SCHED_FIFO)
    if not low <= priority <= high:
        raise ValueError(f"real-time priority {priority}; expected {low}..{high}")
    allowed = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
    if os.geteuid() != 0 and allowed != resource.RLIM_INFINITY and allowed < priority:
        raise ValueError(
            f"real-time priority {priority} needs root or RLIMIT_RTPRIO >= {priority} "
            f"(it is {allowed}); run without --realtime"
        )


@dataclass(frozen=True)
class _Spawner:
    """Starts the parties of one run (`__call__`), supervising those the run names."""

    out: Path
    placement: Placement
    config: LocalRunConfig
    window: RunWindow

    async def __call__(self, name: str, module: str, config: object, role: str) -> _Party:
        """Start party `name` (a topology host name) on its host as `python -m module`
        with `config` saved to DIR/config/NAME.json."""
        config_path = self.out / "config" / f"{name}.json"
        save_config(config, config_path)
        launch = _Launch(
            self.out, module, config_path, self.placement, self.config.startup_timeout_s
        )
        log_path = self.out / "logs" / f"{name}.log"
        supervision = None
        if name in self.config.supervised:
            supervision = Supervision(RESTART_LIMIT, self.window)
        process = await _start_process(name, launch, log_path, restart=0)
        return _Party(name, process, log_path, role, launch=launch, supervision=supervision)


async def _start_process(
    name: str, launch: _Launch, log_path: Path, restart: int
) -> asyncio.subprocess.Process:
    """Start `python -m module CONFIG` on the party's host, stdin and stdout piped, in a
    session of its own (a Ctrl-C meant for the coordinator does not reach it: the
    coordinator stops it); `restart` > 0 tells it it is started again (`RESTART_ENV`)."""
    argv = [sys.executable, "-m", launch.module, str(launch.config_path)]
    env = {key: value for key, value in os.environ.items() if key != RESTART_ENV}
    env |= SINGLE_THREADED | ({RESTART_ENV: str(restart)} if restart else {})
    with log_path.open("wb") as log_file:
        return await asyncio.create_subprocess_exec(
            *launch.placement.command(name, argv),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log_file,
            env=env,
            start_new_session=True,
        )


async def _ready(party: _Party, ready_by: float) -> dict:
    """Wait for the party's READY line; its JSON facts."""
    assert party.process.stdout is not None
    try:
        line = await asyncio.wait_for(
            party.process.stdout.readline(), max(0.0, ready_by - time.time())
        )
    except TimeoutError:
        raise RuntimeError(f"{party.name} did not become READY in time; {_tail(party)}") from None
    text = line.decode(errors="replace").strip()
    if not text.startswith(READY):
        raise RuntimeError(f"{party.name} failed to start (said {text!r}); {_tail(party)}")
    return json.loads(text[len(READY) :])


async def wait_parties(
    parties: list[_Party], finish_by: float, stop: asyncio.Event | None = None
) -> list[str]:
    """Wait for every party to exit, all at once, until `finish_by` (a Unix time); kill
    those still running then. Notes when each exits (a party that dies early is seen at
    once) and starts a supervised party that died during the run again (`_start_again`).
    Returns the names of those that failed; returns early, with those that failed so far,
    if `stop` is set."""
    exits: dict[asyncio.Future, _Party] = {}
    restarts: dict[asyncio.Future, _Party] = {}

    def watch(party: _Party) -> None:
        exit_ = asyncio.ensure_future(party.process.wait())
        exit_.add_done_callback(lambda _, party=party: _exited(party))
        exits[exit_] = party

    for party in parties:
        watch(party)
    stopped = asyncio.ensure_future(stop.wait()) if stop is not None else None
    while (exits or restarts) and not (stop is not None and stop.is_set()):
        done, _ = await asyncio.wait(
            {*exits, *restarts} | ({stopped} if stopped else set()),
            timeout=max(0.0, finish_by - time.time()),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not done:
            break
        for future in done:
            if future in exits:
                party = exits.pop(future)
                if _supervisor_restarts(party):
                    restarts[asyncio.ensure_future(_start_again(party))] = party
            elif future in restarts:
                party = restarts.pop(future)
                if future.result():
                    watch(party)
                elif _supervisor_restarts(party):  # this start failed: another try
                    restarts[asyncio.ensure_future(_start_again(party))] = party
    if stopped is not None:
        stopped.cancel()
    for future in restarts:  # the run ended while these were starting again
        future.cancel()
    for future in restarts:
        with contextlib.suppress(asyncio.CancelledError):
            await future
    if stop is not None and stop.is_set():
        return [party.name for party in parties if party.dead]
    failed = []
    for party in parties:
        if party.process.returncode is None:
            party.stopped = True
            with contextlib.suppress(ProcessLookupError):  # it may exit just now
                party.process.kill()
            print(f"{party.name} did not finish in time and was killed", file=sys.stderr)
        code = await party.process.wait()
        _exited(party)
        if code != 0:
            failed.append(party.name)
            print(f"{party.name} exited {_exit_text(code)}; {_tail(party)}", file=sys.stderr)
    return failed


def _supervisor_restarts(party: _Party) -> bool:
    """Whether the party whose process just ended is started again: it failed, the
    coordinator did not end it, it is supervised and within its limit and the run's
    slots. Records the ended life and logs one line if so."""
    supervision, code = party.supervision, party.process.returncode
    if supervision is None or code is None or code == 0 or party.stopped:
        return False
    now = party.exited_at or time.time()
    if supervision.refusal(now) is not None:
        return False
    exit_text = _exit_text(code).removeprefix("with ").removeprefix("by ")
    life = EndedLife(party.process.pid, exit_text, now, restart=len(supervision.lives) + 1)
    supervision.lives.append(life)
    slot = supervision.window.slot(now)
    print(restart_line(party.name, party.role, life, supervision.limit, slot), file=sys.stderr)
    return True


async def _start_again(party: _Party) -> bool:
    """Start the party's process again (restart N logs to DIR/logs/NAME.N.log), wait for
    READY and give it the run's epoch; False (the new process ended, its life recorded)
    if it did not become READY."""
    assert party.launch is not None and party.supervision is not None
    life = party.supervision.lives[-1]
    launch, epoch = party.launch, party.supervision.window.epoch_unix_s
    assert epoch is not None
    log_path = launch.out / "logs" / f"{party.name}.{life.restart}.log"
    party.process = await _start_process(party.name, launch, log_path, life.restart)
    party.log_path, party.exited_at = log_path, None
    try:
        await _ready(party, time.time() + launch.startup_timeout_s)
        await _send_start(party, epoch)
    except (RuntimeError, ValueError, OSError) as error:
        life.restart_error = str(error).splitlines()[0]
        print(f"{party.name}: restart {life.restart} failed: {error}", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):
            party.process.kill()
        await party.process.wait()
        _exited(party)
        return False
    except asyncio.CancelledError:
        life.restart_error = "the run ended while it was starting again"
        party.stopped = True
        with contextlib.suppress(ProcessLookupError):
            party.process.kill()
        await party.process.wait()
        _exited(party)
        raise
    life.restarted_at_unix_s = time.time()
    return True


def _exited(party: _Party) -> None:
    if party.exited_at is None:
        party.exited_at = time.time()


def _exit_text(code: int) -> str:
    """`with status 1`, or `by signal SIGKILL` for a negative return code."""
    if code >= 0:
        return f"with status {code}"
    try:
        return f"by signal {signal.Signals(-code).name}"
    except ValueError:
        return f"by signal {-code}"


async def stop_parties(parties: list[_Party], grace_s: float = 0.0) -> None:
    """End the parties still running (they are this coordinator's children) and reap them:
    SIGTERM, then SIGKILL after `grace_s` (at once if 0)."""
    running = [party for party in parties if party.process.returncode is None]
    for party in running:
        party.stopped = True
        with contextlib.suppress(ProcessLookupError):
            if grace_s > 0:
                party.process.terminate()
            else:
                party.process.kill()
    if grace_s > 0 and running:
        waits = [asyncio.ensure_future(party.process.wait()) for party in running]
        await asyncio.wait(waits, timeout=grace_s)
        for party in running:
            if party.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    party.process.kill()
    for party in parties:
        await party.process.wait()
        _exited(party)


def _tail(party: _Party, lines: int = 8) -> str:
    text = party.log_path.read_text(errors="replace").strip().splitlines()[-lines:]
    return f"last lines of {party.log_path}:\n" + "\n".join(text) if text else "its log is empty"


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _write_run_file(
    out: Path,
    config: LocalRunConfig,
    spec: RunSpec,
    slot_s: float,
    epoch: float,
    parties: list[_Party],
    placement: Placement,
) -> None:
    write_json(
        out / RUN_FILE,
        {
            "placement": placement.label,
            "run": asdict(spec),
            "local": asdict(config),
            "slot_s": slot_s,
            "epoch_unix_s": epoch,
            "parties": [party.name for party in parties],
            "pids": {party.name: party.process.pid for party in parties},
        },
    )


def summarise_run(
    out: Path,
    config: LocalRunConfig,
    spec: RunSpec,
    slot_s: float,
    parties: list[_Party],
    failed: list[str],
    interrupted: str | None = None,
) -> dict[str, object]:
    """The run's summary from its parties' outputs; writes tasks.csv first, settling the
    tasks of the terminals that died (in each of their lives, `_write_tasks`).
    `interrupted` names the signal that stopped the run."""
    party_summaries = {}
    for party in parties:
        path = out / "parties" / f"{party.name}.json"
        if path.exists():
            party_summaries[party.name] = json.loads(path.read_text())
    epoch = _epoch(out)
    dead = {party.name: party for party in parties if party.dead}
    deaths = {p.name: _death_slots(p, epoch, slot_s) for p in parties}
    settled = _write_tasks(out, spec, deaths, party_summaries)
    table = read_task_table(out / TASKS_FILE)
    edge_names = spec.topology().edge_names
    for party in parties:
        if party.role == EDGE_ROLE and deaths[party.name]:
            settled[party.name] = _edge_held_lost(
                table, edge_names.index(party.name), deaths[party.name]
            )
    resolved = table.resolve_slot >= 0
    finished = resolved & (table.dropped == 0)
    fault_lost = np.isin(table.where, FAULT_LOST)
    dropped = resolved & (table.dropped == 1) & ~fault_lost
    tasks = len(table)
    boundaries = sum(s["boundaries"] for s in party_summaries.values())
    overruns = sum(s["overruns"] for s in party_summaries.values())
    terminals = {n: s for n, s in party_summaries.items() if s.get("role") == TERMINAL_ROLE}
    return {
        "topology": Path(config.target.topology_path).stem,
        "policy": config.policy.describe(),
        "duration_s": config.target.duration_s,
        "slot_s": slot_s,
        "arrival_slots": spec.arrival_slots,
        "pace_uplink": config.pace_uplink,
        "interrupted": interrupted is not None,
        **({"interrupted_by": interrupted} if interrupted is not None else {}),
        "tasks": tasks,
        "finished": int(finished.sum()),
        "dropped": int(dropped.sum()),
        "fault_lost": int(fault_lost.sum()),
        "edge_lost": int((table.where == EDGE_LOST).sum()),
        "terminal_lost": int((table.where == TERMINAL_LOST).sum()),
        "unresolved": int((~resolved).sum()),
        "tasks_unaccounted": tasks - int(finished.sum() + dropped.sum() + fault_lost.sum()),
        "avg_delay_s": float(np.mean(table.delay_slots[finished]) * slot_s)
        if finished.any()
        else None,
        "failure_rate": float((table.dropped == 1).sum() / tasks) if tasks else None,
        "boundaries": boundaries,
        "overruns": overruns,
        "overrun_share": overruns / boundaries if boundaries else None,
        "worst_lateness_ms": max(
            (s["lateness_max_ms"] for s in party_summaries.values()), default=None
        ),
        "stale_observations": sum(s.get("stale_observations", 0) for s in party_summaries.values()),
        "late_sends": sum(s.get("late_sends", 0) for s in party_summaries.values()),
        "redirected_tasks": {n: s.get("redirected_tasks", 0) for n, s in terminals.items()},
        "weights_age": weights_age_summary(table.weights_age_slots, table.weights_versions_behind),
        "relayed_weights_age": weights_age_summary(
            table.relayed_age_slots, table.relayed_versions_behind
        ),
        "reconnections": {n: s.get("reconnections", 0) for n, s in terminals.items()},
        "bytes_sent": {name: s["bytes_sent"] for name, s in party_summaries.items()},
        "bytes_received": {name: s["bytes_received"] for name, s in party_summaries.items()},
        "dead_parties": [_death(party, epoch, slot_s, settled) for party in dead.values()],
        "restarts": {
            p.name: supervision.restarts
            for p in parties
            if (supervision := _supervision(p)) is not None
        },
        "restarted_deaths": _restarted_deaths(parties, settled),
        "task_log_truncated_lines": settled["truncated"],
        "failed_parties": failed
        + [
            p.name
            for p in parties
            if p.name not in party_summaries and p.name not in failed and not p.stopped
        ],
    }


def _epoch(out: Path) -> float | None:
    """The run's epoch from its run.json (None: the run never started)."""
    path = out / RUN_FILE
    return json.loads(path.read_text()).get("epoch_unix_s") if path.exists() else None


def _supervision(party: _Party) -> Supervision | None:
    """The party's supervision (a party collected from elsewhere, as the emulator's role
    deployment passes, has none)."""
    return getattr(party, "supervision", None)


def _death_slots(party: _Party, epoch: float | None, slot_s: float) -> list[int]:
    """The slot each of the party's lives died in, oldest first: those started again,
    then its last if it is dead. Empty for a party that never died (or a run that never
    started)."""
    if epoch is None:
        return []
    supervision = _supervision(party)
    ended = [life.died_at_unix_s for life in supervision.lives] if supervision else []
    if party.dead and party.exited_at is not None:
        ended.append(party.exited_at)
    return [max(0, math.floor((at - epoch) / slot_s)) for at in ended]


def _write_tasks(
    out: Path,
    spec: RunSpec,
    deaths: dict[str, list[int]],
    party_summaries: dict[str, dict],
) -> dict[str, object]:
    """Merge the terminals' task logs into tasks.csv, settling the tasks each dead life of
    a terminal held against the edges' records, and adding those that arrived while a
    restarted terminal had no process. Returns per terminal that died the tasks each of
    its deaths lost (held, and arrived while it was down), and the number of task-log
    lines cut short by a kill."""
    parties = out / "parties"
    edge_outcomes = read_edge_outcomes(sorted(parties.glob("*.outcomes.jsonl")))
    rows: list[dict] = []
    settled: dict[str, object] = {"truncated": 0}
    for path in sorted(parties.glob("*.tasks.jsonl")):
        name = path.name.removesuffix(".tasks.jsonl")
        own, truncated = read_task_lines(path)
        settled["truncated"] += int(truncated)
        died = deaths.get(name, [])
        if died:
            held = _settle_lives(own, edge_outcomes, died)
            down = _arrived_while_down(name, own, died, spec, party_summaries.get(name))
            settled[name] = {"held": held, "down": [len(tasks) for tasks in down]}
            own += [row for tasks in down for row in tasks]
        rows.extend(own)
    write_task_csv(rows, out / TASKS_FILE)
    return settled


def _settle_lives(rows: list[dict], edge_outcomes: dict, death_slots: list[int]) -> list[int]:
    """Settle the unresolved tasks of each dead life (those that arrived by its death and
    after the one before; `settle_dead_terminal`); the tasks each lost."""
    lives: dict[int, list[dict]] = {}
    for row in rows:
        if row["resolve_slot"] >= 0:
            continue
        life = next((i for i, d in enumerate(death_slots) if row["arrival_slot"] <= d), None)
        if life is not None:  # else a task of its living last process, honestly unresolved
            lives.setdefault(life, []).append(row)
    return [
        settle_dead_terminal(lives.get(i, []), edge_outcomes, death)
        for i, death in enumerate(death_slots)
    ]


def _arrived_while_down(
    name: str, rows: list[dict], death_slots: list[int], spec: RunSpec, summary: dict | None
) -> list[list[dict]]:
    """Per death, the tasks of terminal `name`'s workload that arrived while no process of
    it ran: after that death, before its next life logged its first task (or began, its
    summary's `first_slot`), as `terminal-lost` rows decided by nobody. Tasks after its
    last death, if it stayed dead, are not added (its workload there never arrived)."""
    params, terminals = spec.model()
    terminal = spec.topology().terminal_names.index(name)
    arrays = params.per_terminal(terminals)
    sizes = terminal_workload(arrays, terminal, spec.arrival_slots, spec.target.seed)
    covered = max((row["arrival_slot"] for row in rows), default=-1) + 1
    if summary is not None and summary.get("restart"):
        covered = max(covered, int(summary.get("first_slot", 0)))
    logged = {row["task_id"] for row in rows}
    tau = int(arrays.deadline_slots[terminal])
    down: list[list[dict]] = [[] for _ in death_slots]
    for task_id, slot in enumerate(int(s) for s in np.flatnonzero(sizes > 0)):
        if slot >= covered:
            break
        if task_id in logged:
            continue
        size = float(sizes[slot])
        task = LiveTask(terminal, task_id, slot, slot + tau - 1, size, 0, TERMINAL_DOWN)
        task.resolve_slot, task.dropped, task.where = slot, True, TERMINAL_LOST
        before = [i for i, d in enumerate(death_slots) if d <= slot]
        down[before[-1] if before else 0].append({**asdict(task), "delay_slots": None})
    return down


def _edge_held_lost(table, edge: int, death_slots: list[int]) -> dict[str, list[int]]:
    """Per death of an edge, the offloaded tasks lost with it (`edge-lost` at their
    terminals): each goes to the first death by the slot after its arrival (a terminal
    may offload in the slot its edge died in, before it notices), the last death takes
    the rest."""
    lost = (table.action == edge + 1) & (table.where == EDGE_LOST)
    held, after = [], -1
    for i, death in enumerate(death_slots):
        window = table.arrival_slot > after
        if i < len(death_slots) - 1:
            window &= table.arrival_slot <= death + 1
        held.append(int((lost & window).sum()))
        after = death + 1
    return {"held": held, "down": [0] * len(death_slots)}


def _restarted_deaths(parties: list[_Party], settled: dict[str, object]) -> list[dict]:
    """Every death of a supervised party after which it was started again (or tried):
    when, how, and what it held."""
    entries = []
    for party in parties:
        supervision = _supervision(party)
        if supervision is None:
            continue
        books = settled.get(party.name) or {"held": [], "down": []}
        assert isinstance(books, dict)
        for i, life in enumerate(supervision.lives):
            entry = life_entry(party.name, party.role, life, supervision.window)
            entry["tasks_held_lost"] = books["held"][i] if i < len(books["held"]) else 0
            if party.role == TERMINAL_ROLE:
                entry["tasks_lost_while_down"] = books["down"][i] if i < len(books["down"]) else 0
            entries.append(entry)
    return entries


def _death(
    party: _Party, epoch: float | None, slot_s: float, settled: dict[str, object]
) -> dict[str, object]:
    """What the summary says of a party that died and stayed dead: when, how, and what
    it held (its last life's share)."""
    code = party.process.returncode
    assert code is not None
    at_slot = None
    if epoch is not None and party.exited_at is not None:
        at_slot = max(0, math.floor((party.exited_at - epoch) / slot_s))
    books = settled.get(party.name)
    return {
        "party": party.name,
        "role": party.role,
        "exit": _exit_text(code).removeprefix("with ").removeprefix("by "),
        "at_unix_s": party.exited_at,
        "at_slot": at_slot,
        "tasks_held_lost": books["held"][-1] if isinstance(books, dict) and books["held"] else 0,
    }
