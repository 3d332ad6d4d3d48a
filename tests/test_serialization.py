"""Binary encodings of trajectories and weights: exact round trips, sizes, validation."""

import numpy as np
import pytest

from fl_crb.federation.serialization import (
    DecodeError,
    TrajectoryShape,
    decode_trajectory,
    decode_weights,
    encode_trajectory,
    encode_weights,
    trajectory_payload_bytes,
    weights_payload_bytes,
)
from fl_crb.learn.pool import FIELDS, Trajectory

N, C, E = 4, 10, 4


def chained_trajectory(rng: np.random.Generator, n=N, c=C, e=E) -> Trajectory:
    """n consecutive transitions: the next state of each is the state of the following one."""
    scalars = rng.random((n + 1, 3 + e), dtype=np.float32)
    load = rng.random((n + 1, c, e), dtype=np.float32)
    return Trajectory(
        scalars=scalars[:n],
        load=load[:n],
        action=rng.integers(0, 1 + e, n),
        reward=-rng.integers(1, 37, n).astype(np.float32),
        next_scalars=scalars[1:],
        next_load=load[1:],
        done=np.arange(n) == n - 1,
    )


def assert_same(decoded: Trajectory, original: Trajectory, atol: float = 0.0):
    for name in FIELDS:
        got, want = getattr(decoded, name), getattr(original, name)
        assert got.shape == np.shape(want), name
        np.testing.assert_allclose(got, want, atol=atol, rtol=0, err_msg=name)
    assert decoded.scalars.dtype == np.float32 and decoded.action.dtype == np.int64
    assert decoded.done.dtype == np.bool_


def test_chained_trajectory_round_trips_exactly_in_float32():
    original = chained_trajectory(np.random.default_rng(0))
    data = encode_trajectory(original)
    assert len(data) == trajectory_payload_bytes(N, C, E) == 969
    assert_same(decode_trajectory(data, TrajectoryShape(N, C, E)), original)


def test_unchained_trajectory_stores_both_states_and_round_trips():
    original = chained_trajectory(np.random.default_rng(1))
    broken = Trajectory(**{**original.__dict__, "next_load": original.next_load + 1.0})
    data = encode_trajectory(broken)
    assert len(data) == trajectory_payload_bytes(N, C, E, chained=False) == 1533
    assert_same(decode_trajectory(data), broken)


def test_float16_halves_the_floats_within_half_precision():
    original = chained_trajectory(np.random.default_rng(2))
    data = encode_trajectory(original, precision="float16")
    assert len(data) == trajectory_payload_bytes(N, C, E, "float16") == 491
    assert_same(decode_trajectory(data), original, atol=1e-3)


@pytest.mark.parametrize("n, c, e", [(1, 1, 1), (9, 3, 2), (4, 10, 4)])
def test_payload_size_formula_matches_encodings(n, c, e):
    original = chained_trajectory(np.random.default_rng(n), n, c, e)
    for precision, p in (("float32", 4), ("float16", 2)):
        state = 3 + e + c * e
        formula = 8 + p * ((n + 1) * state + n) + n + -(-n // 8)
        assert len(encode_trajectory(original, precision)) == formula
        assert trajectory_payload_bytes(n, c, e, precision) == formula
    assert_same(decode_trajectory(encode_trajectory(original)), original)


def test_encoding_refuses_values_it_cannot_carry():
    original = chained_trajectory(np.random.default_rng(3))
    huge = Trajectory(**{**original.__dict__, "reward": np.full(N, -1e6, np.float32)})
    with pytest.raises(ValueError, match="'reward' has values beyond float16's range"):
        encode_trajectory(huge, precision="float16")
    nan = Trajectory(**{**original.__dict__, "scalars": np.full((N, 3 + E), np.nan, np.float32)})
    with pytest.raises(ValueError, match="'scalars' holds NaN"):
        encode_trajectory(nan)
    bad_action = Trajectory(**{**original.__dict__, "action": np.full(N, E + 1)})
    with pytest.raises(ValueError, match=r"'action' must lie in 0\.\.4"):
        encode_trajectory(bad_action)
    with pytest.raises(ValueError, match="precision must be one of"):
        encode_trajectory(original, precision="int8")


def decode_error(data: bytes, **kwargs) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode_trajectory(data, **kwargs)
    return caught.value


def test_decoding_names_the_bad_field():
    data = bytearray(encode_trajectory(chained_trajectory(np.random.default_rng(4))))
    assert decode_error(bytes(data[:5])).field == "header"
    assert decode_error(bytes(data[:-1])).field == "length"
    assert decode_error(bytes(data) + b"\0").field == "length"
    assert decode_error(bytes([2]) + bytes(data[1:])).field == "version"
    assert decode_error(bytes(data[:1]) + bytes([0x80]) + bytes(data[2:])).field == "flags"
    wrong_pool = decode_error(bytes(data), shape=TrajectoryShape(N, C, E + 1))
    assert wrong_pool.field == "edges" and "this pool expects 5" in str(wrong_pool)

    action_at = len(data) - N - 1
    bad = bytearray(data)
    bad[action_at] = E + 1
    assert decode_error(bytes(bad)).field == "action"
    bad = bytearray(data)
    bad[-1] |= 0x01  # lowest bit of the packed done flags: padding when n = 4
    assert decode_error(bytes(bad)).field == "done"
    bad = bytearray(data)
    bad[8:12] = np.float32(np.inf).tobytes()
    error = decode_error(bytes(bad))
    assert error.field == "scalars" and "NaN or infinite" in str(error)


def small_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "scalar_fc.weight": rng.standard_normal((8, 7)).astype(np.float32),
        "scalar_fc.bias": rng.standard_normal(8).astype(np.float32),
        "value_head.bias": np.zeros(1, np.float32),
        "scalar": np.array(2.5, np.float32),
    }


def test_weights_round_trip_with_version_and_order():
    weights = small_weights(np.random.default_rng(5))
    data = encode_weights(weights, version=42)
    shapes = {name: tensor.shape for name, tensor in weights.items()}
    assert len(data) == weights_payload_bytes(shapes)
    payload = decode_weights(data, expected_shapes=shapes)
    assert payload.version == 42 and list(payload.weights) == list(weights)
    for name, tensor in weights.items():
        np.testing.assert_array_equal(payload.weights[name], tensor)
        assert payload.weights[name].dtype == np.float32


def test_weights_in_float16_are_half_the_floats():
    weights = small_weights(np.random.default_rng(6))
    shapes = {name: tensor.shape for name, tensor in weights.items()}
    full, half = encode_weights(weights, 1), encode_weights(weights, 1, precision="float16")
    floats = sum(tensor.size for tensor in weights.values())
    assert (
        len(full) - len(half) == 2 * floats == len(full) - weights_payload_bytes(shapes, "float16")
    )
    for name, tensor in decode_weights(half).weights.items():
        np.testing.assert_allclose(tensor, weights[name], atol=5e-3, rtol=1e-3)


def weights_error(data: bytes, **kwargs) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode_weights(data, **kwargs)
    return caught.value


def test_weights_decoding_names_the_bad_field():
    weights = small_weights(np.random.default_rng(7))
    data = encode_weights(weights, 3)
    shapes = {name: tensor.shape for name, tensor in weights.items()}
    assert weights_error(data[:4]).field == "header"
    assert weights_error(data[:-3]).field == "scalar"
    assert weights_error(data + b"\0").field == "length"
    wrong = weights_error(data, expected_shapes={**shapes, "scalar_fc.bias": (9,)})
    assert wrong.field == "scalar_fc.bias" and "expected (9,)" in str(wrong)
    missing = weights_error(data, expected_shapes={**shapes, "hidden1.weight": (8, 8)})
    assert missing.field == "names" and "hidden1.weight" in str(missing)
    nan = encode_weights({"w": np.ones(3, np.float32)}, 1).replace(
        np.ones(3, np.float32).tobytes(), np.full(3, np.nan, np.float32).tobytes()
    )
    assert weights_error(nan).field == "w"
    with pytest.raises(ValueError, match="'w' holds NaN"):
        encode_weights({"w": np.full(2, np.nan)}, 1)
