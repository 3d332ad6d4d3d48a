"""One emulation run: network, link check, parties on the hosts, collection, report, teardown.

`run_emulation(config)`:

1. builds `EmulatedNetwork(topology)` (Mininet hosts on Linux bridges, shaped links);
2. measures every link class (`verify_links`) and refuses to go on, with the table
   written into the run folder, if a latency misses its setting by more than 10% or a
   bandwidth by more than 15% (`VerifyConfig`);
3. runs the data plane through `MininetPlacement(net)`: every edge server and terminal
   is a process in its own host, the terminals do not pace their uplinks (the emulated
   link shapes them: a task's bytes are written when it reaches the head of the uplink
   and the 14 Mbit/s link decides when they arrive). The coordinator is one call,
   `DATA_PLANES[config.data_plane](local_config, placement)`: `local` (`run_local`) or
   `federated` (`emulation.federated`: the federated run, with the same placement);
4. while it runs, prints progress, samples the parties' memory and checks the delay
   daemon (`emulation.monitor`); with `cli` it opens Mininet's CLI instead, everything
   running;
5. reads the kernel's interface counters of every host before and after, the delay
   daemon's counters, and writes the run folder and report (`emulation.collect`,
   `emulation.report`);
6. tears everything down on success, error, Ctrl-C or SIGTERM (`EmulatedNetwork`'s exit).

The run folder is the data plane's (run.json, tasks.csv, summary.json, parties/, logs/,
config/; see `fl_crb.runtime.local_run`, so `fl-crb compare-sim DIR` works on it) plus
links.md/json, network.log, interfaces.csv, terminals.csv, timeline.csv,
compare-sim.json, emulation.json, report.md and plots/.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emulation.collect import collect
from emulation.counters import (
    PartyMemory,
    check_memory,
    counter_delta,
    counters_rows,
    host_counters,
)
from emulation.federated import EMULATION_POLL_S, run_federated_plane
from emulation.monitor import DataPlaneThread, Progress, watch
from emulation.network import EmulatedNetwork, NetworkConfig
from emulation.placement import MininetPlacement
from emulation.report import EmulationReport, write_report
from emulation.teardown import namespace_inode, sigterm_as_interrupt
from emulation.verify import LinkVerificationError, VerifyConfig, verify_links
from fl_crb.policies.baselines import BASELINES
from fl_crb.runtime.config import run_topology
from fl_crb.runtime.decider import AGENT_PREFIX
from fl_crb.runtime.local_run import RUN_FILE, LocalRunConfig, run_local
from fl_crb.runtime.placement import Placement

DataPlane = Callable[[LocalRunConfig, Placement], Coroutine[Any, Any, dict[str, object]]]
"""A coordinator that starts every party through a placement and returns its summary."""
DATA_PLANES: dict[str, DataPlane] = {"local": run_local, "federated": run_federated_plane}
"""Coordinators by name: `local` is the runtime's data plane (edge servers and terminals,
with fixed weights for CRB-DRQN); `federated` adds the federation (`emulation.federated`)."""


@dataclass(frozen=True)
class EmulationConfig:
    """One emulation run."""

    topology_path: str
    """Topology YAML file."""
    policy: str
    """A baseline name or `crb-drqn:WEIGHTS.npz` (the command resolves the default)."""
    duration_s: float
    """Seconds of task arrivals; the run then drains for τ + 2 slots."""
    out_dir: str
    """Run folder: created, must not exist or be empty."""
    terminals_override: int | None = None
    """Terminal count replacing the file's, or None."""
    arrival_rate_override_bps: float | None = None
    """Offered load per terminal replacing the file's (bit/s), or None."""
    seed: int = 0
    """Workload seed."""
    realtime_priority: int | None = 5
    """SCHED_FIFO priority of the parties once READY, below the delay daemon's 10, so a
    busy host does not delay their slot boundaries; None: normal scheduling."""
    data_plane: str = "local"
    """Which coordinator of `DATA_PLANES` runs the parties."""
    federation_min_pool: int = 32
    """Federated data plane: trajectories the authority's pool must hold before the edge
    learners get batches (`FederatedRunConfig.min_pool_trajectories`)."""
    federation_round_period_s: float = 2.0
    """Federated data plane: seconds between the starts of the authority's rounds
    (`FederatedRunConfig.round_period_s`)."""
    federation_poll_s: float = EMULATION_POLL_S
    """Federated data plane: the SuperNodes' idle pull period
    (`FederatedRunConfig.supernode_idle_poll_s`; see `EMULATION_POLL_S` for the default)."""
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    """Link check before the run (tolerances 10% latency, 15% bandwidth)."""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    """How the network is built and shaped."""
    timeline_window_slots: int = 50
    """Window of the report's delay / failure / weight-version timeline, in slots."""
    progress_every_s: float = 5.0
    """Seconds between progress lines."""
    cli: bool = False
    """Open Mininet's CLI once the parties run; the run is collected after it is left."""
    notes: tuple[str, ...] = ()
    """Lines the report repeats about how the run was set up (e.g. the pre-training)."""


def run_emulation(config: EmulationConfig) -> EmulationReport:
    """Run one emulation (see the module docstring); returns what the report shows."""
    out = Path(config.out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"run folder {out} is not empty; give a new folder for each run")
    if config.data_plane not in DATA_PLANES:
        raise ValueError(f"data plane {config.data_plane!r}; expected one of {list(DATA_PLANES)}")
    for name in ("federation_round_period_s", "federation_poll_s"):
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be > 0 s, got {getattr(config, name)!r}")
    topology = run_topology(
        config.topology_path, config.terminals_override, config.arrival_rate_override_bps
    )
    _check_policy(config.policy)
    check_memory(config.policy, topology.terminal_count)
    local = LocalRunConfig(
        topology_path=config.topology_path,
        terminals_override=config.terminals_override,
        arrival_rate_override_bps=config.arrival_rate_override_bps,
        policy=config.policy,
        duration_s=config.duration_s,
        out_dir=str(out),
        seed=config.seed,
        pace_uplink=False,
        realtime_priority=config.realtime_priority,
    )
    log_lines = _capture_log()
    timings: dict[str, float] = {}
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    try:
        with sigterm_as_interrupt(), EmulatedNetwork(topology, config.network) as net:
            timings["network_build_s"] = time.monotonic() - started
            print(f"network of {topology.name} up in {timings['network_build_s']:.1f} s "
                  f"({len(net.hosts())} hosts); measuring links", flush=True)  # fmt: skip
            mark = time.monotonic()
            links = verify_links(net, config.verify)
            timings["link_verify_s"] = time.monotonic() - mark
            if not links.passed:
                links.write(out)
                raise LinkVerificationError(links)
            print(f"links verified in {timings['link_verify_s']:.1f} s; starting "
                  f"{len(net.hosts()) - 1} parties ({config.policy})", flush=True)  # fmt: skip
            measured = _run_parties(net, config, local, timings)
            teardown_started = time.monotonic()
        timings["teardown_s"] = time.monotonic() - teardown_started
    finally:
        logging.getLogger("emulation").removeHandler(log_lines)
    links.write(out)
    (out / "network.log").write_text("\n".join(log_lines.lines) + "\n")
    mark = time.monotonic()
    collected = collect(
        out, measured["delta"], topology.terminal_names, topology.slot_s,
        config.timeline_window_slots,
    )  # fmt: skip
    timings["collect_s"] = time.monotonic() - mark
    report = EmulationReport(
        config=_config_dict(config),
        topology=topology.name,
        terminals=topology.terminal_count,
        summary=measured["summary"],
        links=links,
        interfaces=counters_rows(measured["delta"], measured["roles"]),
        collected=collected,
        network=measured["network"],
        memory=measured["memory"],
        delay_daemon=measured["delay_daemon"],
        timings={k: round(v, 2) for k, v in timings.items()},
        machine={
            "cpus": os.cpu_count(),
            "load_avg_1min_before": round(load_before, 2),
            "load_avg_1min_after": round(os.getloadavg()[0], 2),
        },
        notes=list(config.notes),
    )
    write_report(out, report)
    return report


def _check_policy(policy: str) -> None:
    """Refuse an unknown policy or a missing weights file before building the network."""
    if policy.startswith(AGENT_PREFIX):
        path = Path(policy[len(AGENT_PREFIX) :])
        if not path.is_file():
            raise ValueError(f"policy {policy!r}: weights file {path} does not exist")
    elif policy not in BASELINES:
        raise ValueError(
            f"unknown policy {policy!r}; choose crb-drqn, {AGENT_PREFIX}WEIGHTS.npz or a "
            f"baseline ({', '.join(BASELINES)})"
        )


def _run_parties(
    net: EmulatedNetwork, config: EmulationConfig, local: LocalRunConfig, timings: dict
) -> dict[str, Any]:
    """Run the data plane on the hosts; the counters, memory and summary it left."""
    out = Path(local.out_dir)
    memory = PartyMemory(net)
    before = host_counters(net)
    daemon_before = net.delay_daemon_load()
    coordinator = DATA_PLANES[config.data_plane]
    if config.data_plane == "federated":
        coordinator = functools.partial(
            coordinator,
            min_pool_trajectories=config.federation_min_pool,
            round_period_s=config.federation_round_period_s,
            poll_s=config.federation_poll_s,
        )
    runner = DataPlaneThread(coordinator(local, MininetPlacement(net)))
    progress = Progress(net, out, memory, before, net.topology.slot_s)
    mark, wall_start = time.monotonic(), time.time()
    runner.start()
    if config.cli:
        _interactive(net, runner, progress)
    watch(runner, progress, config.progress_every_s)
    summary = runner.outcome()
    timings["run_s"] = time.monotonic() - mark
    timings["parties_start_s"] = _start_time(out, wall_start)
    delta = counter_delta(host_counters(net), before)
    return {
        "summary": summary,
        "delta": delta,
        "roles": {h.name: h.role for h in net.hosts()},
        "network": {
            "run_slot": net.plan.slot if net.plan else None,
            "latency_mechanism": net.shaping.mechanism if net.shaping else None,
            "host_namespaces": {h.name: namespace_inode(net.host(h.name).pid) for h in net.hosts()},
        },
        "memory": {
            "peak_rss_mb": round(memory.peak_rss_bytes / 2**20, 1),
            "peak_processes": memory.peak_processes,
        },
        "delay_daemon": _daemon_during(daemon_before, net.delay_daemon_load()),
    }


def _interactive(net: EmulatedNetwork, runner: DataPlaneThread, progress: Progress) -> None:
    """Mininet's CLI once the parties have their epoch; the run goes on meanwhile."""
    from mininet.cli import CLI

    while runner.is_alive() and not progress.started():
        runner.join(0.5)
        progress.sample()
    if not runner.is_alive():
        return
    print("the parties are running; Mininet's CLI is open (hosts: cloud, edgeN, tN). "
          "Leave it with `exit` to collect the run.", flush=True)  # fmt: skip
    try:
        CLI(net.mininet)
    except BaseException:
        runner.cancel()
        runner.join()
        raise
    if runner.is_alive():
        print("waiting for the run to end (Ctrl-C stops it now)", flush=True)


def _start_time(out: Path, started_unix_s: float) -> float:
    """Seconds from starting the data plane to the parties' epoch, less the coordinator's
    fixed lead: the time the parties took to start and connect (and, in a federated run,
    the Flower processes, edge learners and authority before them). The lead is in the
    run record's parties' settings: `local` of a local run, `federated.parties` of a
    federated one."""
    run = json.loads((out / RUN_FILE).read_text())
    parties = run["local"] if "local" in run else run["federated"]["parties"]
    return float(run["epoch_unix_s"]) - float(parties["start_lead_s"]) - started_unix_s


def _daemon_during(before: dict | None, after: dict | None) -> dict | None:
    """The delay daemon's load over the run: packets delayed during it, its lateness and
    the kernel's drops (the percentiles cover the daemon's whole life)."""
    if before is None or after is None:
        return None
    kernel = {k: after["kernel"][k] - before["kernel"].get(k, 0) for k in after["kernel"]}
    kernel["held"] = after["kernel"]["held"]
    return {
        "packets": after["packets"] - before["packets"],
        "held_max": after["held_max"],
        "late_us": after["late_us"],
        "receive_lag_us": after["receive_lag_us"],
        "enobufs": after["enobufs"] - before["enobufs"],
        "kernel": kernel,
    }


def _config_dict(config: EmulationConfig) -> dict[str, object]:
    data = asdict(config)
    data["network"] = {k: str(v) for k, v in data["network"].items()}
    return data


class _LineCapture(logging.Handler):
    """Keeps the emulator's log lines (which mechanism shapes each link) for network.log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname.lower()}: {record.getMessage()}")


def _capture_log() -> _LineCapture:
    handler = _LineCapture()
    logger = logging.getLogger("emulation")
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler
