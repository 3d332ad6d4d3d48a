"""The federated face: Flower processes, encrypted uploads, the durable pool, byte accounting.

Modules, one responsibility each:

- `crypto`: terminals seal trajectory uploads for the authority alone (X25519 + HKDF +
  ChaCha20-Poly1305); the authority opens them and refuses tampered, replayed, malformed ones.
- `serialization`: compact binary encodings of trajectories and Q-network weights.
- `pool_store`: the authority's pool made durable (append-only journal, crash recovery).
- `exchange`: the ServerApp's push/pull loop with a short poll interval.
- `flower_app`: the Flower components (ServerApp = authority, ClientApp = terminal/edge).
- `app_project`: the Flower app project (pyproject.toml) that `flwr run` packages.
- `launcher`: a real SuperLink and SuperNodes as processes on loopback, and `flwr run`.
- `processes`: child processes stopped with all their descendants; free loopback ports.
- `fast_supernode`: Flower's SuperNode with a shorter idle poll than its fixed 3 s.
- `warm_executor`: ClientApp processes forked from a warm parent instead of started anew.
- `wire_meter`: a loopback TCP proxy counting the bytes Flower puts on the wire.

Nothing is imported here so that the Flower handlers, which import single modules of this
package, stay light (no torch, no numpy where not needed).
"""
