"""Flower's bare message round trip on loopback, under four deployment settings.

Starts a real SuperLink and SuperNodes (2 edges + 6 terminals by default, the issue's
local deployment), runs the app's probe mode, and prints for each setting the median
and mean time for the ServerApp to push one `query.probe` message to every node and
pull every reply, with empty payloads and with 5 MB replies and requests. Ratios are
against the `tuned` setting's empty round trip, measured in the same run: the
reference the federated rounds are compared with.

Settings:
  flower-defaults  Flower as shipped (SuperExec polls every 1 s, SuperNode idles 3 s),
                   but with the app's own push/pull loop (0.05 s) instead of the 3 s one
  short-polls      SuperExec poll 0.25 s, SuperNode idle poll 0.25 s (`fast_supernode`);
                   0.05 s polls saturate a 2-core machine once 8 nodes poll at 20 Hz
  tuned            short polls + ClientApps forked from a warm process (`warm_executor`)
  tuned+meter      tuned, with the `WireMeter` proxy counting bytes (its overhead)
  tuned-1s, -2s    tuned with 1 s or 2 s polls: less CPU on idle polls, a longer wait

The accelerators run only with the Flower they patch (`accelerators.SUPPORTED_FLOWER`);
with another, every setting runs stock Flower, as the line after each setting says. For
the federated round with the accelerators on and off, see `federated_rounds.py
--accelerators both`.

Also prints the wire bytes per node of one exchange, as the meter counted them, next to
Flower's own per-run "network-traffic" account.

    .venv/bin/python benchmarks/flower_round_trip.py [--terminals 6] [--edges 2] [--rounds 10]
        [--settings tuned,...] [--empty-only]

`--settings` measures only the named settings (the reference, `tuned`, is always among
them) and `--empty-only` only the empty exchange: what a round of fl-crb's small
messages costs at four-edge's 29 nodes, without the minutes the 5 MB payloads take there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from fl_crb.federation.deploy.launch_config import LaunchConfig, NodeSpec
from fl_crb.federation.deploy.launcher import LocalFederation

SHORT = {"superexec_poll_s": 0.25, "supernode_idle_poll_s": 0.25}
SETTINGS = {
    "flower-defaults": {"superexec_poll_s": 1.0, "supernode_idle_poll_s": None},
    "short-polls": SHORT,
    "tuned": {**SHORT, "warm_clientapps": True},
    "tuned+meter": {**SHORT, "warm_clientapps": True, "meter_wire": True},
    **{
        f"tuned-{poll_s}s": {
            "superexec_poll_s": float(poll_s),
            "supernode_idle_poll_s": float(poll_s),
            "warm_clientapps": True,
        }
        for poll_s in (1, 2)
    },
}
REFERENCE = ("tuned", "0:0")
BIG = 5_000_000


def measure(
    run_dir: Path, nodes: tuple[NodeSpec, ...], setting: dict, rounds: int, plan: str
) -> dict:
    """Probe timings per plan entry ("request:reply") for one deployment setting."""
    config = LaunchConfig(run_dir, nodes, **{"meter_wire": False, **setting})
    with LocalFederation(config) as federation:
        result = federation.probe(plan, rounds)
        flower = federation.flower_record
    timings: dict[str, list[float]] = {}
    for exchange in result["exchanges"]:
        if exchange["message_type"] == "query.probe":
            key = f"{exchange['request_bytes']}:{exchange['reply_bytes']}"
            timings.setdefault(key, []).append(exchange["total_s"])
    return {"timings": timings, "result": result, "flower": flower}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--terminals", type=int, default=6)
    parser.add_argument("--edges", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10, help="exchanges per payload size")
    parser.add_argument(
        "--settings",
        default=",".join(SETTINGS),
        help=f"comma-separated settings to measure, of {', '.join(SETTINGS)}",
    )
    parser.add_argument("--empty-only", action="store_true", help="measure only the empty exchange")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.settings.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SETTINGS))
    if unknown:
        parser.error(f"--settings: unknown {', '.join(unknown)}; choose of {', '.join(SETTINGS)}")
    if REFERENCE[0] not in chosen:
        chosen.append(REFERENCE[0])
    plan = "0:0" if args.empty_only else f"0:0,0:{BIG},{BIG}:0"
    nodes = tuple(NodeSpec(f"e{i}", "edge") for i in range(1, args.edges + 1)) + tuple(
        NodeSpec(f"t{i}", "terminal") for i in range(1, args.terminals + 1)
    )
    print(
        f"{len(nodes)} SuperNodes ({args.edges} edges, {args.terminals} terminals), "
        f"{args.rounds} exchanges per payload; times: push to every node + all replies"
    )
    print(f"load average before: {os.getloadavg()[0]:.1f} (other work on this machine slows all)")
    measured = {}
    with tempfile.TemporaryDirectory(prefix="fl-crb-flower-bench-") as folder:
        for name in chosen:
            start = time.monotonic()
            measured[name] = measure(Path(folder) / name, nodes, SETTINGS[name], args.rounds, plan)
            running = ", ".join(measured[name]["flower"]["accelerators"]) or "none"
            print(
                f"  {name}: measured in {time.monotonic() - start:.0f} s (accelerators: {running})"
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    reference = statistics.median(measured[REFERENCE[0]]["timings"][REFERENCE[1]])
    print(f"\nreference: {REFERENCE[0]} empty round trip, median {reference:.3f} s\n")
    print(
        f"{'setting':<16} {'payload':<14} {'median s':>9} {'mean s':>8} {'max s':>7} {'× ref':>6}"
    )
    for name, data in measured.items():
        for key, values in data["timings"].items():
            request, reply = (int(part) for part in key.split(":"))
            label = (
                "empty"
                if not request and not reply
                else ("5 MB reply" if reply else "5 MB request")
            )
            median = statistics.median(values)
            print(
                f"{name:<16} {label:<14} {median:9.3f} {statistics.mean(values):8.3f} "
                f"{max(values):7.3f} {median / reference:6.2f}"
            )
    if "tuned+meter" not in measured:
        return
    metered = measured["tuned+meter"]["result"]
    empty = next(e for e in metered["exchanges"] if e["message_type"] == "query.probe")
    print("\nwire bytes of one empty exchange, per node (up = node → SuperLink), HTTP included:")
    for node, labels in sorted(empty["wire"].items()):
        up = sum(counter["up_bytes"] for counter in labels.values())
        down = sum(counter["down_bytes"] for counter in labels.values())
        requests = sum(counter["requests"] for counter in labels.values())
        print(f"  {node}: up {up} B, down {down} B in {requests} HTTP requests")
    print(f"Flower's own account of the metered run: {metered['run'].flower_traffic}")


if __name__ == "__main__":
    main()
