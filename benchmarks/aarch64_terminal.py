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
4. a live run of `--duration` seconds: the edge servers (and, in federated mode, the
   edge learners, the Flower SuperLink and SuperNodes and the authority) run natively
   here; the terminal party runs inside the arm64 root under emulation (`chroot`, same
   network namespace: everyone talks over 127.0.0.1). The run folder lives in a
   directory bind-mounted at the same path inside the root, so config, log, mailbox
   and key paths are the same for both sides;
5. the terminal's decision latency under emulation (`terminal_footprint.py
   --latency-only` inside the root: an upper bound for a real board).

Modes (`--mode`): `federated` (the default): federated CRB-DRQN, trajectories sealed and
uploaded to the authority, weights delivered to the terminal's mailbox by its SuperNode
(the SuperNode itself runs natively: the Flower processes cannot start through a
placement yet); `weights-file`: CRB-DRQN from a weights file that the script replaces
half way, so the terminal must reload it; `round-robin`: a baseline terminal.

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
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from terminal_footprint import PeakRss, random_weights

from fl_crb.learn.method_config import MethodConfig
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


def ensure_host_tools() -> None:
    """debootstrap and qemu-aarch64 with binfmt; apt-get installs what is missing."""
    if os.geteuid() != 0:
        raise SystemExit("aarch64_terminal.py needs root (debootstrap, mount, chroot)")
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
        run(["apt-get", "update", "-q"])
        run(["apt-get", "install", "-y", "-q", *missing])
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)])
    if not (binfmt / "qemu-aarch64").exists():
        run(["update-binfmts", "--enable", "qemu-aarch64"])
    flags = (binfmt / "qemu-aarch64").read_text()
    if "enabled" not in flags or "F" not in flags.split("flags:")[1].split()[0]:
        raise SystemExit(f"qemu-aarch64 binfmt is not enabled with the F flag:\n{flags}")


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
    with PeakRss(str(out / "config" / "t1.json"), period_s=0.5) as rss:
        if args.mode == "federated":
            result = run_federated_mode(args, topology, out, placement, rate_bps)
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


def run_federated_mode(args, topology, out, placement, rate_bps) -> dict:
    try:
        from fl_crb.federation.deploy.federated_run import run_federated
        from fl_crb.federation.deploy.run_config import FederatedRunConfig, federated_parties
    except ImportError as error:
        raise SystemExit(
            f"federated mode needs fl_crb.federation.deploy.federated_run: {error}"
        ) from None
    target = RunTarget(str(topology), args.duration, 1, rate_bps)
    parties = federated_parties(target, str(out), startup_timeout_s=600.0)
    config = FederatedRunConfig(parties, method=MethodConfig(min_pool_trajectories=4))
    summary = asyncio.run(run_federated(config, placement))
    federation = summary["federation"]
    party = json.loads((out / "parties" / "t1.json").read_text())
    return {
        "summary": _short(summary),
        "terminal": party,
        "flowed": {
            "uploads_posted": federation["uploads_posted"],
            "uploads_accepted_by_authority": federation["uploads_accepted"],
            "uploads_rejected": federation["uploads_rejected"],
            "weights_versions_received": party.get("weights_versions_loaded", []),
            "edge_versions": federation["edge_versions"],
        },
    }


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
