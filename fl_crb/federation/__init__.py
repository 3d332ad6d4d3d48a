"""The federated face: federated CRB-DRQN's parties over Flower, and how they are deployed.

The method's roles, one file each (as Flower's example apps have `server_app.py` and
`client_app.py`):

- `server_app`: the ServerApp `flwr run` starts on the SuperLink, the trusted authority's
  process (run config mode "authority"; mode "probe" times Flower's bare round trip).
- `authority`: the trusted authority's rounds: collect sealed uploads from terminals, open
  and check them, keep them in the durable pool, send familiarity-sampled batches to the
  edges and their newest weights to the terminals each edge manages.
- `client_app`: the node handlers (the ClientApp of every SuperNode): `hello`, `probe`,
  `collect` (terminals) and `train` (edges), thin, meeting the long-lived parties through
  their mailbox.
- `edge_learner_service`: the edge learner service, one long-lived `EdgeLearner` per edge
  trained on the batches the `train` handler leaves in its mailbox.
- `edge`: the edge server of federated CRB-DRQN: the runtime's edge server, handing the
  weights its learner signs to the terminals it manages over their runtime connection.
- `terminal`: the terminal's side: the federated decider (ε-greedy with the weights
  delivered to its mailbox, every trajectory sealed for the authority and posted to the
  outbox) and the process that runs the runtime's terminal party with it.

The method's support modules:

- `crypto`: terminals seal trajectory uploads for the authority alone (X25519 + HKDF +
  ChaCha20-Poly1305); the authority opens them and refuses tampered, replayed, malformed ones.
- `message_auth`: the rest of the learning plane authenticated: weights signed by the edge
  learner that trained them, batches sealed for their edge, acknowledgements MACed.
- `serialization`: compact binary encodings of trajectories and Q-network weights.
- `pool_store`: the authority's pool made durable (append-only journal, crash recovery).
- `authority_config`: the authority's setup, a JSON file the ServerApp reads.
- `authority_nodes`, `authority_uploads`, `authority_records`: the authority's nodes and
  their identities, the intake of a terminal's uploads, its logs and event records.
- `participation`: each node's joined round, missed rounds and reconnections.
- `mailbox`: the folders through which the ClientApp handlers meet the long-lived parties.
- `exchange`: the ServerApp's push/pull loop with a short poll interval; a round's
  messages with a deadline, late replies kept for the next round (`RoundExchange`).
- `keys`: the CA, TLS certificate and every party's keys of a deployment, written as one
  bundle per host; `host_bundle` loads and checks a host's bundle.
- `transit_faults`: test-only faults the authority injects into its own messages (off
  unless a test asks), so that tests can show every forged, altered or replayed message
  refused over a real Flower path.

Four sub-packages, none of which the roles need to be read:

- `deploy`: the deployment machinery: a real SuperLink and SuperNodes as processes
  (`launcher`, `launch_config`, `flower_commands`, `flower_cli`, `processes`), the app
  project `flwr run` packages (`app_project`), and the coordinator of `fl-crb federate
  --local` (`federated_run`, `run_support`) with its configuration (`run_config`).
- `metering`: byte accounting per round, node and message (`accounting`), the wire meter
  counting what Flower puts on the wire (`wire_meter`) and its own process on a remote
  host (`meter_process`).
- `roles`: one command per host of a real deployment (`fl-crb authority`, `edge`,
  `terminal`): the authority's run service (settings, epoch, clock offsets, signed
  hellos and reports over HTTPS) and each role's processes.
- `accelerators`: optional patches of Flower 1.42.0's internals that shorten its waits
  (`fast_supernode`, `warm_executor`).

Layers inside: the roles use the support modules and `metering`; `deploy` uses the roles
and the rest; only `deploy` and the packages above the federation (emulator, studies,
commands) import `deploy`, and `accelerators` are started by module path, never
imported by the roles. Nothing is imported here so that the Flower handlers, which import
single modules of this package, stay light (no torch, no numpy where not needed).
"""
