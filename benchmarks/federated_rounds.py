"""Round latency of the federated face on loopback, against Flower's bare message round trip.

Runs `run_federated` (learners, SuperLink, SuperNodes, authority, live terminals and
edges) on a topology for --duration, and reads the authority's rounds: the time of each
round's single exchange (push collect/train to every node, pull every reply). Then, in
the same invocation, starts a Flower deployment with the same nodes and settings (idle
polls, warm ClientApps, wire meter) and measures the app's probe mode: an empty message
to every node and every reply back, `launcher.probe`. The ratio says what the federated
round (real payloads, mailbox I/O, decryption, validation, the durable pool's fsyncs)
costs beyond Flower's own round trip.

    .venv/bin/python benchmarks/federated_rounds.py [--topology topologies/two-edge.yaml]
        [--duration 40] [--round-period 1] [--probe-rounds 20]
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


def describe(name: str, values: list[float]) -> str:
    return (
        f"{name:<34} n={len(values):3d}  median {statistics.median(values):6.3f} s  "
        f"mean {statistics.mean(values):6.3f} s  max {max(values):6.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--topology", default="topologies/two-edge.yaml")
    parser.add_argument("--duration", type=float, default=40.0, help="seconds of arrivals")
    parser.add_argument("--round-period", type=float, default=1.0)
    parser.add_argument("--probe-rounds", type=int, default=20)
    args = parser.parse_args()
    topology = load_topology(args.topology)
    print(f"load average before: {os.getloadavg()[0]:.1f} (2-core machine, shared)")
    with tempfile.TemporaryDirectory(prefix="fl-crb-federated-bench-") as folder:
        config = FederatedRunConfig(
            federated_parties(RunTarget(args.topology, args.duration), str(Path(folder) / "run")),
            method=MethodConfig(min_pool_trajectories=8),
            round_period_s=args.round_period,
        )
        summary = asyncio.run(run_federated(config))
        rounds = [
            json.loads(line)
            for line in (Path(folder) / "run" / "authority" / "rounds.jsonl").open()
        ]
        nodes = tuple(NodeSpec(e, "edge") for e in topology.edge_names) + tuple(
            NodeSpec(t, "terminal") for t in topology.terminal_names
        )
        launch = LaunchConfig(
            Path(folder) / "probe",
            nodes,
            superexec_poll_s=config.superexec_poll_s,
            supernode_idle_poll_s=config.supernode_idle_poll_s,
            warm_clientapps=True,
            meter_wire=True,
        )
        with LocalFederation(launch) as federation:
            probe = federation.probe("0:0", args.probe_rounds)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    federation_summary = summary["federation"]
    print(
        f"\n{topology.name}: {len(nodes)} SuperNodes, {federation_summary['rounds']} rounds, "
        f"{federation_summary['uploads_accepted']} trajectories accepted, edge versions "
        f"{federation_summary['edge_versions']}"
    )
    exchanges = [r["exchange_s"] for r in rounds]
    steady = exchanges[1:]  # the first round also forks each node's first ClientApp
    bare = [e["total_s"] for e in probe["exchanges"] if e["message_type"] == "query.probe"]
    print(describe("federated round exchange (all)", exchanges))
    print(describe("federated round exchange (2nd on)", steady))
    print(describe("Flower bare round trip (probe)", bare))
    ratio = statistics.mean(steady) / statistics.mean(bare)
    print(f"\nmean federated round / mean bare round trip: {ratio:.2f}")
    collect = federation_summary["bytes"].get("query.collect", {})
    train = federation_summary["bytes"].get("query.train", {})
    print(f"bytes over the run: collect {collect}\n                    train   {train}")


if __name__ == "__main__":
    main()
