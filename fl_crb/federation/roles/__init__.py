"""One command per role, each on its own host: `fl-crb authority`, `fl-crb edge`, `fl-crb terminal`.

Each host runs one command, from its own key bundle (DIR/<host>/ of `fl-crb keys`) and
a state directory of its own; hosts share nothing but the network:

- `authority_role`: the authority's host (the topology's cloud) runs the SuperLink (TLS,
  every node's key registered), the run service and the trusted authority (`flwr run`,
  supervised), and writes the run's summary;
- `edge_role`: an edge runs its runtime edge server, its edge learner service and its
  SuperNode;
- `terminal_role`: a terminal runs its federated runtime terminal party and its
  SuperNode.

How they meet: the run service (`run_service`, HTTPS with the SuperLink's certificate)
serves the run's settings (`settings`), answers time requests (`clock_offset`), takes
the parties' hellos and end-of-run reports, each signed with the party's SuperNode key
(`signed_requests`), and hands out the epoch once its start quorum said hello. The
parties reach it through `service_client`; `party_role` holds what an edge and a
terminal share, `party_processes` starts and stops what a party host runs, and
`authority_summary` writes the run's summary from the authority's own folder and the
parties' reports.
"""
