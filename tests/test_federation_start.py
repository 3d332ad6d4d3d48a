"""A federated run from a trained policy: terminals hold the starting weights from slot 0."""

import numpy as np

from fl_crb.federation.deploy.run_support import hand_out_starting_weights
from fl_crb.federation.mailbox import TerminalMailbox, weights_version
from fl_crb.federation.serialization import decode_weights
from fl_crb.learn.weights_file import save_weights_file


def test_each_terminal_gets_its_managing_edges_starting_weights_as_version_0(tmp_path):
    files = []
    for e in range(2):
        weights = {"layer.weight": np.full((2, 3), float(e + 1), dtype=np.float32)}
        save_weights_file(tmp_path / f"edge{e}.npz", weights, version=7)
        files.append(str(tmp_path / f"edge{e}.npz"))
    hosts = ["t1", "t2", "t3"]
    hand_out_starting_weights(files, np.array([0, 1, 0]), hosts, tmp_path / "mailboxes")

    for host, edge in zip(hosts, (0, 1, 0), strict=True):
        mailbox = TerminalMailbox(tmp_path / "mailboxes" / host)
        data = mailbox.weights_path.read_bytes()
        assert weights_version(data) == mailbox.held_weights_version() == 0
        payload = decode_weights(data)
        np.testing.assert_array_equal(payload.weights["layer.weight"], np.full((2, 3), edge + 1.0))
