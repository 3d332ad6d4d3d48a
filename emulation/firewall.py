"""The run's iptables rules: in-kernel loss and the hand-off to the delay daemon.

Bridged IPv4 traffic passes iptables here (`net.bridge.bridge-nf-call-iptables = 1`), so
rules in the root namespace can act on one bridge port and one direction:

- a packet going *up* (from a host into its switch) is matched in mangle PREROUTING
  with `-m physdev --physdev-in <port>`;
- a packet going *down* (from the switch to a host) in mangle POSTROUTING with
  `--physdev-out <port>`.

Every rule of a run lives in its two chains, `FLCRB<slot>-UP` and `FLCRB<slot>-DOWN`,
entered only from the run's own bridges, so removing the run removes exactly its rules
and nothing else on the machine. Per port and direction a chain holds at most a loss
rule (`-m statistic --mode random --probability p -j DROP`, dropped at the bridge, never
on the sender's own output where TCP would see it) followed by one NFQUEUE rule. An
accept verdict ends the hook, so there is exactly one NFQUEUE rule per hook on any
packet's path. No rule uses `--queue-bypass`: if the daemon is gone the kernel drops the
packets rather than letting them through undelayed.

A fault schedule (`emulation.faults`) edits these chains while the run goes on
(`edit`): DROP rules at the top of a chain cut a link or partition hosts (`drop_spec`),
and a link's loss and NFQUEUE rules (`port_rule_specs`) are replaced for a while. Its
rules live in the same chains, so the run's teardown removes them with the rest.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass

from emulation.plan import Direction
from emulation.runstate import chain_names


class FirewallError(RuntimeError):
    """iptables refused the run's rules."""


@dataclass(frozen=True)
class PortRule:
    """What happens to one direction of one bridge port."""

    port: str
    """Bridge port name (`fcrb0a-eth3`)."""
    direction: Direction
    """`up` (entering the bridge) or `down` (leaving it)."""
    loss_fraction: float
    """Probability that a packet is dropped; 0 adds no rule."""
    queue: int | None
    """NFQUEUE number that delays the packets, or None (no delay, or netem delays)."""


def rule_lines(slot: int, bridges: list[str], rules: list[PortRule]) -> list[str]:
    """The `iptables-restore` lines of the mangle table for the run in `slot`."""
    up_chain, down_chain = chain_names(slot)
    lines = [f":{up_chain} - [0:0]", f":{down_chain} - [0:0]"]
    for rule in rules:
        loss, queue = port_rule_specs(slot, rule)
        lines += [f"-A {spec}" for spec in (loss, queue) if spec is not None]
    for bridge in bridges:
        lines.append(f"-A PREROUTING -i {bridge} -j {up_chain}")
        lines.append(f"-A POSTROUTING -o {bridge} -j {down_chain}")
    return lines


def port_rule_specs(slot: int, rule: PortRule) -> tuple[str | None, str | None]:
    """(loss, NFQUEUE) rule specs (`CHAIN MATCH -j TARGET`, without `-A`) of `rule`, None
    where it has none. The loss rule must come before the NFQUEUE rule in its chain."""
    chain = chain_names(slot)[0 if rule.direction == "up" else 1]
    match = _port_match(rule.port, rule.direction)
    loss = None
    if rule.loss_fraction > 0:
        probability = f"{rule.loss_fraction:.8f}"
        loss = f"{chain} {match} -m statistic --mode random --probability {probability} -j DROP"
    queue = None
    if rule.queue is not None:
        queue = f"{chain} {match} -j NFQUEUE --queue-num {rule.queue}"
    return loss, queue


def drop_spec(slot: int, port: str, direction: Direction, to_port: str | None = None) -> str:
    """A rule spec dropping every frame of `port` in `direction` (with `to_port`: only
    frames entering the bridge at `port` and leaving it at `to_port`, matched on the way
    out). Inserted at the top of its chain, it acts before any loss or NFQUEUE rule."""
    if to_port is None:
        chain = chain_names(slot)[0 if direction == "up" else 1]
        return f"{chain} {_port_match(port, direction)} -j DROP"
    down_chain = chain_names(slot)[1]
    return f"{down_chain} -m physdev --physdev-in {port} --physdev-out {to_port} -j DROP"


def edit(slot: int, lines: list[str]) -> None:
    """Apply `-I CHAIN 1 ...`, `-A ...` and `-D ...` lines to the run's chains in one
    atomic `iptables-restore --noflush` (all of them or none)."""
    ours = set(chain_names(slot))
    for line in lines:
        parts = line.split()
        if len(parts) < 2 or parts[0] not in ("-I", "-A", "-D") or parts[1] not in ours:
            raise ValueError(f"not an edit of run slot {slot}'s chains: {line!r}")
    _restore(lines, f"change the rules of run slot {slot}")


def install(slot: int, bridges: list[str], rules: list[PortRule]) -> None:
    """Add the run's chains and rules in one atomic `iptables-restore --noflush`."""
    _restore(rule_lines(slot, bridges, rules), f"install the rules of run slot {slot}")


def remove(slot: int) -> bool:
    """Remove every rule that jumps to the run's chains, then the chains; True if there
    was anything to remove. Works from the live ruleset, so it also cleans a killed run."""
    chains = chain_names(slot)
    saved = _run(["iptables-save", "-t", "mangle"], "list the mangle table").stdout
    present = {line[1:].split()[0] for line in saved.splitlines() if line.startswith(":")}
    jumps = [
        "-D " + line[3:]
        for line in saved.splitlines()
        if line.startswith("-A ") and line.split()[-1] in chains and line.split()[1] not in chains
    ]
    ours = [chain for chain in chains if chain in present]
    if not jumps and not ours:
        return False
    lines = jumps + [f"-F {chain}" for chain in ours] + [f"-X {chain}" for chain in ours]
    _restore(lines, f"remove the rules of run slot {slot}")
    return True


def slots_with_rules() -> set[int]:
    """Slots whose chains exist in the mangle table (live or left by a killed run)."""
    saved = _run(["iptables-save", "-t", "mangle"], "list the mangle table").stdout
    slots = set()
    for line in saved.splitlines():
        name = line[1:].split()[0] if line.startswith(":") else ""
        if name.startswith("FLCRB") and name.endswith(("-UP", "-DOWN")):
            number = name[len("FLCRB") :].split("-")[0]
            if number.isdigit():
                slots.add(int(number))
    return slots


def _port_match(port: str, direction: Direction) -> str:
    return f"-m physdev --physdev-{'in' if direction == 'up' else 'out'} {port}"


def _restore(lines: list[str], what: str) -> None:
    """Apply mangle-table `lines` atomically, keeping every other rule."""
    text = "*mangle\n" + "\n".join(lines) + "\nCOMMIT\n"
    _run(["iptables-restore", "-w", "5", "--noflush"], what, text)


def _run(command: list[str], what: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run an iptables tool; a failure names what we tried and what iptables said."""
    try:
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise FirewallError(
            f"cannot {what}: {command[0]} is not installed (apt-get install iptables)"
        ) from None
    if result.returncode != 0:
        raise FirewallError(
            f"cannot {what}: `{shlex.join(command)}` failed: {result.stderr.strip()}"
        )
    return result
