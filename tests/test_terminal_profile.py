"""A terminal never imports torch: its modules, live terminal parties, a fresh install.

The live checks run real parties with `run_local` through a placement that starts every
terminal with `python -X importtime`, which writes one line per imported module to the
party's log: the log then shows whether torch was loaded, and when.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fl_crb.learn.numpy_qnetwork import weight_shapes
from fl_crb.learn.weights_file import save_weights_file
from fl_crb.policies.spec import Baseline, PolicySpec, WeightsFile
from fl_crb.runtime.config import RunTarget
from fl_crb.runtime.local_run import LocalRunConfig, run_local
from fl_crb.runtime.placement import LOOPBACK
from fl_crb.topology import load_topology

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "topologies" / "tiny.yaml"
HEAVY = ("torch", "matplotlib", "mininet")
"""Top-level packages a terminal must not load."""


def imported_modules(importtime_log: str) -> set[str]:
    """Module names in `python -X importtime` output ("import time: self | cum | name")."""
    names = set()
    for line in importtime_log.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the header line
                names.add(name)
    return names


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


class ImportTimedTerminals:
    """Loopback, with every terminal party started under `python -X importtime`."""

    label = "loopback"

    def __init__(self, terminal_names: list[str]) -> None:
        self.terminal_names = set(terminal_names)

    def command(self, host: str, argv: list[str]) -> list[str]:
        if host in self.terminal_names:
            return [argv[0], "-X", "importtime", *argv[1:]]
        return list(argv)

    def listen_address(self, host: str) -> str:
        return LOOPBACK

    def address(self, host: str, peer: str | None = None) -> str:
        return LOOPBACK


def run_terminals(tmp_path: Path, policy: PolicySpec) -> tuple[dict, set[str]]:
    """A 3 s run of tiny.yaml with one terminal at 8 Mbit/s (about 7 tasks); returns the
    terminal's summary and the modules it imported."""
    target = RunTarget(str(TINY), 3.0, terminals_override=1, arrival_rate_override_bps=8e6, seed=4)
    config = LocalRunConfig(target=target, policy=policy, out_dir=str(tmp_path / "run"))
    names = load_topology(TINY).terminal_names
    summary = asyncio.run(run_local(config, ImportTimedTerminals(names)))
    assert summary["failed_parties"] == []
    assert summary["tasks"] > 0
    party = json.loads((tmp_path / "run" / "parties" / "t1.json").read_text())
    log = (tmp_path / "run" / "logs" / "t1.log").read_text()
    return party, imported_modules(log)


def test_terminal_modules_import_no_torch():
    code = (
        "import sys\n"
        "import fl_crb.learn.numpy_qnetwork, fl_crb.learn.terminal_agent\n"
        "import fl_crb.runtime.terminal, fl_crb.runtime.decider, fl_crb.federation.terminal\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_baseline_terminal_party_imports_no_torch(tmp_path):
    party, modules = run_terminals(tmp_path, Baseline("round-robin"))
    assert party["policy"] == "round-robin" and party["tasks"] > 0
    # The log is the party's own imports: the runtime and numpy are among them.
    assert {"fl_crb.runtime.decider", "fl_crb.runtime.load_board", "numpy"} <= modules
    assert heavy(modules) == []


def test_learned_terminal_party_imports_no_torch(tmp_path):
    weights = {
        name: np.random.default_rng(0).normal(0, 0.1, shape).astype(np.float32)
        for name, shape in weight_shapes(edges=2).items()
    }
    save_weights_file(tmp_path / "weights.npz", weights, version=5)
    party, modules = run_terminals(tmp_path, WeightsFile(str(tmp_path / "weights.npz")))
    assert party["weights_version"] == 5 and party["tasks"] > 0
    assert "fl_crb.learn.numpy_qnetwork" in modules
    assert heavy(modules) == []


def copy_source(destination: Path) -> Path:
    """The working tree without virtual environments, caches and run folders: what a
    user installing from a checkout has (and pip may write build files into)."""
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "runs", "build", "*.egg-info", "__pycache__", ".*_cache"
    )
    return Path(shutil.copytree(REPO, destination, ignore=ignore))


@pytest.mark.slow
def test_terminal_profile_installs_without_torch_and_runs_a_terminal(tmp_path):
    """`pip install 'fl-crb[terminal]'` into a fresh venv (packages from the registry),
    then a live round-robin run with its `fl-crb run-local`."""
    source = copy_source(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"{source}[terminal]"],
        check=True,
        env=env,
        timeout=900,
    )
    listing = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    installed = {p["name"].lower() for p in json.loads(listing.stdout)}
    assert {"fl-crb", "numpy", "pyyaml", "cryptography", "flwr"} <= installed
    assert not installed & {"torch", "matplotlib", "mininet"}
    out = tmp_path / "run"
    subprocess.run(
        [
            str(venv / "bin" / "fl-crb"),
            "run-local",
            "--topology",
            str(TINY),
            "--terminals",
            "2",
            "--policy",
            "round-robin",
            "--duration",
            "3s",
            "--out",
            str(out),
        ],
        check=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed_parties"] == [] and summary["tasks"] > 0
