"""The Mininet emulator of fl-crb: the network half.

`EmulatedNetwork(topology)` builds the cloud-edge-terminal network of a topology file on
Mininet (Linux bridges, no controller), shapes every link's bandwidth, latency, jitter
and loss per direction (netem where the kernel has it, else NFQUEUE and the `delayd`
delay line), and tears it all down on exit. `verify_links` measures the links against
the topology; `cleanup` removes what a killed run left behind. `fl-crb netcheck` drives
all three from the command line. Launching the parties on the hosts is not here yet.

Modules: `plan` (addresses, routes, paths), `network` (build and life cycle), `shaping`
(tc and the mechanism choice), `firewall` (the run's iptables chains), `delayd` (the
delay daemon's build and supervision), `probes` and `verify` (measurements and the
report), `runstate` (run slots) and `teardown` (ordered undo and cleanup).
"""

from emulation.delayd import DelayDaemonError
from emulation.network import EmulatedNetwork, NetworkBuildError, NetworkConfig
from emulation.shaping import ShapingConfig
from emulation.teardown import TeardownError, cleanup
from emulation.verify import LinkReport, LinkVerificationError, VerifyConfig, verify_links

__all__ = [
    "DelayDaemonError",
    "EmulatedNetwork",
    "LinkReport",
    "LinkVerificationError",
    "NetworkBuildError",
    "NetworkConfig",
    "ShapingConfig",
    "TeardownError",
    "VerifyConfig",
    "cleanup",
    "verify_links",
]
