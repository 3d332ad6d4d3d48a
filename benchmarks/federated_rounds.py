"""Round latency of the federated face on loopback, against Flower's bare message round trip.

Runs `run_federated` (learners, SuperLink, SuperNodes, authority, live terminals and
edges) on a topology for --duration, and reads the authority's rounds: the time of each
round's single exchange (push collect/train to every node, pull every reply). Then, in
the same invocation, starts a Flower deployment with the same nodes and settings (idle
polls, warm ClientApps, wire meter) and measures the app's probe mode: an empty message
to every node and every reply back, `launcher.probe`. The ratio says what the federated
round (real payloads, mailbox I/O, decryption, validation, the durable pool's fsyncs)
costs beyond Flower's own round trip.

--accelerators says which Flower path runs: `on` (the default, as `fl-crb federate`:
`fast_supernode`'s short idle poll and `warm_executor`'s forked ClientApps, where the
installed Flower is the one they patch), `off` (Flower as shipped: `--no-accelerators`),
or `both`, one after the other, each with its own bare round trip, and then how much
faster the accelerated path is.

    .venv/bin/python benchmarks/federated_rounds.py [--topology topologies/two-edge.yaml]
        [--duration 40] [--round-period 1] [--probe-rounds 20] [--accelerators on|off|both]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
from pathlib import Path

from fl_crb.federation.deploy.federated_run import run_federated
from fl_crb.federation.deploy.launch_config import LaunchConfig, NodeSpec
from fl_crb.federation.deploy.launcher import LocalFederation
from fl_crb.federation.deploy.run_config import FederatedRunConfig, federated_parties
from fl_crb.learn.method_config import MethodConfig
from fl_crb.runtime.config import RunTarget
from fl_crb.topology import load_topology

PATHS = {"on": (True,), "off": (False,), "both": (True, False)}
"""--accelerators → the `FederatedRunConfig.accelerators` values to measure, in order."""


def describe(name: str, values: list[float]) -> str:
    return (
        f"{name:<34} n={len(values):3d}  median {statistics.median(values):6.3f} s  "
        f"mean {statistics.mean(values):6.3f} s  max {max(values):6.3f} s"
    )


def measure(args: argparse.Namespace, folder: Path, accelerators: bool) -> dict:
    """One federated run and one bare probe, both on the path `accelerators` selects."""
    topology = load_topology(args.topology)
    config = FederatedRunConfig(
        federated_parties(RunTarget(args.topology, args.duration), str(folder / "run")),
        method=MethodConfig(min_pool_trajectories=8),
        round_period_s=args.round_period,
        accelerators=accelerators,
    )
    summary = asyncio.run(run_federated(config))
    rounds = [json.loads(line) for line in (folder / "run" / "authority" / "rounds.jsonl").open()]
    nodes = tuple(NodeSpec(e, "edge") for e in topology.edge_names) + tuple(
        NodeSpec(t, "terminal") for t in topology.terminal_names
    )
    launch = LaunchConfig(  # as `federated_run._start_flower` starts it
        folder / "probe",
        nodes,
        superexec_poll_s=config.superexec_poll_s,
        supernode_idle_poll_s=config.supernode_idle_poll_s,
        warm_clientapps=True,
        accelerators=accelerators,
        meter_wire=True,
    )
    with LocalFederation(launch) as federation:
        probe = federation.probe("0:0", args.probe_rounds)
        flower = federation.flower_record
    exchanges = [r["exchange_s"] for r in rounds]
    return {
        "summary": summary["federation"],
        "flower": flower,
        "nodes": len(nodes),
        "exchanges": exchanges,
        "steady": exchanges[1:],  # the first round also starts each node's first ClientApp
        "bare": [e["total_s"] for e in probe["exchanges"] if e["message_type"] == "query.probe"],
    }


def report(label: str, data: dict) -> None:
    """One path's figures: rounds, uploads, exchange times, the ratio to the bare trip."""
    federation, flower = data["summary"], data["flower"]
    running = ", ".join(flower["accelerators"]) or "none (stock Flower)"
    print(
        f"\n{label}: flwr {flower['version']}, accelerators {running}, SuperNode idle poll "
        f"{flower['supernode_idle_poll_s']:g} s"
    )
    print(
        f"  {data['nodes']} SuperNodes, {federation['rounds']} rounds, "
        f"{federation['uploads_accepted']} trajectories accepted, edge versions "
        f"{federation['edge_versions']}"
    )
    print("  " + describe("federated round exchange (all)", data["exchanges"]))
    print("  " + describe("federated round exchange (2nd on)", data["steady"]))
    print("  " + describe("Flower bare round trip (probe)", data["bare"]))
    ratio = statistics.mean(data["steady"]) / statistics.mean(data["bare"])
    print(f"  mean federated round / mean bare round trip: {ratio:.2f}")
    collect = federation["bytes"].get("query.collect", {})
    train = federation["bytes"].get("query.train", {})
    print(f"  bytes over the run: collect {collect}\n                      train   {train}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--topology", default="topologies/two-edge.yaml")
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of arrivals")
    parser.add_argument("--round-period", type=float, default=1.0)
    parser.add_argument("--probe-rounds", type=int, default=20)
    parser.add_argument(
        "--accelerators",
        choices=tuple(PATHS),
        default="on",
        help="Flower path: on (fast_supernode + warm_executor), off (Flower as shipped), both",
    )
    args = parser.parse_args()
    measured: dict[bool, dict] = {}
    with tempfile.TemporaryDirectory(prefix="fl-crb-federated-bench-") as folder:
        for accelerators in PATHS[args.accelerators]:
            name = "on" if accelerators else "off"
            print(f"load average before accelerators {name}: {os.getloadavg()[0]:.1f} (shared)")
            measured[accelerators] = measure(args, Path(folder) / name, accelerators)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    for accelerators, data in measured.items():
        report(f"accelerators {'on' if accelerators else 'off'}", data)
    if len(measured) == 2:
        on, off = measured[True], measured[False]
        bare_off = statistics.mean(off["bare"])
        print(f"\nagainst stock Flower's bare round trip ({bare_off:.3f} s, mean):")
        for label, data in (("on", on), ("off", off)):
            mean = statistics.mean(data["steady"])
            ratio = mean / bare_off
            print(f"  federated round, accelerators {label:<3}: {mean:6.3f} s = {ratio:.2f}×")
        print(
            "accelerators speed-up: federated round "
            f"{statistics.mean(off['steady']) / statistics.mean(on['steady']):.1f}×, "
            f"bare round trip {bare_off / statistics.mean(on['bare']):.1f}×"
        )


if __name__ == "__main__":
    main()
