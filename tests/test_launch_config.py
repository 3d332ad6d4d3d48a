"""NodeSpec node config: what Flower's --node-config carries, and clear errors otherwise."""

import pytest
from flwr.common.config import parse_config_args

from fl_crb.federation.deploy.launch_config import NodeSpec


def test_node_config_round_trips_through_flowers_parser():
    node = NodeSpec(
        "t1",
        "terminal",
        node_config={"mailbox": "/srv/a b/it's", "limit": 3, "rate-hz": 2.5, "on": True},
    )
    parsed = parse_config_args([node.node_config_argument()])
    assert parsed == {
        "role": "terminal",
        "name": "t1",
        "mailbox": "/srv/a b/it's",
        "limit": 3,
        "rate-hz": 2.5,
        "on": True,
    }
    assert hash(node) == hash(NodeSpec("t1", "terminal", node_config=dict(node.node_config)))


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"mail box": "/x"}, r"node 't1' node config key 'mail box': expected letters"),
        ({"mailbox": '/x"y'}, r"node 't1' node config 'mailbox' = .*double quote"),
        ({"mailbox": "/x\\y"}, r"'mailbox' = .*backslash"),
        ({"mailbox": "/x\ny"}, r"'mailbox' = .*control character"),
        ({"limit": float("nan")}, r"'limit' = nan: expected a finite number"),
        ({"limit": [1]}, r"'limit' = \[1\]: expected bool, int, float or str"),
        ({"role": "edge"}, r"'role': set by the launcher from NodeSpec.role"),
    ],
)
def test_bad_node_config_is_refused_naming_node_key_and_value(entries, message):
    with pytest.raises(ValueError, match=message):
        NodeSpec("t1", "terminal", node_config=entries)


def test_bad_name_is_refused():
    with pytest.raises(ValueError, match=r"node 'a\"b' node config 'name'"):
        NodeSpec('a"b', "terminal")
