"""Metering of the federation: what its messages carry and what they cost on the wire.

- `accounting`: per-round, per-node, per-message byte accounting (the authority's
  `accounting.jsonl`).
- `wire_meter`: a loopback TCP proxy counting the bytes Flower puts on the wire, per node
  and per HTTP endpoint.
- `meter_process`: the wire meter as a process of its own, on the SuperLink's host.
"""
