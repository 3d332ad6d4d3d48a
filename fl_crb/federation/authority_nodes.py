"""Who the trusted authority's nodes are: the hellos it sends and the identities it admits.

The authority greets every connected SuperNode it does not know yet with `query.hello`
(`NodeRegistry.hellos`) and admits the node that answers under a name of the run
(`NodeRegistry.greet`). With SuperNode authentication the name comes from the public key
the node registered with: Flower's `Grid.get_nodes()` gives each node id's public key,
which is looked up among the bundle's supernodes/<name>.pub (`registered_names`); what
the node says about itself in its hello is only checked against it (a mismatch is
refused as `identity` / `claimed-other-name`, and the key wins). Without node
authentication (`--insecure`) the name and role come from the hello and must be one of
the run's nodes.

A node whose hello is refused (unknown key, unexpected name or role, a name another
connected node already holds) is not greeted again. A known name answering from a new
node id replaces its old one once that one has left the SuperLink (a restarted
SuperNode); each admitted node is counted as joined in `Participation`.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import load_pem_public_key, load_ssh_public_key
from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from fl_crb.federation.authority_records import AuthorityRecords
from fl_crb.federation.exchange import Reply
from fl_crb.federation.host_bundle import AuthorityKeys, key_id
from fl_crb.federation.participation import Participation


class NodeRegistry:
    """The run's nodes by name, the Flower node id each answered from, and refused ids."""

    def __init__(
        self,
        wanted: dict[str, str],
        node_auth: bool,
        grid: Grid,
        keys: AuthorityKeys,
        participation: Participation,
        records: AuthorityRecords,
    ):
        self.wanted = wanted
        """Every node of the run: name → role, terminals then edges."""
        self.node_auth = node_auth
        """Whether names come from registered keys (True) or from the hellos (`--insecure`)."""
        self.grid, self.keys = grid, keys
        self.participation, self.records = participation, records
        self.nodes: dict[str, int] = {}
        """Name → Flower node id of each node that answered a hello."""
        self.refused_ids: set[int] = set()
        """Node ids whose hello was refused (not greeted again)."""

    def waiting(self) -> list[str]:
        """The run's nodes that have not answered a hello yet, by name."""
        return sorted(set(self.wanted) - set(self.nodes))

    def name_of(self) -> dict[int, str]:
        """Flower node id → name of every admitted node."""
        return {node: name for name, node in self.nodes.items()}

    def hellos(self, online: set[int], busy: set[int]) -> list[Message]:
        """`query.hello` to every connected node not yet known, refused or `busy`."""
        known = {*self.nodes.values(), *self.refused_ids, *busy}
        return [
            Message(RecordDict({}), dst_node_id=node, message_type="query.hello")
            for node in sorted(online - known)
        ]

    def greet(self, reply: Reply, round_number: int) -> str | None:
        """Admit the node that answered a hello: its name (None if refused or failed)."""
        node = reply.sent.node
        if reply.message.has_error():
            error = reply.message.error
            self.records.event(
                "node-error", f"node {node}", f"hello: code {error.code}: {error.reason}"
            )
            return None
        identity = reply.message.content["identity"]
        name, role = str(identity["name"]), str(identity["role"])
        if self.node_auth:
            claimed, name = name, self.registered_names([node]).get(node, "")
            role = self.wanted.get(name, "")
            if not name:
                self.refused_ids.add(node)
                self.records.refused("identity", "unknown-key", "?", f"node {node}: unknown key")
                return None
            if claimed != name:
                self.records.refused(
                    "identity",
                    "claimed-other-name",
                    name,
                    f"node {node} registered with {name}'s key claims to be {claimed!r}; "
                    f"it is {name}",
                )
        elif self.wanted.get(name) != role:
            self.refused_ids.add(node)
            self.records.refused(
                "identity",
                "unexpected-node",
                name or "?",
                f"node {node} says it is {role or 'no role'} {name!r}; the run's nodes are "
                f"{self.wanted}",
            )
            return None
        previous = self.nodes.get(name)
        if previous is not None and previous != node:
            if previous in set(self.grid.get_node_ids()):
                self.refused_ids.add(node)
                self.records.refused(
                    "identity",
                    "duplicate-name",
                    name,
                    f"node {node} says it is {name}, which node {previous} is already",
                )
                return None
            self.records.log(
                f"round {round_number}: {name} is back as node {node} (was {previous})"
            )
        elif previous is None and round_number > 0:
            self.records.log(
                f"round {round_number}: {name} joined (node {node}); served from next round"
            )
        self.nodes[name] = node
        self.participation.joined(name, round_number)
        return name

    def registered_names(self, ids: list[int]) -> dict[int, str]:
        """Node id → the host whose registered SuperNode key it authenticates with."""
        by_key = {
            key_id(load_ssh_public_key(path.read_bytes())): name
            for name, path in self.keys.supernode_public_keys.items()
        }
        names = {}
        for info in self.grid.get_nodes():
            if info.node_id in ids and info.public_key:
                names[info.node_id] = by_key.get(
                    key_id(load_pem_public_key(bytes(info.public_key))), ""
                )
        return names
