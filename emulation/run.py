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
   `DATA_PLANES[type(config.run)](config.run, placement)`: a `LocalRunConfig` runs with
   `run_local`, a `FederatedRunConfig` with `run_federated` (`emulation.data_plane`:
   the federated run, with the same placement), or, with `deploy_roles`, with
   `emulation.role_deployment.run_roles` (the role commands, each confined to its host);
4. while it runs, prints progress, samples the parties' memory and checks the delay
   daemon (`emulation.monitor`); with `cli` it opens Mininet's CLI instead, everything
   running;
5. reads the kernel's interface counters of every host before and after, the delay
   daemon's counters, and writes the run folder and report (`emulation.collect`,
   `emulation.report`);
6. tears everything down on success, error, Ctrl-C or SIGTERM (`EmulatedNetwork`'s exit).

Ctrl-C or SIGTERM while the parties run stops them as `fl-crb run-local` and `fl-crb
federate` stop on a signal, and the partial run is collected and reported like a whole
one, marked interrupted; before the parties' epoch it leaves none (`EmulationInterrupted`).
`emulation.interruption` says how.

With a fault schedule (`faults`, `emulation.faults`), a `FaultInjector` thread applies
its events beside the data plane from the parties' epoch on, undoes them on time and,
before the network is torn down, undoes what is still in force; summary.json then gains
`faults` (each event: kind, target, when applied and undone, effect or error, and the
federation's rounds that ran while it was in force) and `accounting`
(`emulation.faults.accounting`: tasks unaccounted, acknowledged uploads lost, restarts).

`EmulationConfig` composes: `run` is the data plane's whole config (a `LocalRunConfig`,
or a `FederatedRunConfig` embedding one), beside the network's and the link check's.

The run folder is the data plane's (run.json, tasks.csv, summary.json, parties/, logs/,
config/; see `fl_crb.runtime.local_run`, so `fl-crb compare-sim DIR` works on it; at the
end run.json gains the whole `EmulationConfig` under "emulation") plus
links.md/json, network.log, interfaces.csv, terminals.csv, timeline.csv,
compare-sim.json, emulation.json, report.md and plots/ (and faults.json with a fault
schedule).
"""

from __future__ import annotations

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
from emulation.faults.accounting import accounting
from emulation.faults.inject import FaultInjector, FaultRecord
from emulation.faults.schedule import FaultSchedule
from emulation.interruption import (
    EmulationInterrupted,
    data_plane_summary,
    record_interruption,
    stopping_on_signals,
)
from emulation.monitor import DataPlaneThread, Progress, watch
from emulation.network import EmulatedNetwork, NetworkConfig
from emulation.placement import MininetPlacement
from emulation.report import EmulationReport, write_report
from emulation.role_deployment import run_roles
from emulation.teardown import namespace_inode, sigterm_as_interrupt
from emulation.verify import LinkVerificationError, VerifyConfig, verify_links
from fl_crb.federation.deploy.federated_run import run_federated
from fl_crb.federation.deploy.run_config import FederatedRunConfig
from fl_crb.policies.spec import Federated, TrainedRun, WeightsFile
from fl_crb.runtime.local_run import (
    RUN_FILE,
    SUMMARY_FILE,
    LocalRunConfig,
    run_local,
)
from fl_crb.runtime.party import write_json
from fl_crb.runtime.placement import Placement

FAULTS_FILE = "faults.json"
"""The fault schedule's events as applied, written as soon as the data plane ends (also
when it fails); summary.json repeats them."""
DataPlane = Callable[[Any, Placement], Coroutine[Any, Any, dict[str, object]]]
"""A coordinator that starts every party through a placement and returns its summary."""
DATA_PLANES: dict[type, DataPlane] = {LocalRunConfig: run_local, FederatedRunConfig: run_federated}
"""Coordinators by the type of the data plane's config: a `LocalRunConfig` is the runtime's
data plane (edge servers and terminals, with fixed weights for CRB-DRQN); a
`FederatedRunConfig` adds the federation around the same parties (`emulation.data_plane`)."""


@dataclass(frozen=True)
class EmulationConfig:
    """One emulation run."""

    run: LocalRunConfig | FederatedRunConfig
    """The data plane: its parties as a local run has them, or a federated run around
    those parties (`emulation.data_plane` builds both). The parties must not pace their
    uplinks: the emulated links shape them."""
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
    faults: FaultSchedule | None = None
    """Timed faults to apply during the run (`fl-crb emulate --faults`), checked against
    this run by `emulation.faults.schedule.load_fault_schedule`."""
    deploy_roles: bool = False
    """Deploy the federation as a real deployment runs it (`fl-crb emulate --deploy
    roles`): `fl-crb authority`, `edge` and `terminal` on their hosts, each confined to
    its host's user and private state directory with its own bundle
    (`emulation.role_deployment`), instead of one coordinator over a shared run folder."""

    def __post_init__(self) -> None:
        if self.deploy_roles and not isinstance(self.run, FederatedRunConfig):
            raise ValueError("--deploy roles deploys the federation: it needs a federated run")
        if self.deploy_roles and self.faults is not None:
            raise ValueError(
                "--faults with --deploy roles: the fault injector does not find the role "
                "commands' processes yet; run the schedule with --deploy coordinator (the default "
                "with --faults)"
            )
        parties = self.parties
        if parties.pace_uplink:
            raise ValueError(
                "an emulation's parties must not pace their uplinks (pace_uplink False): the "
                "emulated links shape them; build them with emulation.data_plane's "
                "emulation_parties"
            )
        if isinstance(self.run, LocalRunConfig) and isinstance(parties.policy, Federated):
            raise ValueError(
                f"policy {parties.policy.describe()} needs the federation: give a "
                "FederatedRunConfig as the data plane (emulation.data_plane)"
            )

    @property
    def parties(self) -> LocalRunConfig:
        """The data plane's edge servers and terminals."""
        return self.run if isinstance(self.run, LocalRunConfig) else self.run.parties


def run_emulation(config: EmulationConfig) -> EmulationReport:
    """Run one emulation (see the module docstring); returns what the report shows."""
    parties = config.parties
    out = Path(parties.out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"run folder {out} is not empty; give a new folder for each run")
    topology = parties.target.topology()
    _check_start(config)
    uplink = config.run.uplink if isinstance(config.run, FederatedRunConfig) else "direct"
    check_memory(parties.policy, topology, uplink, config.deploy_roles)
    log_lines = _capture_log()
    timings: dict[str, float] = {}
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    try:
        with (
            sigterm_as_interrupt(),
            EmulatedNetwork(
                topology, config.network, hosts_dir=out / "hosts" if config.deploy_roles else None
            ) as net,
        ):
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
                  f"{len(net.hosts()) - 1} parties ({parties.policy.describe()})",
                  flush=True)  # fmt: skip
            measured = _run_parties(net, config, timings)
            teardown_started = time.monotonic()
        timings["teardown_s"] = time.monotonic() - teardown_started
    finally:
        logging.getLogger("emulation").removeHandler(log_lines)
    links.write(out)
    _record_emulation(out, config)
    (out / "network.log").write_text("\n".join(log_lines.lines) + "\n")
    mark = time.monotonic()
    collected = collect(
        out, measured["delta"], topology.terminal_names, topology.slot_s,
        config.timeline_window_slots,
    )  # fmt: skip
    timings["collect_s"] = time.monotonic() - mark
    summary = measured["summary"]
    if measured["interruption"] is not None:
        summary = record_interruption(
            out, summary, measured["interruption"], topology, measured["faults"]
        )
    if config.faults is not None:
        summary = _record_faults(out, summary, measured["faults"], collected.rounds)
    report = EmulationReport(
        config=_config_dict(config),
        topology=topology.name,
        terminals=topology.terminal_count,
        summary=summary,
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


def _check_start(config: EmulationConfig) -> None:
    """Refuse a missing weights file, a trained run live terminals cannot use, or starting
    weights of other widths than the federation's learners, before building the network."""
    from fl_crb.training.start_weights import resolve_widths, trained_crb_drqn

    policy = config.parties.policy
    start = policy.start if isinstance(policy, Federated) else policy
    if isinstance(start, WeightsFile) and not Path(start.path).is_file():
        raise ValueError(f"policy {policy.describe()}: weights file {start.path} does not exist")
    if isinstance(config.run, FederatedRunConfig) and start is not None:
        learner = config.run.method.learner
        resolve_widths(start, learner.hidden, learner.lstm_hidden)
    elif isinstance(start, TrainedRun):
        trained_crb_drqn(start)


def _record_emulation(out: Path, config: EmulationConfig) -> None:
    """Add the whole emulation config to the data plane's run.json (under "emulation")."""
    path = out / RUN_FILE
    if path.is_file():
        write_json(path, {**json.loads(path.read_text()), "emulation": _config_dict(config)})


def _run_parties(net: EmulatedNetwork, config: EmulationConfig, timings: dict) -> dict[str, Any]:
    """Run the data plane on the hosts; the counters, memory and summary it left, and the
    signal that stopped it early, if one did (see the module docstring)."""
    out = Path(config.parties.out_dir)
    memory = PartyMemory(net)
    before = host_counters(net)
    daemon_before = net.delay_daemon_load()
    coordinator = run_roles if config.deploy_roles else DATA_PLANES[type(config.run)]
    runner = DataPlaneThread(coordinator(config.run, MininetPlacement(net)))
    progress = Progress(net, out, memory, before, net.topology.slot_s)
    injector = FaultInjector(config.faults, net, out) if config.faults else None
    mark, wall_start = time.monotonic(), time.time()
    runner.start()
    if injector is not None:
        injector.start()
    try:
        if config.cli:
            _interactive(net, runner, progress)
        with stopping_on_signals(runner, injector) as received:
            watch(runner, progress, config.progress_every_s)
    finally:
        faults = injector.finish() if injector is not None else []
        if injector is not None:  # kept even if the data plane fails below
            write_json(out / FAULTS_FILE, {"faults": [f.to_dict() for f in faults]})
    summary = data_plane_summary(runner, received)
    interruption = received[0] if received else None
    if interruption is not None and not (out / RUN_FILE).is_file():  # before the epoch
        raise EmulationInterrupted(interruption)
    timings["run_s"] = time.monotonic() - mark
    timings["parties_start_s"] = _start_time(out, wall_start)
    delta = counter_delta(host_counters(net), before)
    return {
        "summary": summary,
        "interruption": interruption,
        "faults": faults,
        "delta": delta,
        "roles": {h.name: h.role for h in net.hosts()},
        "network": {
            "run_slot": net.plan.slot if net.plan else None,
            "latency_mechanism": net.shaping.mechanism if net.shaping else None,
            "host_namespaces": {h.name: namespace_inode(net.host(h.name).pid) for h in net.hosts()},
        },
        "memory": memory.figures(),
        "delay_daemon": _daemon_during(daemon_before, net.delay_daemon_load()),
    }


def _record_faults(
    out: Path, summary: dict[str, object], records: list[FaultRecord], rounds: list[dict]
) -> dict[str, object]:
    """Add the faults and the accounting to the data plane's summary and its summary.json:
    each timed fault with the federation's rounds that ran (started, or were exchanging)
    while it was in force, and whether the authority served throughout (not killed,
    restarting or stopped by the schedule meanwhile)."""
    down = [  # when the authority was killed or stopped, until it served again
        (r.applied_s, r.restarted_s or r.undone_s or float("inf"))
        for r in records
        if r.target.startswith("authority") and r.applied_s is not None and not r.error
    ]
    faults = []
    for record in records:
        entry = record.to_dict()
        if rounds and record.applied_s is not None and record.for_s is not None:
            start = record.applied_s
            until = record.undone_s if record.undone_s is not None else start
            entry["rounds_during"] = sum(
                1
                for r in rounds
                if r["start_s"] <= until and r["start_s"] + r["exchange_s"] >= start
            )
            entry["authority_up"] = not any(a <= until and b >= start for a, b in down)
        faults.append(entry)
    summary = {**summary, "faults": faults, "accounting": accounting(out, summary, records)}
    write_json(out / SUMMARY_FILE, summary)
    return summary


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
