"""The Mininet emulator of fl-crb: the network, and whole runs on it.

`EmulatedNetwork(topology)` builds the cloud-edge-terminal network of a topology file on
Mininet (Linux bridges, no controller), shapes every link's bandwidth, latency, jitter
and loss per direction (netem where the kernel has it, else NFQUEUE and the `delayd`
delay line), and tears it all down on exit. `verify_links` measures the links against
the topology; `cleanup` removes what a killed run left behind. `fl-crb netcheck` drives
all three from the command line. `run_emulation` (`fl-crb emulate`, `make emulate`) runs
every party on its own host through `MininetPlacement` and writes the run's report.

Modules: `plan` (addresses, routes, paths), `network` (build and life cycle), `shaping`
(tc and the mechanism choice), `firewall` (the run's iptables chains), `delayd` (the
delay daemon's build and supervision), `probes` and `verify` (measurements and the
report), `host_state` (each host's private state directory: its user, mounts and
hand-back to root), `runstate` (run slots), `teardown` (ordered undo and cleanup); for
whole runs: `placement` (processes on hosts), `run` (one emulation run), `data_plane` (its parties
and federation), `pretrain` (the default policy), `monitor` (progress, Ctrl-C, `--cli`),
`counters` (interface bytes, memory), `collect`, `report` and `plots` (the run folder).

Nothing is imported here: import each name from its module (`from emulation.network
import EmulatedNetwork`), so that importing one module loads only what it needs.
"""
