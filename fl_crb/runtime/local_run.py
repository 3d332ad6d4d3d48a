"""Local mode: every party of a topology as its own process on 127.0.0.1, one run folder.

`run_local(config)` starts each edge server (on a free port), then each terminal, waits
until all are READY (listening, connected), gives them a common epoch a moment ahead,
waits for them to finish, and writes the run folder:

    DIR/run.json             what was run: the whole `LocalRunConfig`, the parties' shared
                             `RunSpec`, the epoch, the parties
    DIR/topology.yaml        a copy of the topology file
    DIR/tasks.csv            every task's outcome (`fl_crb.runtime.tasklog`)
    DIR/summary.json         tasks, average delay, failure rate, overruns, bytes per party
    DIR/logs/PARTY.log       each party's log (its standard error)
    DIR/parties/PARTY.json   each party's own summary; PARTY.tasks.jsonl per terminal
    DIR/config/PARTY.json    the config each party was started with
    DIR/weights/             a trained run's per-edge networks as weights files (policy
                             `TrainedRun`: each terminal acts with its managing edge's)

Without a network emulator the terminals pace their uplink at the topology's rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import secrets
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
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
    FederatedTerminal,
    RunSpec,
    RunTarget,
    TerminalConfig,
    save_config,
)
from fl_crb.runtime.party import READY, write_json
from fl_crb.runtime.placement import Loopback, Placement
from fl_crb.runtime.tasklog import merge_task_lines, read_task_table

RUN_FILE = "run.json"
TASKS_FILE = "tasks.csv"
SUMMARY_FILE = "summary.json"
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Numerical libraries in each party use one thread: many parties share few cores."""
EDGE_SERVER_MODULE = "fl_crb.runtime.edge_server"
"""The module an edge server party runs as (`python -m`)."""
TERMINAL_MODULE = "fl_crb.runtime.terminal"
"""The module a terminal party runs as, unless `launch_parties` is given another."""
EXIT_GRACE_S = 30.0
"""How long after the last slot the parties may take to write their outputs and exit."""


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


@dataclass
class _Party:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path


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
    try:
        epoch = await launch_parties(out, config, spec, policies, placement, parties)
        names = [p.name for p in parties]
        _write_run_file(out, config, spec, params.slot_s, epoch, names, placement.label)
        finish_by = epoch + spec.end_slot * params.slot_s + EXIT_GRACE_S
        failed = await wait_parties(parties, finish_by)
    except BaseException:
        await stop_parties(parties)
        raise
    summary = summarise_run(out, config, spec, params.slot_s, parties, failed)
    summary["machine"] = {
        "cpus": os.cpu_count(),
        "load_avg_1min_before": round(load_before[0], 2),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
        "parties_cpu_s": round(_children_cpu_s() - cpu_before, 2),
    }
    write_json(out / SUMMARY_FILE, summary)
    return summary


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
) -> float:
    """Start every edge server, then every terminal (appended to `parties` as they start,
    so the caller can stop them on failure), wait until all are READY and send START.

    `policies[d]` is what terminal d decides with (`terminal_policies`);
    `federation(d, host)` gives terminal d its federated settings (None: not federated);
    `before_start()` is awaited once all are READY, before the epoch is chosen (the
    federated run starts its authority there); `terminal_module` is the module each
    terminal runs as (`python -m`; the federated run gives its own, whose terminals decide
    with their federated settings). Returns the run's epoch."""
    params, terminals = spec.model()
    topology = spec.topology()
    edge_names, terminal_names = topology.edge_names, topology.terminal_names
    for e, name in enumerate(edge_names):
        listen = Address(placement.listen_address(name), 0)
        edge = EdgeConfig(spec, e, listen, str(out / "parties" / f"{name}.json"))
        parties.append(await _spawn(out, name, EDGE_SERVER_MODULE, edge, placement))
    ready_by = time.time() + config.startup_timeout_s
    edge_ports = [int((await _ready(party, ready_by))["port"]) for party in parties]
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
        parties.append(await _spawn(out, name, terminal_module, terminal, placement))
    for party in parties[params.edges :]:
        await _ready(party, ready_by)
    if before_start is not None:
        await before_start()
    epoch = time.time() + config.start_lead_s
    for party in parties:
        assert party.process.stdin is not None
        party.process.stdin.write(f"START {epoch!r}\n".encode())
        await party.process.stdin.drain()
        party.process.stdin.close()
    return epoch


def run_spec(config: LocalRunConfig) -> tuple[RunSpec, MECParams, int]:
    """The shared facts of the run; checks the topology and duration before any process."""
    target = config.target
    topology = target.topology()
    params, terminals = topology.mec_params(), topology.terminal_count
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


async def _spawn(out: Path, name: str, module: str, config: object, placement: Placement) -> _Party:
    """Start party `name` (a topology host name) on its host as `python -m module`, stdin
    and stdout piped."""
    config_path = out / "config" / f"{name}.json"
    save_config(config, config_path)
    log_path = out / "logs" / f"{name}.log"
    argv = [sys.executable, "-m", module, str(config_path)]
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            *placement.command(name, argv),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log_file,
            env={**os.environ, **SINGLE_THREADED},
        )
    return _Party(name, process, log_path)


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


async def wait_parties(parties: list[_Party], finish_by: float) -> list[str]:
    """Wait for every party to exit, all at once, until `finish_by` (a Unix time); kill
    those still running then. Returns the names of those that failed."""
    waits = {asyncio.ensure_future(party.process.wait()): party for party in parties}
    if waits:
        await asyncio.wait(waits, timeout=max(0.0, finish_by - time.time()))
    failed = []
    for task, party in waits.items():
        if not task.done() and party.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it may exit just now
                party.process.kill()
            print(f"{party.name} did not finish in time and was killed", file=sys.stderr)
        code = await task
        if code != 0:
            failed.append(party.name)
            print(f"{party.name} exited with status {code}; {_tail(party)}", file=sys.stderr)
    return failed


async def stop_parties(parties: list[_Party]) -> None:
    """Kill the parties still running (they are this coordinator's children) and reap them."""
    for party in parties:
        if party.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                party.process.kill()
    for party in parties:
        await party.process.wait()


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
    names: list[str],
    placement: str,
) -> None:
    write_json(
        out / RUN_FILE,
        {
            "placement": placement,
            "run": asdict(spec),
            "local": asdict(config),
            "slot_s": slot_s,
            "epoch_unix_s": epoch,
            "parties": names,
        },
    )


def summarise_run(
    out: Path,
    config: LocalRunConfig,
    spec: RunSpec,
    slot_s: float,
    parties: list[_Party],
    failed: list[str],
) -> dict[str, object]:
    party_summaries = {}
    for party in parties:
        path = out / "parties" / f"{party.name}.json"
        if path.exists():
            party_summaries[party.name] = json.loads(path.read_text())
    logs = sorted((out / "parties").glob("*.tasks.jsonl"))
    merge_task_lines(logs, out / TASKS_FILE)
    table = read_task_table(out / TASKS_FILE)
    resolved = table.resolve_slot >= 0
    finished = resolved & (table.dropped == 0)
    tasks = len(table)
    boundaries = sum(s["boundaries"] for s in party_summaries.values())
    overruns = sum(s["overruns"] for s in party_summaries.values())
    return {
        "topology": Path(config.target.topology_path).stem,
        "policy": config.policy.describe(),
        "duration_s": config.target.duration_s,
        "slot_s": slot_s,
        "arrival_slots": spec.arrival_slots,
        "pace_uplink": config.pace_uplink,
        "tasks": tasks,
        "finished": int(finished.sum()),
        "dropped": int((resolved & (table.dropped == 1)).sum()),
        "unresolved": int((~resolved).sum()),
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
        "bytes_sent": {name: s["bytes_sent"] for name, s in party_summaries.items()},
        "bytes_received": {name: s["bytes_received"] for name, s in party_summaries.items()},
        "failed_parties": failed
        + [p.name for p in parties if p.name not in party_summaries and p.name not in failed],
    }
