"""A terminal on aarch64 without a board: Debian arm64 under qemu-user, against native peers.

Users run terminals on Raspberry Pis (aarch64). This script (root; not part of `make
test`) checks that the `terminal` install profile works there and how it behaves:

1. host tools: debootstrap, qemu-user-static and binfmt-support (Debian's packages,
   installed with apt-get if missing); binfmt_misc mounted and qemu-aarch64 registered
   (with the F flag, so a chroot needs no qemu binary of its own);
2. a Debian bookworm arm64 root filesystem (debootstrap, minbase, with python3, venv,
   pip), kept in `--rootfs` and reused by later runs;
3. the terminal profile installed into a venv in it, `pip install '/opt/fl-crb-src[terminal]'`
   from a copy of this checkout, every dependency an aarch64 wheel from the registry;
   torch must be absent;
4. a live run of `--duration` seconds, everyone on 127.0.0.1 (the root shares this
   network namespace). Federated mode (the default) runs the role commands as
   docs/deployment.md has users run them, TLS and SuperNode authentication on:
   `fl-crb keys`, then `fl-crb authority` and one `fl-crb edge` per edge natively, each
   from its own bundle copied into its own state folder, and `fl-crb terminal` for t1
   inside the arm64 root: the terminal profile's own command, whose party and SuperNode
   run under emulation. The state folders live in a directory bind-mounted at the same
   path inside the root. Modes `weights-file` (CRB-DRQN from a weights file that the
   script replaces half way, so the terminal must reload it) and `round-robin` (a
   baseline terminal) run the runtime's local coordinator with t1's party in the root;
5. the terminal's decision latency under emulation (`terminal_footprint.py
   --latency-only` inside the root: an upper bound for a real board).

Where it cannot run it says why and exits 2 (`why_not_here`): not root, no way to
install qemu-user-static and debootstrap, or a kernel (or container) that does not let
binfmt_misc be mounted or qemu-aarch64 registered.

It prints installed size, the terminal's peak resident memory (of the qemu process: the
emulator's own memory included, an upper bound), decision latency, and whether
trajectories and weights flowed, and writes them to WORK/report.json.

    sudo .venv/bin/python benchmarks/aarch64_terminal.py [--mode federated] [--duration 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

from terminal_footprint import PeakRss, random_weights

from fl_crb.learn.weights_file import read_weights_file, save_weights_file
from fl_crb.policies.spec import Baseline, WeightsFile
from fl_crb.runtime.config import RunTarget
from fl_crb.runtime.local_run import LocalRunConfig, run_local
from fl_crb.runtime.placement import LOOPBACK
from fl_crb.topology import load_topology

REPO = Path(__file__).resolve().parent.parent
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
ROOT_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
VENV = "/opt/fl-crb"
"""The terminal profile's venv inside the root."""
SOURCE = "/opt/fl-crb-src"
"""The copy of this checkout inside the root that pip installs from."""
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
"""The host's CA bundle, copied into the root so pip there trusts what pip here trusts."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, **kwargs)


def why_not_here(reason: str) -> NoReturn:
    """Stop: the check cannot run on this machine, and why (exit status 2)."""
    print(f"aarch64_terminal.py cannot run here: {reason}", file=sys.stderr)
    raise SystemExit(2)


def _attempt(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def ensure_host_tools() -> None:
    """debootstrap and qemu-aarch64 with binfmt; apt-get installs what is missing. Where
    that cannot be done, `why_not_here`."""
    if os.geteuid() != 0:
        why_not_here("it needs root (debootstrap, mount, chroot)")
    missing = [
        p
        for p, f in [
            ("debootstrap", "/usr/sbin/debootstrap"),
            ("qemu-user-static", "/usr/bin/qemu-aarch64-static"),
            ("binfmt-support", "/usr/sbin/update-binfmts"),
        ]
        if not Path(f).exists()
    ]
    if missing:
        log(f"installing Debian packages {missing}")
        for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
            done = _attempt(argv)
            if done.returncode != 0:
                why_not_here(
                    f"{missing} are not installed and `{' '.join(argv)}` failed "
                    f"({done.returncode}): {done.stderr.strip()[-300:]}"
                )
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        done = _attempt(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)])
        if done.returncode != 0:
            why_not_here(
                f"binfmt_misc cannot be mounted on {binfmt} ({done.stderr.strip()}): this "
                "kernel or container does not let qemu-aarch64 be registered, so arm64 "
                "programs cannot run in a chroot"
            )
    if not (binfmt / "qemu-aarch64").exists():
        done = _attempt(["update-binfmts", "--enable", "qemu-aarch64"])
        if done.returncode != 0:
            why_not_here(f"qemu-aarch64 cannot be registered with binfmt_misc: {done.stderr}")
    flags = (binfmt / "qemu-aarch64").read_text()
    if "enabled" not in flags or "F" not in flags.split("flags:")[1].split()[0]:
        why_not_here(f"qemu-aarch64 binfmt is not enabled with the F flag:\n{flags}")


def build_root(root: Path) -> float:
    """The arm64 root filesystem (reused if it has python3); seconds spent building."""
    if (root / "usr" / "bin" / "python3").exists():
        log(f"reusing the arm64 root in {root}")
        return 0.0
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} exists without usr/bin/python3; remove it or pick --rootfs")
    log(f"debootstrap {SUITE} arm64 into {root} (takes ~15 min under emulation)")
    start = time.time()
    run(
        [
            "debootstrap",
            "--arch=arm64",
            "--variant=minbase",
            f"--include={ROOT_PACKAGES}",
            SUITE,
            str(root),
            MIRROR,
        ]
    )
    return time.time() - start


@contextlib.contextmanager
def mounted(root: Path, work: Path):
    """/proc, /dev and WORK (at its own path) inside the root; unmounted on the way out."""
    done: list[Path] = []
    try:
        for source, target, options in [
            ("proc", root / "proc", ["-t", "proc"]),
            ("/dev", root / "dev", ["--bind"]),
            (str(work), root / str(work).lstrip("/"), ["--bind"]),
        ]:
            target.mkdir(parents=True, exist_ok=True)
            run(["mount", *options, source, str(target)])
            done.append(target)
        yield
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-l", str(target)], check=False)


def in_root(root: Path, argv: list[str]) -> list[str]:
    """`argv` run inside the root with a clean, single-threaded environment."""
    return [
        "chroot",
        str(root),
        "/usr/bin/env",
        "-i",
        f"PATH={VENV}/bin:/usr/bin:/bin",
        "HOME=/root",
        "LANG=C.UTF-8",
        "OMP_NUM_THREADS=1",
        "OPENBLAS_NUM_THREADS=1",
        "PIP_CERT=/opt/host-ca/ca.crt",
        "PIP_DISABLE_PIP_VERSION_CHECK=1",
        "PIP_DEFAULT_TIMEOUT=180",
        *argv,
    ]


def install_profile(root: Path) -> dict:
    """Copy the checkout in, pip install its terminal profile; size and package list."""
    shutil.copyfile("/etc/resolv.conf", root / "etc" / "resolv.conf")
    (root / "opt" / "host-ca").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HOST_CA, root / "opt" / "host-ca" / "ca.crt")
    source = root / SOURCE.lstrip("/")
    shutil.rmtree(source, ignore_errors=True)
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "runs", "build", "*.egg-info", "__pycache__", ".*_cache"
    )
    shutil.copytree(REPO, source, ignore=ignore)
    start = time.time()
    if not (root / VENV.lstrip("/") / "bin" / "python").exists():
        run(in_root(root, ["/usr/bin/python3", "-m", "venv", VENV]))
    log("pip install the terminal profile inside the root (several minutes under emulation)")
    run(in_root(root, ["pip", "install", "-q", "--no-cache-dir", f"{SOURCE}[terminal]"]))
    seconds = time.time() - start
    listing = subprocess.run(
        in_root(root, ["pip", "list", "--format=json"]), capture_output=True, text=True, check=True
    )
    packages = {p["name"].lower(): p["version"] for p in json.loads(listing.stdout)}
    if "torch" in packages:
        raise SystemExit("the terminal profile installed torch")
    check = subprocess.run(
        in_root(
            root,
            [
                "python",
                "-c",
                "import platform, sys, fl_crb.runtime.terminal, flwr; "
                "print('machine', platform.machine() + ', torch imported:', "
                "'torch' in sys.modules)",
            ],
        ),
        capture_output=True,
        text=True,
        check=True,
    )
    size = subprocess.run(
        ["du", "-sb", str(root / VENV.lstrip("/"))], capture_output=True, text=True, check=True
    )
    return {
        "install_s": round(seconds, 1),
        "venv_mb": round(int(size.stdout.split()[0]) / 2**20, 1),
        "import_check": check.stdout.strip(),
        "packages": len(packages),
        "versions": {k: packages[k] for k in ("fl-crb", "numpy", "cryptography", "flwr")},
    }


class EmulatedTerminals:
    """Loopback placement whose terminal parties run inside the arm64 root.

    Its label is "loopback": every process, emulated or not, is on this machine's
    loopback, which is what the coordinators ask the label about."""

    label = "loopback"

    def __init__(self, root: Path, terminal_names: list[str]) -> None:
        self.root = root
        self.terminal_names = set(terminal_names)

    def command(self, host: str, argv: list[str]) -> list[str]:
        if host not in self.terminal_names:
            return list(argv)
        return in_root(self.root, [f"{VENV}/bin/python", *argv[1:]])

    def listen_address(self, host: str) -> str:
        return LOOPBACK

    def address(self, host: str, peer: str | None = None) -> str:
        return LOOPBACK


def run_emulated(args, root: Path, work: Path) -> dict:
    """The live run in the chosen mode; the terminal's RSS and what flowed."""
    topology = work / "topology.yaml"
    shutil.copyfile(REPO / "topologies" / "tiny.yaml", topology)
    out = work / "run"
    placement = EmulatedTerminals(root, load_topology(topology).terminal_names)
    rate_bps = args.rate_mbps * 1e6
    marker = (
        work / "t1" / "config" / "t1.json"
        if args.mode == "federated"
        else out / "config" / "t1.json"
    )
    with PeakRss(str(marker), period_s=0.5) as rss:
        if args.mode == "federated":
            result = run_federated_mode(args, topology, work, root, rate_bps)
        else:
            result = run_local_mode(args, topology, out, placement, rate_bps, work)
    result["terminal_peak_rss_mb"] = round(rss.peak_mb, 1)
    result["terminal_process_seen"] = bool(rss.seen_pids)
    return result


def run_local_mode(args, topology, out, placement, rate_bps, work) -> dict:
    policy = Baseline("round-robin")
    replacer = None
    if args.mode == "weights-file":
        weights = work / "weights.npz"
        edges = load_topology(topology).mec_params().edges
        save_weights_file(weights, random_weights(edges, seed=1), version=1)
        policy = WeightsFile(str(weights))

        def replace_half_way() -> None:
            """Version 2, half way through the arrivals (run.json appears at START)."""
            while not (out / "run.json").exists():
                time.sleep(0.5)
            time.sleep(args.duration / 2)
            save_weights_file(weights, random_weights(edges, seed=2), version=2)

        replacer = threading.Thread(target=replace_half_way, daemon=True)
        replacer.start()
    target = RunTarget(str(topology), args.duration, 1, rate_bps)
    config = LocalRunConfig(target, policy, str(out), startup_timeout_s=600.0)
    summary = asyncio.run(run_local(config, placement))
    party = json.loads((out / "parties" / "t1.json").read_text())
    result = {"summary": _short(summary), "terminal": party}
    if args.mode == "weights-file":
        trajectories = out / "parties" / "t1.trajectories.npz"
        result["flowed"] = {
            "weights_reloaded": party.get("weights_loads", 0) >= 2
            and party.get("weights_version") == read_weights_file(work / "weights.npz")[1],
            "trajectories_written": party.get("trajectories", 0),
            "trajectory_file": trajectories.exists(),
        }
    return result


def run_federated_mode(args, topology: Path, work: Path, root: Path, rate_bps: float) -> dict:
    """The role commands as on real machines, TLS and node authentication on: `fl-crb
    keys`, `fl-crb authority` and `fl-crb edge` natively, each from its own bundle copied
    into its own state folder, and `fl-crb terminal` for t1 inside the arm64 root (the
    terminal profile's own `fl-crb`: its party and its SuperNode run under qemu)."""
    edges = load_topology(topology).edge_names
    keys = work / "keys"
    run([sys.executable, "-m", "fl_crb.cli", "keys", "--topology", str(topology),
         "--out", str(keys)], capture_output=True)  # fmt: skip
    states = {host: work / host for host in ("cloud", *edges, "t1")}
    for host, state in states.items():
        state.mkdir()
        shutil.copytree(keys / host, state / "bundle")
    cloud = states["cloud"]
    authority = _role(cloud, [
        sys.executable, "-m", "fl_crb.cli", "authority", "--bundle", str(cloud / "bundle"),
        "--state", str(cloud), "--topology", str(topology), "--duration", f"{args.duration}s",
        "--terminals", "1", "--rate", f"{rate_bps}bps", "--listen", LOOPBACK, "--port", "0",
        "--superlink-port", "0", "--min-pool", "4", "--join-timeout", "900s",
    ])  # fmt: skip
    processes = {"cloud": authority}
    try:
        port = _service_port(cloud.with_suffix(".err"), authority)
        party = ["--authority", f"{LOOPBACK}:{port}", "--give-up", "900s"]
        for edge in edges:
            state = states[edge]
            processes[edge] = _role(state, [
                sys.executable, "-m", "fl_crb.cli", "edge", "--bundle", str(state / "bundle"),
                "--state", str(state), "--runtime-port", "0", *party,
            ])  # fmt: skip
        terminal = states["t1"]
        processes["t1"] = _role(terminal, in_root(root, [
            f"{VENV}/bin/fl-crb", "terminal", "--bundle", str(terminal / "bundle"),
            "--state", str(terminal), *party,
        ]))  # fmt: skip
        give_up = time.time() + args.duration + 1800
        codes = {h: p.wait(timeout=max(1.0, give_up - time.time())) for h, p in processes.items()}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=60)
    if any(codes.values()):
        tails = {h: states[h].with_suffix(".err").read_text()[-600:] for h, c in codes.items() if c}
        raise RuntimeError(f"role commands failed, exit codes {codes}; their last lines: {tails}")
    summary = json.loads((cloud / "summary.json").read_text())
    report = json.loads((terminal / "summary.json").read_text())
    return {
        "summary": {k: summary.get(k) for k in ("security", "rounds", "tasks", "completed")},
        "terminal": report,
        "flowed": {
            "uploads_posted": summary["uploads_posted"],
            "uploads_accepted_by_authority": summary["uploads_accepted"],
            "uploads_rejected": summary["uploads_rejected"],
            "weights_versions_received": report["terminal"].get("weights_versions_loaded", []),
            "tasks_by_decider": report["tasks_by_decider"],
        },
    }


def _role(state: Path, argv: list[str]) -> subprocess.Popen:
    """A role command, its output in STATE.err."""
    log_file = open(state.with_suffix(".err"), "wb")  # noqa: SIM115 (closed with the process)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(argv, stdout=log_file, stderr=log_file, env=env)


def _service_port(err: Path, authority: subprocess.Popen) -> int:
    """The run service's port, as the authority says it."""
    give_up = time.monotonic() + 300
    while time.monotonic() < give_up and authority.poll() is None:
        found = re.search(r"run service https://127\.0\.0\.1:(\d+)", err.read_text())
        if found:
            return int(found.group(1))
        time.sleep(0.2)
    raise RuntimeError(f"the authority never said where it serves:\n{err.read_text()[-2000:]}")


def _short(summary: dict) -> dict:
    keys = ("tasks", "finished", "dropped", "unresolved", "failure_rate", "overrun_share")
    return {k: summary.get(k) for k in keys} | {"failed_parties": summary["failed_parties"]}


def emulated_latency(root: Path, decisions: int) -> dict:
    """terminal_footprint.py --latency-only inside the root (decisions under qemu). On a
    busy host the wall-clock figures include waiting for the core; CPU time does not."""
    argv = [
        f"{VENV}/bin/python",
        f"{SOURCE}/benchmarks/terminal_footprint.py",
        "--latency-only",
        "--json",
        "--decisions",
        str(decisions),
        "--topology",
        f"{SOURCE}/topologies/four-edge-hetero.yaml",
    ]
    result = subprocess.run(in_root(root, argv), capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rootfs", type=Path, default=Path("/var/tmp/fl-crb-arm64"))
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/fl-crb-arm64-work"))
    parser.add_argument(
        "--mode", choices=("federated", "weights-file", "round-robin"), default="federated"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals")
    parser.add_argument("--rate-mbps", type=float, default=6.0, help="the terminal's load")
    parser.add_argument("--skip-install", action="store_true", help="keep the installed venv")
    parser.add_argument(
        "--latency-decisions", type=int, default=300, help="decisions timed under emulation"
    )
    args = parser.parse_args()
    ensure_host_tools()
    root, work = args.rootfs.resolve(), args.work.resolve()
    report: dict = {"mode": args.mode, "duration_s": args.duration}
    report["debootstrap_s"] = round(build_root(root), 1)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    with mounted(root, work):
        if not args.skip_install:
            report["install"] = install_profile(root)
        log("decision latency inside the root")
        report["emulated_latency"] = emulated_latency(root, args.latency_decisions)
        log(f"live run, mode {args.mode}, {args.duration:.0f} s of arrivals")
        try:
            report["run"] = run_emulated(args, root, work)
        except (RuntimeError, ValueError, OSError) as error:
            report["run"] = {"error": str(error)}
    (work / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    print_report(report, work)
    return 0 if "error" not in report["run"] else 1


def print_report(report: dict, work: Path) -> None:
    print()
    if "install" in report:
        install = report["install"]
        print(
            f"installed: {install['venv_mb']} MiB venv, {install['packages']} packages, "
            f"{install['install_s']} s; {install['versions']}"
        )
        print(f"inside the root, after importing the terminal party: {install['import_check']}")
    emulated = report["emulated_latency"]
    latency = emulated["latency"]
    decision, cpu = latency["decision"], latency["decision_cpu"]
    print(
        f"decision latency under qemu ({emulated['machine']}, {latency['decisions']} decisions): "
        f"wall median {decision['median_ms']:.1f} ms, p99 {decision['p99_ms']:.1f} ms; "
        f"CPU time median {cpu['median_ms']:.1f} ms, p99 {cpu['p99_ms']:.1f} ms; "
        f"that process's peak RSS {emulated['peak_rss_mb']} MB"
    )
    live = report["run"]
    if "error" in live:
        print(f"live run FAILED: {live['error']}")
        print(f"see {work / 'run' / 'logs'}")
        return
    print(f"live run: {live['summary']}")
    print(f"terminal peak RSS (qemu process, emulator included): {live['terminal_peak_rss_mb']} MB")
    if "flowed" in live:
        print(f"flowed: {live['flowed']}")
    print(f"report: {work / 'report.json'}")


if __name__ == "__main__":
    sys.exit(main())
