"""The topology file: one YAML description of a deployment for simulator, federation and
emulator.

`load_topology` reads `topologies/*.yaml` into a validated `Topology`; every problem is a
`TopologyError` naming the file and field. `parse_quantity` reads unit strings such as
`14Mbps` on their own. The file format is documented in `topologies/four-edge.yaml`.

Who does what: `units` parses quantities; `limits` holds the range of every number in a
file and the reason for it; `safe_yaml` reads a file's YAML within bounds (size, encoding,
aliases, depth); `load` checks each field where it stands; `model` holds the typed
deployment and checks what relates its parts.
"""

from fl_crb.topology.load import load_topology
from fl_crb.topology.model import (
    Edge,
    Link,
    LinkSpec,
    Terminal,
    Topology,
    TopologyError,
)
from fl_crb.topology.units import UnitError, format_quantity, parse_quantity

__all__ = [
    "Edge",
    "Link",
    "LinkSpec",
    "Terminal",
    "Topology",
    "TopologyError",
    "UnitError",
    "format_quantity",
    "load_topology",
    "parse_quantity",
]
