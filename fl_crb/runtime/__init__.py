"""The real-time MEC runtime (the data plane): terminals and edge servers as live processes.

Parties run on the wall clock, in slots shared through one epoch (`clock`), and move the
real bytes of offloaded tasks over TCP (`protocol`, `connection`). `edge_server` and
`terminal` are the party processes; their per-slot logic (`edge_queues`,
`terminal_queues`) follows the simulator's slot rules exactly, so a live run differs from
the model only by real-time effects, which `compare` measures. `local_run` starts every
party on loopback. docs/runtime.md explains time, CPU emulation and the protocol.

The package imports nothing on its own, so that each party process loads only what it
needs (no torch unless a learned policy is used).
"""
