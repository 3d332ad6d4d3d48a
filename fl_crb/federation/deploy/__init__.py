"""Deployment machinery: Flower's processes started, stopped and driven; the whole run.

- `launcher`: a real SuperLink and SuperNodes as processes (through a placement), and
  `flwr run`; `launch_config` (what to start, TLS and SuperNode authentication),
  `flower_commands` (their command lines), `flower_cli` (`flwr` calls), `processes`
  (child processes stopped with all their descendants; free loopback ports).
- `app_project`: the Flower app project (pyproject.toml) that `flwr run` packages; its
  components are `fl_crb.federation.server_app` and `fl_crb.federation.client_app`.
- `federated_run`, `run_support`: the coordinator of `fl-crb federate --local`, the whole
  federated run (learners, Flower, parties, authority; then stop and summarise), set up
  by `run_config.FederatedRunConfig` (the parties, the method's settings, the rounds).

The method's roles (`fl_crb.federation`) never import this package.
"""
