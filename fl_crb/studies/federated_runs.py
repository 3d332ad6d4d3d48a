"""Whole federated runs of the overhead study: where they run (the face), how, and the
model's bytes beside what they measured.

Two faces: `emulated`, `fl-crb emulate`'s federated data plane on a Mininet network of the
study's topology (needs root, Mininet's Python package and its tools), or `local`,
`fl-crb federate --local` with every process on loopback; `auto` takes the emulated face
where it can run. Both write the authority's byte accounting, which `federated_bytes`
reduces; the model beside each run takes the periods recorded in its run.json and its
measured round length.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from fl_crb.studies.federated_accounting import FederatedBytes, federated_bytes
from fl_crb.studies.link_capture import LinkCapture, classify_links, link_rows
from fl_crb.studies.overhead_model import Framing, OverheadSetting, round_bytes
from fl_crb.studies.relay_accounting import RelayBytes, relay_bytes
from fl_crb.studies.report import markdown_table, write_csv

FACES = ("auto", "emulated", "local")
"""Where whole federated runs happen: `emulated` (Mininet), `local` (loopback), or `auto`
(emulated when this machine can run it, else local)."""
FACE_COMMANDS = {
    "emulated": "fl-crb emulate's federated data plane on Mininet",
    "local": "fl-crb federate --local, on loopback",
}
"""What each face runs, as progress lines and the summary say it."""
RUN_COLUMNS = ("face", "terminals", "configured_round_s", "round_s", "poll_period_s", "rounds")
"""The columns of a whole federated run's row that say which run it was: where it ran, its
scale, its configured and measured round length, its poll period and rounds."""


@dataclass(frozen=True)
class HostFacts:
    """What the emulated face needs of this machine."""

    uid: int
    """Effective user id (the emulator needs 0: namespaces, bridges, tc)."""
    mininet_package: bool
    """Mininet's Python package is importable."""
    missing_tools: tuple[str, ...]
    """Commands of `emulation.network.REQUIRED_TOOLS` not on PATH (mnexec, brctl, tc...)."""

    def missing(self) -> list[str]:
        """What keeps the emulated face from running here, in words; empty if nothing."""
        missing = [] if self.uid == 0 else [f"root (running as uid {self.uid})"]
        if not self.mininet_package:
            missing.append("Mininet's Python package (apt-get install mininet; `make install`)")
        if self.missing_tools:
            missing.append(f"the commands {', '.join(self.missing_tools)}")
        return missing


def host_facts() -> HostFacts:
    """This machine's facts for `choose_face`."""
    from emulation.network import REQUIRED_TOOLS

    return HostFacts(
        uid=os.geteuid(),
        mininet_package=importlib.util.find_spec("mininet") is not None,
        missing_tools=tuple(tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None),
    )


def choose_face(requested: str, facts: HostFacts) -> tuple[str, str]:
    """The face of the whole federated runs, and a sentence saying why; `emulated` without
    what it needs is refused, naming what is missing."""
    if requested not in FACES:
        raise ValueError(f"face {requested!r}; expected one of {', '.join(FACES)}")
    missing = facts.missing()
    if requested == "emulated" and missing:
        raise ValueError(
            f"face emulated (whole federated runs on Mininet) needs {'; '.join(missing)}; "
            "use face local (fl-crb federate --local) or auto"
        )
    if requested != "auto":
        return requested, f"face {requested}, as asked"
    if missing:
        return "local", f"face auto chose local: the emulated face needs {'; '.join(missing)}"
    return "emulated", "face auto chose emulated: root, Mininet and its tools are here"


@dataclass(frozen=True)
class FederatedSetting:
    """One whole federated run of the study."""

    terminals: int
    round_period_s: float
    """The authority's round period (`fl-crb federate --round-period`;
    `FederatedRunConfig.round_period_s` on either face)."""
    poll_period_s: float
    """The SuperNodes' idle pull period (`FederatedRunConfig.supernode_idle_poll_s` on
    either face)."""
    uplink: str = "direct"
    """`FederatedRunConfig.uplink`: "direct" (terminal SuperNodes) or "relay" (through the
    edges; always on the local face, where the capture sees the terminals' links)."""


def model_beside_measured(
    base: OverheadSetting, framing: Framing, measured: FederatedBytes
) -> dict:
    """A federated run's measured bytes with the model's at its terminals, the poll period
    its run.json records, its measured mean round length (a round lasts at least one
    Flower exchange, so it can be longer than the configured period) and how long its
    terminals' SuperNodes were busy in each exchange; `face` says where it ran."""
    round_s = measured.round_s if math.isfinite(measured.round_s) else measured.configured_round_s
    setting = replace(
        base,
        terminals=measured.terminals,
        round_period_s=round_s,
        poll_period_s=measured.poll_period_s,
        exchange_s=measured.exchange_s,
    )
    model = round_bytes(setting, framing)
    return {
        "face": "emulated" if measured.placement == "mininet" else "local",
        **measured.as_dict(),
        "federation_tx_bytes": measured.wire_up_bytes * measured.rounds,
        "model_payload_bytes": model.payload_bytes,
        "model_wire_up_bytes": model.sent_bytes,
        "model_wire_down_bytes": model.received_bytes,
        "model_upload_wire_ratio": model.upload_wire_ratio,
    }


def run_whole(
    face: str,
    topology: str,
    duration_s: float,
    run: FederatedSetting,
    run_dir: Path,
    progress: Callable[[str], None],
) -> FederatedBytes:
    """One whole federated run on `face`, reduced to its terminals' bytes."""
    if face == "emulated":
        return _emulated_run(topology, duration_s, run, run_dir, progress)
    return _local_run(topology, duration_s, run, run_dir)


def _local_run(
    topology: str, duration_s: float, run: FederatedSetting, run_dir: Path
) -> FederatedBytes:
    """One whole federated run on loopback, reduced to its terminals' bytes."""
    asyncio.run(_run_federated_locally(topology, duration_s, run, run_dir))
    return federated_bytes(run_dir)


async def _run_federated_locally(
    topology: str, duration_s: float, run: FederatedSetting, run_dir: Path
) -> None:
    from fl_crb.federation.deploy.federated_run import run_federated
    from fl_crb.federation.deploy.run_config import FederatedRunConfig, federated_parties
    from fl_crb.runtime.config import RunTarget

    target = RunTarget(topology, duration_s, terminals_override=run.terminals)
    run_config = FederatedRunConfig(
        parties=federated_parties(target, str(run_dir)),
        round_period_s=run.round_period_s,
        supernode_idle_poll_s=run.poll_period_s,
        uplink=run.uplink,
    )
    await run_federated(run_config)


def run_relay(
    topology: str, duration_s: float, run: FederatedSetting, run_dir: Path, base: OverheadSetting
) -> RelayBytes:
    """One whole relay-uplink run on loopback with every packet captured (root only),
    reduced to its terminals' link bytes and its edges' cloud-link bytes."""
    with LinkCapture("lo") as capture:
        asyncio.run(_run_federated_locally(topology, duration_s, run, run_dir))
    capture.check_complete()
    links = classify_links(capture.packets)
    write_csv(run_dir / "terminal-links.csv", link_rows(links))
    return relay_bytes(run_dir, links, base, duration_s)


def _emulated_run(
    topology: str,
    duration_s: float,
    run: FederatedSetting,
    run_dir: Path,
    progress: Callable[[str], None],
) -> FederatedBytes:
    """One whole federated run on a Mininet network of the study's topology (`fl-crb
    emulate`'s federated data plane, CRB-DRQN from weights pre-trained in simulation and
    cached like the command's), reduced to its terminals' bytes."""
    from emulation.data_plane import emulated_federation, emulation_parties
    from emulation.pretrain import PretrainConfig, pretrained_weights
    from emulation.run import EmulationConfig, run_emulation
    from fl_crb.policies.spec import Federated, WeightsFile
    from fl_crb.runtime.config import RunTarget

    pretrain = PretrainConfig()
    progress(
        f"CRB-DRQN weights pre-trained in simulation for {run.terminals} terminals "
        f"(cached in {pretrain.cache_dir}; trained now if this setting has none)"
    )
    weights = pretrained_weights(topology, run.terminals, None, pretrain).weights_path
    target = RunTarget(topology, duration_s, terminals_override=run.terminals)
    parties = emulation_parties(target, Federated(WeightsFile(str(weights))), str(run_dir))
    report = run_emulation(
        EmulationConfig(
            run=emulated_federation(
                parties,
                round_period_s=run.round_period_s,
                supernode_idle_poll_s=run.poll_period_s,
            ),
            notes=(f"overhead study run; CRB-DRQN starting from {weights}",),
        )
    )
    if report.summary["failed_parties"]:
        raise RuntimeError(
            f"emulated federated run {run_dir}: parties failed "
            f"({report.summary['failed_parties']}); see its report.md and logs/"
        )
    return federated_bytes(run_dir)


def faces_section(federated_rows: list[dict], face_reason: str) -> str:
    """summary.md's account of where each whole federated run ran and, for emulated runs,
    what the terminals' interfaces carried besides the federation."""
    lines = [
        "## Where the whole federated runs ran",
        "",
        f"{face_reason.capitalize()}. `local`: {FACE_COMMANDS['local']} (wire bytes through "
        "the WireMeter proxy). `emulated`: "
        f"{FACE_COMMANDS['emulated']}: the same coordinator, every process on its emulated "
        "host, uploads and weights crossing the shaped links, wire bytes through the same "
        "meter. The periods are those each run's run.json records; the model above uses "
        "them and the measured round length.",
        "",
        "On the emulated face the kernel's interface counters give a true-wire measure of "
        "everything a terminal sent over the whole run (interface_tx_bytes, per terminal): "
        "mostly the tasks it offloaded (offloaded_task_bytes), so it bounds the "
        "federation's cost rather than measuring it; federation_tx_bytes is what the "
        "terminal sent to the SuperLink over all rounds.",
        "",
        *markdown_table(
            federated_rows,
            [
                *RUN_COLUMNS,
                "federation_tx_bytes",
                "interface_tx_bytes",
                "offloaded_task_bytes",
            ],
            digits=8,
        ),
        "",
    ]
    return "\n".join(lines)
