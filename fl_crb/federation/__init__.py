"""The federated face: Flower processes, encrypted uploads, the durable pool, byte accounting.

Modules, one responsibility each:

- `crypto`: terminals seal trajectory uploads for the authority alone (X25519 + HKDF +
  ChaCha20-Poly1305); the authority opens them and refuses tampered, replayed, malformed ones.
- `serialization`: compact binary encodings of trajectories and Q-network weights.
- `pool_store`: the authority's pool made durable (append-only journal, crash recovery).
- `exchange`: the ServerApp's push/pull loop with a short poll interval.
- `flower_app`: the Flower components (ServerApp = authority, ClientApp = terminal/edge).
- `app_project`: the Flower app project (pyproject.toml) that `flwr run` packages.
- `launcher`: a real SuperLink and SuperNodes as processes (through a placement), and
  `flwr run`; `launch_config` (what to start, TLS and SuperNode authentication),
  `flower_commands` (their command lines), `flower_cli` (`flwr` calls), `meter_process`
  (the wire meter as its own process on a remote host).
- `keys`: the CA, TLS certificate, SuperNode keys and upload keys of a deployment.
- `authority`, `authority_config`: the trusted authority's rounds in the ServerApp.
- `mailbox`: the folders through which ClientApp handlers meet the long-lived parties.
- `edge_service`: the long-lived edge learner process.
- `accounting`: per-round, per-node, per-message byte accounting.
- `federated_run`, `run_support`: `fl-crb federate --local`, the whole federated run.
- `processes`: child processes stopped with all their descendants; free loopback ports.
- `fast_supernode`: Flower's SuperNode with a shorter idle poll than its fixed 3 s.
- `warm_executor`: ClientApp processes forked from a warm parent instead of started anew.
- `wire_meter`: a loopback TCP proxy counting the bytes Flower puts on the wire.

Nothing is imported here so that the Flower handlers, which import single modules of this
package, stay light (no torch, no numpy where not needed).
"""
