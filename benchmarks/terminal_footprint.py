"""Terminal footprint: memory (a party's RSS, a federated terminal's PSS), start-up and latency.

A Raspberry Pi terminal decides every task within a 100 ms slot and shares 1-8 GB with
everything else. The issue's targets on this machine: a terminal party at or below
150 MB resident, and p99 decision latency at or below 2 ms on one core. Measured in one
run, each against a reference measured alongside it:

- `live`: a real `run-local` run (one terminal, its edge servers) per policy, round-robin
  and CRB-DRQN with the numpy forward pass; the terminal's peak resident memory (VmHWM,
  polled from /proc) and its summary. Reference: the same terminal start-up with torch
  imported and one torch forward pass (what a learned terminal carried before).
- `startup`: wall time from exec to a built terminal party (interpreter, imports,
  workload, decider with its weights loaded; connecting to the edges excluded), median of
  `--startups`; measured with the live run's own config file.
- `latency`, pinned to one core: `TerminalAgent.act` per decision (encoding, numpy
  forward, greedy choice, trajectory bookkeeping) and the bare numpy forward pass, on
  real simulator observations; reference: torch's forward pass of the same weights on the
  same states (one thread).
- `federated`: everything a federated terminal runs, in a real short `fl-crb federate
  --local` run (tiny.yaml, 30 s): its party, its Flower SuperNode, the ClientApp executor
  beside it and the ClientApps it forks (one per message), found by command line and
  FLWR_HOME (`TerminalProcesses`) and polled every 0.2 s (`fl_crb.runtime.memory`). Memory
  is PSS: each process's peak, the peak of the tree's total and each process's share of
  it; summed RSS beside it counts every shared page once per process (the forked
  ClientApps share most of their executor's pages), hence the ratio. The issue's aim is
  200 MB PSS per federated terminal. PSS divides the interpreter's and libraries' pages
  among every Python process on this machine (dozens in a federated run); as root, the
  tree's distinct resident pages are counted too: what it takes on a machine of its own,
  as on a Pi running one terminal.

    .venv/bin/python benchmarks/terminal_footprint.py [--duration 20] [--decisions 3000]
    python benchmarks/terminal_footprint.py --latency-only --json   (no torch needed:
        what benchmarks/aarch64_terminal.py runs inside the emulated terminal)
    .venv/bin/python benchmarks/terminal_footprint.py --federated-only [--json]   (~1 min)
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # one core: set before numpy loads its BLAS

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from fl_crb.learn.features import FeatureScale, encode_one  # noqa: E402
from fl_crb.learn.numpy_qnetwork import NumpyQNetwork, weight_shapes  # noqa: E402
from fl_crb.learn.terminal_agent import TerminalAgent  # noqa: E402
from fl_crb.mec.simulator import MECSimulator  # noqa: E402
from fl_crb.topology import load_topology  # noqa: E402

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "four-edge-hetero.yaml"
RSS_TARGET_MB = 150.0
P99_TARGET_MS = 2.0
STARTUP_CODE = (
    "import sys\n"
    "from fl_crb.runtime.config import TerminalConfig, load_config\n"
    "from fl_crb.runtime.terminal import TerminalParty\n"
    "TerminalParty(load_config(sys.argv[1], TerminalConfig))\n"
    "from pathlib import Path\n"
    "print([l for l in Path('/proc/self/status').read_text().splitlines() if 'VmHWM' in l][0])\n"
)
TORCH_REFERENCE_CODE = (
    "import torch\n"
    "from fl_crb.learn.qnetwork import QNetwork\n"
    "torch.set_num_threads(1)\n"
    + STARTUP_CODE
    + "edges, history_slots = int(sys.argv[2]), int(sys.argv[3])\n"
    "QNetwork(edges, history_slots)("
    "torch.zeros(1, 3 + edges), torch.zeros(1, history_slots, edges))\n"
)
"""The reference process: a terminal party built as STARTUP_CODE does, plus torch and one
torch forward pass (what a learned terminal carried before the numpy forward pass)."""


def random_weights(edges: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights of the default network sizes with a PyTorch-like initial spread."""
    rng = np.random.default_rng(seed)
    return {
        name: rng.uniform(-0.15, 0.15, shape).astype(np.float32)
        for name, shape in weight_shapes(edges).items()
    }


def observations(topology_path: Path, count: int, seed: int = 0):
    """`count` real terminal observations (with their system's params) from the simulator,
    offloading at random."""
    topology = load_topology(topology_path)
    params, terminals = topology.mec_params(), topology.terminal_count
    simulator = MECSimulator(params, terminals)
    rng = np.random.default_rng(seed)
    found = []
    episode = 0
    while len(found) < count:
        obs = simulator.reset(seed=seed + episode, arrival_slots=200)
        while not simulator.done and len(found) < count:
            found += [obs.of(int(d)) for d in np.flatnonzero(obs.has_task)]
            simulator.step(rng.integers(0, 1 + params.edges, terminals))
            obs = simulator.observations
        episode += 1
    return params, FeatureScale.from_params(params, terminals), found


def percentiles_ms(samples_ns: list[int]) -> dict[str, float]:
    values = np.asarray(samples_ns) / 1e6
    return {
        "median_ms": round(float(np.median(values)), 4),
        "p99_ms": round(float(np.percentile(values, 99)), 4),
        "max_ms": round(float(values.max()), 4),
    }


def measure_latency(topology_path: Path, decisions: int, with_torch: bool) -> dict:
    """Per-decision and per-forward latency on the calling thread (pin it first)."""
    params, scale, found = observations(topology_path, decisions)
    weights = random_weights(params.edges)
    agent = TerminalAgent(scale, params.history_slots, seed=0)
    agent.load_weights(weights, version=1)
    agent.epsilon = 0.0
    encoded = [encode_one(o, scale) for o in found]
    network = NumpyQNetwork(params.edges, params.history_slots)
    network.load_weights(weights)
    act_ns, act_cpu_ns, forward_ns = [], [], []
    for task_id, observation in enumerate(found):
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        agent.act(observation, task_id)
        act_cpu_ns.append(time.thread_time_ns() - start_cpu)
        act_ns.append(time.perf_counter_ns() - start)
        agent.reward(task_id, -3.0)  # what a live terminal hears later; not timed
    for scalars, load in encoded:
        start = time.perf_counter_ns()
        network.q_values(scalars, load)
        forward_ns.append(time.perf_counter_ns() - start)
    warm = len(found) // 10  # first calls pay for caches and lazy preparation
    result = {
        "decisions": len(found) - warm,
        "decision": percentiles_ms(act_ns[warm:]),
        "decision_cpu": percentiles_ms(act_cpu_ns[warm:]),
        "numpy_forward": percentiles_ms(forward_ns[warm:]),
    }
    if with_torch:
        result["torch_forward"] = percentiles_ms(torch_forward_ns(params, weights, encoded)[warm:])
    return result


def torch_forward_ns(params, weights, encoded) -> list[int]:
    """The reference: torch's forward pass on one thread, same weights and states."""
    import torch

    from fl_crb.learn.qnetwork import QNetwork, load_numpy_weights

    torch.set_num_threads(1)
    net = QNetwork(params.edges, params.history_slots).requires_grad_(False)
    load_numpy_weights(net, weights)
    samples = []
    with torch.no_grad():
        for scalars, load in encoded:
            start = time.perf_counter_ns()
            net(torch.from_numpy(scalars), torch.from_numpy(load)).numpy()
            samples.append(time.perf_counter_ns() - start)
    return samples


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM")


def spawn_and_measure(argv: list[str]) -> tuple[float, float]:
    """Run `argv` (which prints its VmHWM line last) to completion: (wall seconds, peak
    resident MB). The child reports its own peak: wait4's ru_maxrss would count the
    parent's memory at spawn time."""
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{argv[:3]} exited with status {result.returncode}: {result.stderr}")
    return wall, int(result.stdout.split()[-2]) / 1024


class PeakRss:
    """Polls /proc for processes whose command line holds `marker`: their peak VmHWM,
    and whether any of them has torch's library mapped."""

    def __init__(self, marker: str, period_s: float = 0.2) -> None:
        self.marker = marker.encode()
        self.period_s = period_s
        self.peak_mb = 0.0
        self.seen_pids: set[int] = set()
        self.torch_mapped = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(self.period_s):
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    if self.marker not in (entry / "cmdline").read_bytes():
                        continue
                    status = (entry / "status").read_text()
                    if not self.torch_mapped:
                        self.torch_mapped = b"libtorch" in (entry / "maps").read_bytes()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
                        self.seen_pids.add(int(entry.name))


def live_terminal(topology_path: Path, policy, duration_s: float, out: Path) -> dict:
    """One terminal and its edges in a real run of `policy` (a `PolicySpec`); the
    terminal's peak RSS and summary."""
    from fl_crb.runtime.config import RunTarget
    from fl_crb.runtime.local_run import LocalRunConfig, run_local

    target = RunTarget(str(topology_path), duration_s, terminals_override=1)
    config = LocalRunConfig(target=target, policy=policy, out_dir=str(out))
    with PeakRss(str(out / "config" / "t1.json")) as rss:
        summary = asyncio.run(run_local(config))
    if summary["failed_parties"] or not rss.seen_pids:
        failed = summary["failed_parties"]
        raise RuntimeError(f"live run of {policy.describe()} failed: {failed}; see {out}")
    party = json.loads((out / "parties" / "t1.json").read_text())
    return {
        "peak_rss_mb": round(rss.peak_mb, 1),
        "torch_loaded": rss.torch_mapped,
        "tasks": party["tasks"],
        "party": party,
    }


FEDERATED_TOPOLOGY = TOPOLOGY.parent / "tiny.yaml"
PSS_AIM_MB = 200.0
"""The issue's aim: everything a federated terminal runs, at or below this PSS."""
MiB = 1024 * 1024
"""What the report calls an MB (as /proc's kB are KiB)."""
CLIENTAPP = "ClientApps (forked)"


def federate_command(topology: Path, duration_s: float, out: Path) -> list[str]:
    """A short real federated run: SuperLink, SuperNodes, authority, edge servers, edge
    learners and terminals, each its own process on this machine."""
    return [
        sys.executable,
        "-m",
        "fl_crb",
        "federate",
        "--topology",
        str(topology),
        "--local",
        "--duration",
        f"{duration_s:g}s",
        "--min-pool",
        "4",
        "--round-period",
        "1s",
        "--out",
        str(out),
    ]


class TerminalProcesses:
    """One federated terminal's processes in a run folder `out`, found in /proc at each
    call: its party (`python -m fl_crb.federation.terminal OUT/config/NAME.json`, as
    `local_run` starts it) and every process of its Flower node, which the launcher
    starts in the node's FLWR_HOME `OUT/flower/nodes/NAME` and whose children inherit it:
    the SuperNode, the ClientApp executor beside it (`warm_executor`, or Flower's
    SuperExec) and the ClientApps (forked by the executor: same command line, the
    executor as parent). `roles` names each pid seen, as it was last seen."""

    def __init__(self, out: Path, terminal: str) -> None:
        self.party_config = str(out / "config" / f"{terminal}.json")
        self.node_home = str(out / "flower" / "nodes" / terminal)
        self.roles: dict[int, str] = {}
        self.most_python_processes = 0
        """The most Python processes running on the machine at one scan: those the
        terminal's shared libraries' pages are divided among in PSS."""

    def __call__(self) -> list[int]:
        in_node: dict[int, tuple[str, int]] = {}  # pid -> (command line, parent pid)
        found, pythons = [], 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if "python" not in command:
                    continue
                pythons += 1
                if "fl_crb.federation.terminal" in command and command.split()[-1:] == [
                    self.party_config
                ]:
                    self.roles[int(entry.name)] = "terminal party"
                    found.append(int(entry.name))
                    continue
                if os.readlink(entry / "cwd") != self.node_home:
                    continue
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # gone while read
            in_node[int(entry.name)] = (command, parent)
        for pid, (command, parent) in in_node.items():
            # Labelled anew at each scan: caught between fork and exec, a SuperNode still
            # has its starter's command line.
            self.roles[pid] = self._node_role(command, in_node.get(parent, ("", 0))[0])
        self.most_python_processes = max(self.most_python_processes, pythons)
        return found + list(in_node)

    @staticmethod
    def _node_role(command: str, parent_command: str) -> str:
        if command == parent_command:
            return CLIENTAPP  # forked by the executor: its command line
        if "supernode" in command:
            return "SuperNode"
        if "warm_executor" in command or "superexec" in command:
            return "ClientApp executor"
        if "clientapp" in command:
            return "ClientApps (fresh)"
        return "other: " + " ".join(word.rsplit("/", 1)[-1] for word in command.split()[:3])

    def role(self, pid: int) -> str:
        """`pid`'s role; a process found only as a descendant (born between two scans):
        a ClientApp."""
        return self.roles.get(pid, CLIENTAPP)


def federated_footprint(args, cores: set[int]) -> dict:
    """The federated terminal's footprint in a run of its own; its folder is kept (and
    named) only if the run fails."""
    topology = args.federated_topology
    terminal = args.terminal or load_topology(topology).terminal_names[0]
    work = Path(tempfile.mkdtemp(prefix="fl-crb-federated-footprint-"))
    result = federated_terminal(topology, terminal, args.federated_duration, work, cores)
    shutil.rmtree(work)
    return {"topology": topology.name, "duration_s": args.federated_duration, **result}


def federated_terminal(
    topology: Path, terminal: str, duration_s: float, work: Path, cores: set[int]
) -> dict:
    """Run `fl-crb federate` on `cores` and sample `terminal`'s processes' PSS (every
    0.2 s) and, as root, their distinct resident pages."""
    from fl_crb.runtime.memory import PeakSampler

    out = work / "run"
    processes = TerminalProcesses(out, terminal)
    log_path = work / "federate.log"
    pinned = os.sched_getaffinity(0)
    started = time.monotonic()
    with PeakSampler(processes, period_s=0.2, count_unique=os.geteuid() == 0) as sampler:
        os.sched_setaffinity(0, cores)  # inherited by the run; the sampler keeps `pinned`
        with log_path.open("wb") as log:
            run = subprocess.Popen(
                federate_command(topology, duration_s, out), stdout=log, stderr=subprocess.STDOUT
            )
        os.sched_setaffinity(0, pinned)
        try:
            status = run.wait(timeout=duration_s + 300)
        except BaseException:
            run.send_signal(signal.SIGINT)  # it stops what it started
            run.wait()
            raise
    if status != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"fl-crb federate exited with status {status}; see {out}:\n{tail}")
    return {
        "sampled_s": round(time.monotonic() - started, 1),
        **footprint_report(sampler, processes, out, terminal),
    }


def footprint_report(sampler, processes: TerminalProcesses, out: Path, terminal: str) -> dict:
    """The sampler's peaks grouped by role, beside the run's own record of the terminal."""
    roles: dict[str, dict] = {}
    for pid, peak in sorted(sampler.peak_by_pid.items()):
        row = roles.setdefault(
            processes.role(pid),
            {"processes": 0, "peak_pss_mb": 0.0, "peak_uss_mb": 0.0, "peak_rss_mb": 0.0},
        )
        row["processes"] += 1
        row["peak_pss_mb"] = max(row["peak_pss_mb"], peak.pss_bytes / MiB)
        row["peak_uss_mb"] = max(row["peak_uss_mb"], peak.uss_bytes / MiB)
        row["peak_rss_mb"] = max(row["peak_rss_mb"], peak.rss_bytes / MiB)
    for row in roles.values():
        row.update(share_pss_mb=0.0, share_rss_mb=0.0, alive_at_peak=0)
    for member in sampler.at_peak_total:
        row = roles[processes.role(member.pid)]
        row["share_pss_mb"] += member.pss_bytes / MiB
        row["share_rss_mb"] += member.rss_bytes / MiB
        row["alive_at_peak"] += 1
    missing = {"terminal party", "SuperNode"} - set(roles)
    if missing or not any(CLIENTAPP in role or "fresh" in role for role in roles):
        raise RuntimeError(
            f"found no {sorted(missing) or 'ClientApp'} of {terminal} in {out} (by command "
            "line and FLWR_HOME, see TerminalProcesses): did the launcher change how it "
            "starts them?"
        )
    at_peak = sampler.at_peak_total
    peak_pss = sampler.peak_total_pss_bytes / MiB
    party = json.loads((out / "parties" / f"{terminal}.json").read_text())
    return {
        "terminal": terminal,
        "samples": sampler.samples,
        "period_s": sampler.period_s,
        "aim_pss_mb": PSS_AIM_MB,
        "peak_total_pss_mb": round(peak_pss, 1),
        "pss_anon_at_peak_mb": round(sum(m.pss_anon_bytes for m in at_peak) / MiB, 1),
        "pss_file_at_peak_mb": round(sum(m.pss_file_bytes for m in at_peak) / MiB, 1),
        "summed_rss_at_peak_mb": round(sum(m.rss_bytes for m in at_peak) / MiB, 1),
        "peak_summed_rss_mb": round(sampler.peak_total_rss_bytes / MiB, 1),
        "peak_unique_mb": round(sampler.peak_unique_bytes / MiB, 1)
        if sampler.count_unique
        else None,
        "most_python_processes": processes.most_python_processes,
        "roles": {
            role: {k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}
            for role, row in roles.items()
        },
        "processes": [
            {
                "pid": pid,
                "role": processes.role(pid),
                "command": peak.command,
                "peak_pss_mb": round(peak.pss_bytes / MiB, 1),
                "uss_mb": round(peak.uss_bytes / MiB, 1),
                "rss_mb": round(peak.rss_bytes / MiB, 1),
            }
            for pid, peak in sorted(sampler.peak_by_pid.items())
        ],
        "tasks": party["tasks"],
        "weights_versions_loaded": party.get("weights_versions_loaded"),
        "uploads": party.get("uploads"),
    }


def print_federated(federated: dict) -> None:
    """The federated terminal's processes: peaks, shares of the peak total, the aim."""
    f = federated
    print(
        f"\nfederated terminal {f['terminal']} (fl-crb federate --local): every process it "
        f"runs, PSS polled every {f['period_s']:g} s ({f['samples']} polls in "
        f"{f['sampled_s']:g} s); it decided "
        f"{f['tasks']} tasks, loaded weights versions {f['weights_versions_loaded']}, "
        f"uploaded {f['uploads']} trajectories"
    )
    print(f"{'':24} {'':>5} {'peak of one process, MB':>24}   {'at the peak of the total, MB':>28}")
    columns = f"{'PSS':>8} {'USS':>7} {'RSS':>7}   {'alive':>6} {'PSS':>10} {'RSS':>10}"
    print(f"{'process':24} {'seen':>5} {columns}")
    for role, row in f["roles"].items():
        print(
            f"{role:24} {row['processes']:5d} {row['peak_pss_mb']:8.1f} {row['peak_uss_mb']:7.1f} "
            f"{row['peak_rss_mb']:7.1f}   {row['alive_at_peak']:6d} {row['share_pss_mb']:10.1f} "
            f"{row['share_rss_mb']:10.1f}"
        )
    pss, rss = f["peak_total_pss_mb"], f["summed_rss_at_peak_mb"]
    print(f"{'total':24} {'':>5} {'':>8} {'':>7} {'':>7}   {'':>6} {pss:10.1f} {rss:10.1f}")
    print(
        f"summed RSS / PSS at the peak: {rss / pss:.2f} (summed RSS counts each shared page once "
        f"per process that maps it; its own peak over the run: {f['peak_summed_rss_mb']:.1f} MB)"
    )
    print(
        f"the PSS at its peak: {f['pss_anon_at_peak_mb']:.1f} MB anonymous (heap, stacks), "
        f"{f['pss_file_at_peak_mb']:.1f} MB file-backed (code, libraries: their pages divided "
        f"among up to {f['most_python_processes']} Python processes on this machine)"
    )
    aim = f["aim_pss_mb"]
    verdict = "meets" if pss <= aim else "MISSES"
    ratio = pss / aim
    print(
        f"{pss:.1f} MB PSS per federated terminal: {verdict} the {aim:.0f} MB aim ({ratio:.2f} x)"
    )
    if f["peak_unique_mb"] is not None:
        alone = f["peak_unique_mb"]
        verdict = "within" if alone <= aim else "ABOVE"
        print(
            f"on a machine of its own (its distinct resident pages, shared libraries in full, "
            f"as on a Pi running one terminal): {alone:.1f} MB at its peak, {verdict} the aim "
            f"({alone / aim:.2f} x)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", type=Path, default=TOPOLOGY)
    parser.add_argument("--duration", type=float, default=20.0, help="live run seconds")
    parser.add_argument("--decisions", type=int, default=3000)
    parser.add_argument("--startups", type=int, default=5)
    parser.add_argument("--core", type=int, default=os.cpu_count() - 1, help="pinned core")
    parser.add_argument("--latency-only", action="store_true", help="no live runs, no torch")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--realtime",
        type=int,
        metavar="PRIORITY",
        help="time decisions under SCHED_FIFO at this priority (root): other programs on a "
        "busy host then cannot preempt them, as on a Pi that runs only its terminal",
    )
    parser.add_argument(
        "--federated-only",
        action="store_true",
        help="only the federated terminal's PSS, in a real `fl-crb federate` run",
    )
    parser.add_argument("--federated-topology", type=Path, default=FEDERATED_TOPOLOGY)
    parser.add_argument(
        "--federated-duration", type=float, default=30.0, help="federated run seconds"
    )
    parser.add_argument(
        "--terminal", help="the federated terminal measured (default: the topology's first)"
    )
    args = parser.parse_args()
    if args.latency_only and args.federated_only:
        parser.error("--latency-only and --federated-only exclude each other")
    cores = os.sched_getaffinity(0)  # the federated run gets them all
    if args.federated_only:
        report = {"machine": os.uname().machine, "federated": federated_footprint(args, cores)}
        if args.json:
            print(json.dumps(report))
        else:
            print(f"{report['machine']}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
            print_federated(report["federated"])
        return
    os.sched_setaffinity(0, {args.core})
    report: dict = {"machine": os.uname().machine, "core": args.core, "realtime": args.realtime}
    if args.latency_only:
        import fl_crb.runtime.terminal  # noqa: F401  (a party's modules, for the RSS below)
    if args.realtime is not None:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(args.realtime))
    try:
        report["latency"] = measure_latency(args.topology, args.decisions, not args.latency_only)
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    report["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if not args.latency_only:
        report.update(footprint(args))
        report["federated"] = federated_footprint(args, cores)
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)


def footprint(args) -> dict:
    """Live runs of both policies, start-up times, and the torch reference process."""
    from fl_crb.learn.weights_file import save_weights_file
    from fl_crb.policies.spec import Baseline, WeightsFile

    edges = load_topology(args.topology).mec_params().edges
    history_slots = load_topology(args.topology).mec_params().history_slots
    result: dict = {"live": {}, "startup_s": {}}
    with tempfile.TemporaryDirectory(prefix="fl-crb-footprint-") as work:
        weights = Path(work) / "weights.npz"
        save_weights_file(weights, random_weights(edges), version=1)
        policies = [
            ("round-robin", Baseline("round-robin")),
            ("crb-drqn", WeightsFile(str(weights))),
        ]
        for name, policy in policies:
            out = Path(work) / name
            live = live_terminal(args.topology, policy, args.duration, out)
            result["live"][name] = {k: live[k] for k in ("peak_rss_mb", "torch_loaded", "tasks")}
            config = str(out / "config" / "t1.json")
            runs = [
                spawn_and_measure([sys.executable, "-c", STARTUP_CODE, config])
                for _ in range(args.startups)
            ]
            result["startup_s"][name] = round(float(np.median([w for w, _ in runs])), 3)
            result["live"][name]["startup_peak_rss_mb"] = round(max(r for _, r in runs), 1)
        agent = subprocess.run(
            [sys.executable, __file__, "--latency-only", "--json", "--decisions", "500"],
            capture_output=True,
            text=True,
            check=True,
        )
        result["numpy_agent_peak_rss_mb"] = json.loads(agent.stdout)["peak_rss_mb"]
        argv = [sys.executable, "-c", TORCH_REFERENCE_CODE, config, str(edges), str(history_slots)]
        runs = [spawn_and_measure(argv) for _ in range(args.startups)]
        result["startup_s"]["torch reference"] = round(float(np.median([w for w, _ in runs])), 3)
        result["torch_reference_peak_rss_mb"] = round(max(r for _, r in runs), 1)
    return result


def print_report(report: dict) -> None:
    latency = report["latency"]
    print(f"{report['machine']}, pinned to core {report['core']}, load {os.getloadavg()[0]:.2f}")
    print(f"\nper decision / forward pass ({latency['decisions']} real observations):")
    print(f"{'':34} {'median ms':>10} {'p99 ms':>8} {'max ms':>8}")
    rows = [
        ("TerminalAgent.act (decision)", "decision"),
        ("  the same, CPU time", "decision_cpu"),
        ("numpy forward", "numpy_forward"),
    ]
    rows += [("torch forward (reference)", "torch_forward")] if "torch_forward" in latency else []
    for label, key in rows:
        row = latency[key]
        print(f"{label:34} {row['median_ms']:10.3f} {row['p99_ms']:8.3f} {row['max_ms']:8.3f}")
    if "torch_forward" in latency:
        ratio = latency["numpy_forward"]["median_ms"] / latency["torch_forward"]["median_ms"]
        print(f"numpy / torch forward, median: {ratio:.2f}")
    p99 = latency["decision"]["p99_ms"]
    verdict = "meets" if p99 <= P99_TARGET_MS else "MISSES"
    print(f"decision p99 {p99:.3f} ms (wall clock): {verdict} the {P99_TARGET_MS} ms target")
    if "live" not in report:
        return
    reference = report["torch_reference_peak_rss_mb"]
    print(f"\n{'terminal party':34} {'peak RSS MB':>12} {'start-up s':>11} {'tasks':>6}")
    for name, live in report["live"].items():
        startup = report["startup_s"][name]
        print(f"{name:34} {live['peak_rss_mb']:12.1f} {startup:11.3f} {live['tasks']:6d}")
        print(f"{'  (built, not connected)':34} {live['startup_peak_rss_mb']:12.1f}")
    torch_startup = report["startup_s"]["torch reference"]
    print(f"{'torch reference (built + torch)':34} {reference:12.1f} {torch_startup:11.3f}")
    agent = report["numpy_agent_peak_rss_mb"]
    print(f"{'party modules + numpy agent acting':34} {agent:12.1f}")
    for name, live in report["live"].items():
        verdict = "meets" if live["peak_rss_mb"] <= RSS_TARGET_MB else "MISSES"
        ratio = live["peak_rss_mb"] / reference
        note = " (torch loaded by the party!)" if live["torch_loaded"] else ""
        print(
            f"{name}: {live['peak_rss_mb']:.1f} MB, {ratio:.2f} x the torch reference, "
            f"{verdict} the {RSS_TARGET_MB:.0f} MB target{note}"
        )
    if "federated" in report:
        print_federated(report["federated"])


if __name__ == "__main__":
    main()
