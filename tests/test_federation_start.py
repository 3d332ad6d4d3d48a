"""A federated run from a trained policy: terminals hold the starting weights from slot 0."""

import numpy as np

from fl_crb.federation.deploy.run_support import hand_out_published_weights
from fl_crb.federation.mailbox import EdgeMailbox, TerminalMailbox
from fl_crb.federation.message_auth import (
    WeightsSigner,
    WeightsVerifier,
    generate_signing_key,
    signing_public_key_bytes,
)
from fl_crb.federation.serialization import decode_weights, encode_weights


def test_each_terminal_gets_its_managing_edges_signed_version_0_byte_for_byte(tmp_path):
    run_id, keys = bytes(16), [generate_signing_key() for _ in range(2)]
    for e, key in enumerate(keys):
        weights = {"layer.weight": np.full((2, 3), float(e + 1), dtype=np.float32)}
        envelope = WeightsSigner(key, f"edge{e}", run_id).sign(encode_weights(weights, 0), 0)
        EdgeMailbox(tmp_path / "mailboxes" / f"edge{e}").publish_weights(envelope)
    hosts = ["t1", "t2", "t3"]
    hand_out_published_weights(
        ["edge0", "edge1"], np.array([0, 1, 0]), hosts, tmp_path / "mailboxes"
    )

    for host, e in zip(hosts, (0, 1, 0), strict=True):
        mailbox = TerminalMailbox(tmp_path / "mailboxes" / host)
        assert mailbox.held_weights_version() == 0
        verifier = WeightsVerifier(f"edge{e}", signing_public_key_bytes(keys[e]), run_id)
        payload = decode_weights(verifier.verify(mailbox.weights_path.read_bytes()).payload)
        np.testing.assert_array_equal(payload.weights["layer.weight"], np.full((2, 3), e + 1.0))
