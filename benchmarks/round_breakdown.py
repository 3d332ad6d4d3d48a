"""Where a federated round's time goes: a run folder's per-message timings, part by part.

Reads a run folder of `fl-crb emulate` or `fl-crb federate --local` and prints, per node
kind (terminal: `query.collect`, edge: `query.train`), the median and 90th percentile of
each part of a message's round trip, from the timestamps the parties log:

- the authority (authority/messages.jsonl): when it pushed each message and when the
  pull that returned its reply came back; and the ClientApp's `timing` record in each
  reply: when its process started, when the handler began and ended;
- each SuperNode (flower/logs/node-<name>.log, timestamped by the `fast_supernode`
  accelerator): when it pulled the message ("Receiving"), had its content ("Received
  successfully"), began sending the reply ("Sending") and had sent it ("Sent
  successfully").

The parts, in order: `to_node` (push → the SuperNode pulls it: the node's idle poll and
the SuperLink), `to_clientapp` (→ the ClientApp process starts: the SuperExec's task
poll or wake-up, and the fork), `clientapp_setup` (→ its handler runs: it fetches the
message from its SuperNode, which may still be pulling its content from the SuperLink:
`(download)`, which overlaps), `handler`, `to_supernode` (→ the SuperNode sends the
reply: the reply's hand-over and the SuperNode's look for it), `upload`, and
`to_authority` (→ the authority's pull returns it). Without SuperNode timestamps (stock
Flower) the parts around the SuperNode merge (`push_to_clientapp`, `handler_to_authority`).

It also prints the rounds (count, mean and median exchange, missed nodes), the authority's
own work per round (rounds.jsonl `authority`: wall seconds per phase, its CPU seconds), and,
given the samples of `benchmarks/cpu_by_role.py` taken during the run (--cpu), the CPU
per role during the rounds' exchanges and during the run's slots (its epoch to its last
arrival slot's end: what the slot clocks compete for), with each role's CPU per process
and its kernel share, and the machine's busy share.

    .venv/bin/python benchmarks/round_breakdown.py RUN_FOLDER [--cpu CPU.jsonl] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from datetime import datetime
from pathlib import Path

KINDS = {"collect": "terminal", "train": "edge"}
"""Request action → node kind."""
NODE_PARTS = (
    ("to_node", "pushed_unix_s", "receiving_unix_s"),
    ("to_clientapp", "receiving_unix_s", "process-start-unix-s"),
    ("clientapp_setup", "process-start-unix-s", "handler-unix-s"),
    ("handler", "handler-unix-s", "handler-end-unix-s"),
    ("to_supernode", "handler-end-unix-s", "sending_unix_s"),
    ("upload", "sending_unix_s", "sent_unix_s"),
    ("to_authority", "sent_unix_s", "pulled_unix_s"),
    ("(download)", "receiving_unix_s", "received_unix_s"),
)
"""The parts of a message's round trip: (name, from timestamp, to timestamp). The first
seven follow each other; "(download)" overlaps them: the SuperNode creates the ClientApp's
task before it pulls the message's content, so the ClientApp may start (and wait in its
setup) while the content is still coming."""
STOCK_PARTS = (
    ("push_to_clientapp", "pushed_unix_s", "process-start-unix-s"),
    ("clientapp_setup", "process-start-unix-s", "handler-unix-s"),
    ("handler", "handler-unix-s", "handler-end-unix-s"),
    ("handler_to_authority", "handler-end-unix-s", "pulled_unix_s"),
)
"""The parts when the SuperNode's log has no timestamps."""
LOG_LINE = re.compile(
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}).*?"
    r"(Receiving: \S+ message \(ID: ([0-9a-f]+)\)|Received successfully|"
    r"Sending: \S+ message \(ID: ([0-9a-f]+)\)|Sent successfully)"
)


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def supernode_times(log: Path) -> dict[str, dict[str, float]]:
    """Message id (request or reply) → its SuperNode's timestamps in `log`: for a request
    when it was pulled and its content held, for a reply when its sending began and
    ended (Flower's log, timestamped by the `fast_supernode` accelerator)."""
    times: dict[str, dict[str, float]] = {}
    current: dict[str, float] | None = None
    for line in log.open(encoding="utf-8", errors="replace"):
        match = LOG_LINE.search(line)
        if match is None:
            continue
        stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        what = match.group(2)
        if match.group(3):
            current = times.setdefault(match.group(3), {"receiving_unix_s": stamp})
        elif match.group(4):
            current = times.setdefault(match.group(4), {"sending_unix_s": stamp})
        elif current is not None:
            key = "received_unix_s" if what.startswith("Received") else "sent_unix_s"
            current.setdefault(key, stamp)
    return times


def message_records(run: Path) -> list[dict]:
    """Every answered collect and train of the run, with all the timestamps known for it."""
    logs = run / "flower" / "logs"
    node_times: dict[str, dict[str, dict[str, float]]] = {}
    records = []
    for line in read_jsonl(run / "authority" / "messages.jsonl"):
        for reply in line["replies"]:
            if reply["action"] not in KINDS or reply["error"]:
                continue
            node = reply["node"]
            if node not in node_times:
                log = logs / f"node-{node}.log"
                node_times[node] = supernode_times(log) if log.exists() else {}
            record = {
                **reply,
                "kind": KINDS[reply["action"]],
                "late": line["round"] != reply["sent_round"],
            }
            record.update(node_times[node].get(reply["message_id"], {}))
            record.update(node_times[node].get(reply["reply_id"], {}))
            records.append(record)
    return records


def parts_of(record: dict) -> dict[str, float]:
    """The record's round trip split into parts (the SuperNode's, when it logged them)."""
    parts = NODE_PARTS if "receiving_unix_s" in record and "sent_unix_s" in record else STOCK_PARTS
    split = {
        name: record[end] - record[start]
        for name, start, end in parts
        if start in record and end in record
    }
    split["total"] = record["pulled_unix_s"] - record["pushed_unix_s"]
    return split


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {
        "n": len(values),
        "median": statistics.median(ordered),
        "mean": statistics.fmean(ordered),
        "p90": p90,
    }


def breakdown(run: Path, cpu_path: Path | None) -> dict:
    """Everything the report prints, as JSON-ready data."""
    rounds = read_jsonl(run / "authority" / "rounds.jsonl")
    if not rounds:
        raise SystemExit(f"{run}/authority/rounds.jsonl: no rounds (is {run} a federated run?)")
    per_kind: dict[str, dict[str, list[float]]] = {}
    for record in message_records(run):
        if record["late"]:
            continue  # a late reply waited for the next round's pull: not one round trip
        kind = per_kind.setdefault(record["kind"], {})
        for part, seconds in parts_of(record).items():
            kind.setdefault(part, []).append(seconds)
    exchanges = [r["exchange_s"] for r in rounds]
    work: dict[str, list[float]] = {}
    for r in rounds:
        for phase, seconds in r.get("authority", {}).get("wall_s", {}).items():
            work.setdefault(phase, []).append(seconds)
        if "authority" in r:
            work.setdefault("cpu", []).append(r["authority"]["cpu_s"])
    result = {
        "run": str(run),
        "rounds": {
            "count": len(rounds),
            "exchange_mean_s": statistics.fmean(exchanges),
            "exchange_median_s": statistics.median(exchanges),
            "round_starts_span_s": rounds[-1]["start_unix_s"] - rounds[0]["start_unix_s"],
            "missed_node_rounds": sum(len(r["missed"]) for r in rounds),
            "late_replies": sum(len(r["late"]) for r in rounds),
        },
        "parts_s": {
            kind: {part: quantiles(v) for part, v in parts.items()}
            for kind, parts in per_kind.items()
        },
        "authority_s": {phase: quantiles(v) for phase, v in work.items()},
    }
    if cpu_path is not None:
        samples = read_jsonl(cpu_path)
        windows = [(r["start_unix_s"], r["start_unix_s"] + r["exchange_s"] + 1.0) for r in rounds]
        result["cpu"] = cpu_in_windows(samples, windows)
        slots = slot_window(run)
        if slots is not None:
            result["cpu_during_slots"] = cpu_in_windows(samples, [slots])
    return result


def slot_window(run: Path) -> tuple[float, float] | None:
    """(start, end) Unix times of a run's slots: its epoch to its last arrival slot's end;
    None when the run folder does not say (no run.json epoch or summary.json yet)."""
    try:
        epoch = json.loads((run / "run.json").read_text())["epoch_unix_s"]
        summary = json.loads((run / "summary.json").read_text())
        return epoch, epoch + summary["arrival_slots"] * summary["slot_s"]
    except (OSError, KeyError, ValueError):
        return None


def cpu_in_windows(samples: list[dict], windows: list[tuple[float, float]]) -> dict:
    """CPU per role (cores, i.e. CPU seconds per second) over the samples that end inside
    one of `windows`, its kernel part, the most processes of each role seen, and the
    machine's busy share then. A sample covers `elapsed_s` (older samples: `interval_s`)."""
    inside = [s for s in samples if any(a <= s["unix_s"] <= b for a, b in windows)]
    if not inside:
        return {"samples": 0}
    seconds = sum(s.get("elapsed_s", s["interval_s"]) for s in inside)
    roles: dict[str, float] = {}
    system: dict[str, float] = {}
    counts: dict[str, int] = {}
    for s in inside:
        for role, cpu_s in s["cpu_s"].items():
            roles[role] = roles.get(role, 0.0) + cpu_s
        for role, cpu_s in s.get("system_s", {}).items():
            system[role] = system.get(role, 0.0) + cpu_s
        for role, count in s["processes"].items():
            counts[role] = max(counts.get(role, 0), count)
    return {
        "samples": len(inside),
        "seconds": round(seconds, 1),
        "busy_share": statistics.fmean(s["busy_share"] for s in inside),
        "cores_by_role": {
            role: round(cpu_s / seconds, 3)
            for role, cpu_s in sorted(roles.items(), key=lambda item: -item[1])
        },
        "system_share_by_role": {
            role: round(system.get(role, 0.0) / cpu_s, 2)
            for role, cpu_s in roles.items()
            if cpu_s and system  # older samples carry no system_s
        },
        "processes": counts,
    }


def print_report(result: dict) -> None:
    rounds = result["rounds"]
    print(f"run {result['run']}")
    print(
        f"rounds {rounds['count']}  exchange mean {rounds['exchange_mean_s']:.2f} s  "
        f"median {rounds['exchange_median_s']:.2f} s  missed node-rounds "
        f"{rounds['missed_node_rounds']}  late replies {rounds['late_replies']}"
    )
    for kind, parts in result["parts_s"].items():
        print(f"\n{kind} messages answered in their round (n={parts['total']['n']}), seconds:")
        print(f"  {'part':<22}{'median':>9}{'mean':>9}{'p90':>9}")
        for part, q in parts.items():
            print(f"  {part:<22}{q['median']:9.3f}{q['mean']:9.3f}{q['p90']:9.3f}")
    print("\nthe authority's own work per round, seconds (wall per phase; cpu: its process):")
    for phase, q in result["authority_s"].items():
        print(f"  {phase:<22}{q['median']:9.3f}{q['mean']:9.3f}{q['p90']:9.3f}")
    for key, when in (("cpu", "the exchanges"), ("cpu_during_slots", "the slots")):
        cpu = result.get(key)
        if cpu and cpu.get("samples"):
            print_cpu(cpu, when)


def print_cpu(cpu: dict, when: str) -> None:
    print(
        f"\nCPU during {when} ({cpu['samples']} samples, {cpu['seconds']} s; machine busy "
        f"{cpu['busy_share'] * 100:.0f}% of 2 cores), cores per role:"
    )
    print(f"  {'role':<18}{'cores':>7}{'processes':>11}{'ms/s each':>11}{'kernel':>8}")
    for role, cores in cpu["cores_by_role"].items():
        if cores < 0.001:
            continue
        count = cpu["processes"].get(role, 0)
        each = f"{cores / count * 1e3:11.1f}" if count else f"{'':>11}"
        kernel = cpu["system_share_by_role"].get(role)
        share = "" if kernel is None else f"{kernel * 100:7.0f}%"
        print(f"  {role:<18}{cores:7.3f}{count:11d}{each}{share}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="run folder (fl-crb emulate / federate --local)")
    parser.add_argument("--cpu", type=Path, help="samples of benchmarks/cpu_by_role.py")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    result = breakdown(args.run, args.cpu)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_report(result)


if __name__ == "__main__":
    main()
