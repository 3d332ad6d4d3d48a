"""`fl-crb study overhead`: bytes per terminal per round and per decision, and the 1.2 target.

Writes into the output folder:

    sealed-uploads.csv     measured sizes of real encoded + sealed uploads vs analytic
    flower-exchanges.csv   wire bytes of real Flower probe exchanges (WireMeter)
    framing.json           the framing fit (`overhead_model.Framing`) used by the sweeps
    federated.csv          measured bytes of whole federated runs, each with its face
    federated-runs/        their run folders
    relay.csv              the relay-uplink run: terminal links from captured packets, the
                           edges' cloud link from the accounting
    uplinks.csv            both uplinks modelled along the round period, with breakdowns
    model-vs-measured.csv  the model beside each whole run, per mode, with relative errors
    overhead.csv           the model per sweep point: terminals, n, round period, SuperNode
                           poll period, precision
    overhead.png           bytes per terminal per round, split, along each sweep
    summary.md             the verdict on the 1.2 target (the upload wire ratio at the
                           defaults, its floor, what meets it), the measured framing, the
                           sweeps, and the whole federated runs beside the model

Whole federated runs happen on the emulated (Mininet) or the local (loopback) face,
`OverheadStudyConfig.face`; `federated_runs` runs them and sets the model beside them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from fl_crb.policies.baselines import make_baseline
from fl_crb.studies.federated_runs import (
    FACE_COMMANDS,
    FederatedSetting,
    choose_face,
    faces_section,
    host_facts,
    model_beside_measured,
    run_relay,
    run_whole,
)
from fl_crb.studies.overhead_model import (
    DEFAULT_POLL_PERIOD_S,
    DEFAULT_ROUND_PERIOD_S,
    STOCK_POLL_PERIOD_S,
    Framing,
    OverheadSetting,
    round_bytes,
)
from fl_crb.studies.overhead_report import overhead_summary, plot_overhead
from fl_crb.studies.relay_report import headline, model_errors, uplink_rows, uplinks_section
from fl_crb.studies.report import write_csv
from fl_crb.studies.trajectory_source import collect_trajectories
from fl_crb.studies.wire_measurement import measure_flower_framing, measure_sealed_uploads
from fl_crb.topology import load_topology

RELAY_RUN = FederatedSetting(4, DEFAULT_ROUND_PERIOD_S, DEFAULT_POLL_PERIOD_S, "relay")
"""The study's relay-uplink run: as its first direct run, through the edges."""


@dataclass(frozen=True)
class OverheadStudyConfig:
    """Scale of the overhead study."""

    topology: str = "topologies/four-edge.yaml"
    """Topology whose C, E, p, δ and terminal naming set the defaults."""
    terminals: tuple[int, ...] = (5, 10, 25, 50, 100)
    """Sweep of D."""
    trajectory_lengths: tuple[int, ...] = (1, 2, 4, 8, 16)
    """Sweep of n."""
    round_periods_s: tuple[float, ...] = (2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
    """Sweep of the authority's round period R (= the weight refresh period)."""
    poll_periods_s: tuple[float, ...] = (0.05, 0.25, 1.0, 3.0)
    """Sweep of the SuperNodes' idle pull period q (3 s is Flower's own and the longest)."""
    precisions: tuple[str, ...] = ("float32", "float16")
    """Sweep of the numeric precision of uploads and weights."""
    measured_batches: tuple[int, ...] = (1, 8)
    """Envelopes per collect reply of the real sealed uploads measured."""
    sample_episodes: int = 2
    """Random-policy episodes (1000 arrival slots) providing the trajectories sealed."""
    probe_sizes: tuple[int, ...] = (0, 1000, 4000, 16000, 65000, 130000)
    """Payload sizes of the Flower probe exchanges (bytes)."""
    probe_rounds: int = 3
    """Repetitions of each probe size."""
    idle_s: float = 30.0
    """Seconds of idle polling measured."""
    federated_runs: tuple[FederatedSetting, ...] = (
        FederatedSetting(4, DEFAULT_ROUND_PERIOD_S, DEFAULT_POLL_PERIOD_S),
        FederatedSetting(8, DEFAULT_ROUND_PERIOD_S, DEFAULT_POLL_PERIOD_S),
        FederatedSetting(4, 20.0, STOCK_POLL_PERIOD_S),
    )
    """Whole federated runs measured (every terminal is a SuperNode and a party process on
    one machine, on either face, so counts stay small on a 2-core machine)."""
    federated_duration_s: float = 90.0
    """Seconds of arrivals of each federated run."""
    face: str = "auto"
    """Where the whole federated runs happen (`FACES`): emulated, local, or auto."""
    relay_run: FederatedSetting | None = RELAY_RUN
    """The whole relay-uplink run whose terminal links are captured (local face, root)."""
    defaults: dict = field(default_factory=dict)
    """OverheadSetting fields to override at every sweep point."""


FULL = OverheadStudyConfig()
"""The study as reported."""

QUICK = OverheadStudyConfig(
    trajectory_lengths=(1, 4, 16),
    round_periods_s=(2.0, 60.0, 1800.0),
    poll_periods_s=(0.25, 3.0),
    measured_batches=(1, 8),
    sample_episodes=1,
    probe_sizes=(0, 4000, 40000),
    probe_rounds=2,
    idle_s=10.0,
    federated_runs=(FederatedSetting(4, DEFAULT_ROUND_PERIOD_S, DEFAULT_POLL_PERIOD_S),),
    federated_duration_s=30.0,
)
"""A few minutes: fewer sweep points, one probe round."""


def base_setting(config: OverheadStudyConfig) -> OverheadSetting:
    """The default setting: the topology's C, E, p, δ and terminal names."""
    topology = load_topology(config.topology)
    params = topology.mec_params()
    arrays = params.per_terminal(topology.terminal_count)
    if len(set(arrays.task_probability.tolist())) != 1:
        raise ValueError(
            f"{config.topology}: terminals have different task probabilities; the overhead "
            "model takes one p (use a topology without workload overrides)"
        )
    prefix = topology.terminal_names[0].rstrip("0123456789")
    setting = OverheadSetting(
        terminals=topology.terminal_count,
        edges=params.edges,
        history_slots=params.history_slots,
        task_probability=float(arrays.task_probability[0]),
        slot_s=params.slot_s,
        terminal_prefix=prefix,
    )
    return replace(setting, **config.defaults)


def sweep(base: OverheadSetting, config: OverheadStudyConfig, framing: Framing) -> list[dict]:
    """The model at every sweep point, one row each."""
    sweeps = {
        "terminals": config.terminals,
        "trajectory_length": config.trajectory_lengths,
        "round_period_s": config.round_periods_s,
        "poll_period_s": config.poll_periods_s,
        "precision": config.precisions,
    }
    rows = []
    for name, values in sweeps.items():
        for value in values:
            setting = replace(base, **{name: value})
            result = round_bytes(setting, framing)
            row = {"sweep": name, "value": value, **asdict(setting), **result.as_dict()}
            row["sent_bytes_per_decision"] = result.sent_bytes / result.decisions
            row["bytes_per_decision"] = (
                result.sent_bytes + result.received_bytes
            ) / result.decisions
            row["authority_bytes_per_round"] = (
                result.sent_bytes + result.received_bytes
            ) * setting.terminals
            rows.append(row)
    return rows


def run_overhead_study(
    out_dir: str | Path, config: OverheadStudyConfig, progress: Callable[[str], None] = print
) -> Path:
    """Measure, model, plot and summarise; returns the summary's path."""
    out = Path(out_dir)
    face, face_reason = choose_face(config.face, host_facts())
    earlier = out / "federated-runs"
    if config.federated_runs and earlier.exists() and any(earlier.iterdir()):
        raise ValueError(f"{earlier} holds earlier federated runs; give a new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    base = base_setting(config)
    topology = load_topology(config.topology)
    params = topology.mec_params()
    sealed_rows = []
    for n in sorted({base.trajectory_length, *config.trajectory_lengths}):
        progress(f"sealing real uploads: n = {n}")
        policy = make_baseline("random", params, topology.terminal_count, 0)
        data = collect_trajectories(
            params, topology.terminal_count, policy, config.sample_episodes, 1000, n
        )
        for precision in config.precisions:
            for batch in config.measured_batches:
                uploads = measure_sealed_uploads(data, batch, precision, base.terminal_prefix)
                sealed_rows += [{"n": n, **u.as_dict()} for u in uploads]
    write_csv(out / "sealed-uploads.csv", sealed_rows)

    progress("Flower probe exchanges (real SuperLink and SuperNode, WireMeter)")
    framing, exchanges = measure_flower_framing(
        out / "flower-run", list(config.probe_sizes), config.probe_rounds, config.idle_s
    )
    write_csv(out / "flower-exchanges.csv", [e.as_dict() for e in exchanges])
    (out / "framing.json").write_text(json.dumps(asdict(framing), indent=1), encoding="utf-8")

    federated_rows = []
    if config.federated_runs:
        progress(f"whole federated runs: {face_reason}")
    for run in config.federated_runs:
        progress(
            f"federated run ({face}: {FACE_COMMANDS[face]}): {run.terminals} terminals, "
            f"rounds every {run.round_period_s:g} s, pulls every {run.poll_period_s:g} s"
        )
        name = (
            f"{face}-terminals-{run.terminals}-round-{run.round_period_s:g}s-"
            f"poll-{run.poll_period_s:g}s"
        )
        run_dir = out / "federated-runs" / name
        measured = run_whole(
            face, config.topology, config.federated_duration_s, run, run_dir, progress
        )
        federated_rows.append(model_beside_measured(base, framing, measured))
    if federated_rows:
        write_csv(out / "federated.csv", federated_rows)
    relay, relay_missing = None, "no relay run configured"
    if config.relay_run is not None and os.geteuid() != 0:
        relay_missing = f"capturing the terminal links needs root (running as uid {os.geteuid()})"
    elif config.relay_run is not None:
        run = config.relay_run
        progress(
            f"relay-uplink run (local face, packets on loopback captured): {run.terminals} "
            f"terminals, rounds every {run.round_period_s:g} s, pulls every {run.poll_period_s:g} s"
        )
        name = f"local-relay-terminals-{run.terminals}-round-{run.round_period_s:g}s"
        relay = run_relay(
            config.topology, config.federated_duration_s, run, out / "federated-runs" / name, base
        )
        write_csv(out / "relay.csv", [relay.as_dict()])
    uplinks = uplink_rows(base, framing, config.round_periods_s, (STOCK_POLL_PERIOD_S,))
    write_csv(out / "uplinks.csv", uplinks)
    errors = model_errors(base, framing, relay, federated_rows)
    write_csv(out / "model-vs-measured.csv", errors)
    for line in headline(base, framing, relay):
        progress(line)
    for row in errors:
        progress(
            f"model vs measured, {row['quantity']}: {row['model']:.4g} vs {row['measured']:.4g} "
            f"({100 * row['relative_error']:+.1f}%)"
        )

    rows = sweep(base, config, framing)
    write_csv(out / "overhead.csv", rows)
    plot_overhead(out / "overhead.png", rows, base, framing)
    summary = out / "summary.md"
    text = overhead_summary(config, base, framing, sealed_rows, rows, federated_rows)
    text += uplinks_section(base, framing, uplinks, errors, relay, relay_missing)
    if federated_rows:
        text += faces_section(federated_rows, face_reason)
    summary.write_text(text, encoding="utf-8")
    return summary
