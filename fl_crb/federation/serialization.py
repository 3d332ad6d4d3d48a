"""Compact binary encodings of what travels: trajectories up, Q-network weights down.

Both formats start with a format-version byte and a flags byte (bit 0: floats stored as
float16 instead of float32), are little-endian, and are validated when decoded: sizes,
shapes, value ranges and finiteness, with a `DecodeError` naming the offending field.

Trajectory (`fl_crb.learn.pool.Trajectory`: n transitions, C history slots, E edges):

    header 8 B: version u8 ‖ flags u8 ‖ n u16 ‖ C u16 ‖ E u16
    states    : scalars [k, 3+E] then load [k, C, E], floats
    reward    : [n] floats
    action    : [n] u8 (0..E)
    done      : [n] bits, packed, ceil(n/8) B (padding bits zero)

Consecutive transitions share states: the next state of transition i is the state of
i+1. When that holds exactly (flags bit 1, "chained"), only the n+1 distinct states are
stored (k = n+1, the last one being the final next state); otherwise k = 2n (the n states,
then the n next states). With p = 4 (float32) or 2 (float16) bytes per float and
S = 3 + E + C·E floats per state, the payload is

    chained:   8 + p·((n+1)·S + n) + n + ceil(n/8) bytes
    unchained: 8 + p·(2n·S + n)     + n + ceil(n/8) bytes

e.g. n = 4, C = 10, E = 4 (S = 47): 969 B chained in float32, 491 B in float16; 1533 B
and 773 B unchained (`trajectory_payload_bytes`). Decoded trajectories carry the pool's
dtypes (float32, int64 actions, bool done); float16 rounds values to ~3 significant digits.

Weights (`dict[str, np.ndarray]` + an integer version, as `weights_to_numpy` produces):

    header 12 B: version u8 ‖ flags u8 ‖ weights_version u64 ‖ count u16
    per tensor : name_len u16 ‖ name UTF-8 ‖ ndim u8 ‖ dims u32 × ndim ‖ floats

`weights_payload_bytes` gives the size: 12 + Σ (3 + len(name) + 4·ndim + p·size).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from fl_crb.learn.pool import Trajectory

FORMAT_VERSION = 1
"""Version byte of both formats described in the module docstring."""
PRECISIONS = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
"""Float precisions a payload may use, by name."""
_FLOAT16, _CHAINED = 0x01, 0x02
_TRAJECTORY_HEADER = struct.Struct("<BBHHH")
_WEIGHTS_HEADER = struct.Struct("<BBQH")
_MAX_EDGES = 255  # actions travel as u8
_MAX_TENSORS, _MAX_NDIM = 4096, 8


class DecodeError(ValueError):
    """A payload failed validation; `field` names what was wrong."""

    def __init__(self, kind: str, field: str, detail: str):
        super().__init__(f"{kind} payload field {field!r}: {detail}")
        self.field = field


@dataclass(frozen=True)
class TrajectoryShape:
    """The sizes a decoded trajectory must have (those of the pool it is meant for)."""

    length: int
    """n: transitions per trajectory."""
    history_slots: int
    """C: slots of load history per state."""
    edges: int
    """E: edge servers."""


def _precision(name: str) -> np.dtype:
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {name!r}")
    return PRECISIONS[name]


def _quantised(kind: str, field: str, values: np.ndarray, dtype: np.dtype) -> bytes:
    """`values` as little-endian `dtype` bytes; refuses non-finite or out-of-range values."""
    values = np.asarray(values)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{kind} field {field!r} holds NaN or infinite values")
    with np.errstate(over="ignore"):
        converted = values.astype(dtype)
    if not np.all(np.isfinite(converted)):
        raise ValueError(
            f"{kind} field {field!r} has values beyond {dtype.name}'s range "
            f"(max |x| = {np.abs(values).max():g}); encode with precision float32"
        )
    return converted.tobytes()


# -- trajectories ----------------------------------------------------------------------------


def trajectory_payload_bytes(
    length: int, history_slots: int, edges: int, precision: str = "float32", chained: bool = True
) -> int:
    """Encoded size in bytes of one trajectory (see the module docstring)."""
    p = _precision(precision).itemsize
    state_floats = 3 + edges + history_slots * edges
    states = (length + 1 if chained else 2 * length) * state_floats
    return _TRAJECTORY_HEADER.size + p * (states + length) + length + -(-length // 8)


def encode_trajectory(trajectory: Trajectory, precision: str = "float32") -> bytes:
    """The binary encoding of one trajectory."""
    dtype = _precision(precision)
    scalars, load = np.asarray(trajectory.scalars), np.asarray(trajectory.load)
    next_scalars, next_load = np.asarray(trajectory.next_scalars), np.asarray(trajectory.next_load)
    action, reward = np.asarray(trajectory.action), np.asarray(trajectory.reward)
    done = np.asarray(trajectory.done)
    if load.ndim != 3:
        raise ValueError(f"trajectory field 'load' must be [n, C, E], got shape {load.shape}")
    n, c, e = load.shape
    expected = {
        "scalars": (n, 3 + e),
        "next_scalars": (n, 3 + e),
        "next_load": (n, c, e),
        "action": (n,),
        "reward": (n,),
        "done": (n,),
    }
    for name, shape in expected.items():
        if np.shape(getattr(trajectory, name)) != shape:
            raise ValueError(
                f"trajectory field {name!r} has shape {np.shape(getattr(trajectory, name))}, "
                f"expected {shape} for n={n}, C={c}, E={e}"
            )
    if not (1 <= n <= 0xFFFF and 1 <= c <= 0xFFFF and 1 <= e <= _MAX_EDGES):
        raise ValueError(f"trajectory sizes n={n}, C={c}, E={e} exceed the format's limits")
    if action.size and (action.min() < 0 or action.max() > e):
        raise ValueError(f"trajectory field 'action' must lie in 0..{e}, got {np.unique(action)}")
    chained = np.array_equal(next_scalars[:-1], scalars[1:]) and np.array_equal(
        next_load[:-1], load[1:]
    )
    if chained:
        all_scalars = np.concatenate([scalars, next_scalars[-1:]])
        all_load = np.concatenate([load, next_load[-1:]])
    else:
        all_scalars = np.concatenate([scalars, next_scalars])
        all_load = np.concatenate([load, next_load])
    flags = (_FLOAT16 if dtype.itemsize == 2 else 0) | (_CHAINED if chained else 0)
    return b"".join(
        [
            _TRAJECTORY_HEADER.pack(FORMAT_VERSION, flags, n, c, e),
            _quantised("trajectory", "scalars", all_scalars, dtype),
            _quantised("trajectory", "load", all_load, dtype),
            _quantised("trajectory", "reward", reward, dtype),
            action.astype(np.uint8).tobytes(),
            np.packbits(done.astype(bool)).tobytes(),
        ]
    )


def decode_trajectory(data: bytes, shape: TrajectoryShape | None = None) -> Trajectory:
    """Decode and validate one trajectory; `shape`, if given, is what it must have."""
    data = memoryview(bytes(data))

    def fail(field: str, detail: str) -> DecodeError:
        return DecodeError("trajectory", field, detail)

    if len(data) < _TRAJECTORY_HEADER.size:
        raise fail("header", f"{len(data)} bytes, the header alone takes 8")
    version, flags, n, c, e = _TRAJECTORY_HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise fail("version", f"format version {version}, expected {FORMAT_VERSION}")
    if flags & ~(_FLOAT16 | _CHAINED):
        raise fail("flags", f"unknown flag bits in {flags:#04x}")
    for field, value, wanted in (
        ("n", n, shape and shape.length),
        ("history_slots", c, shape and shape.history_slots),
        ("edges", e, shape and shape.edges),
    ):
        if value < 1:
            raise fail(field, "must be at least 1, got 0")
        if wanted and value != wanted:
            raise fail(field, f"is {value}, this pool expects {wanted}")
    if e > _MAX_EDGES:
        raise fail("edges", f"is {e}, actions travel as bytes so E <= {_MAX_EDGES}")
    precision = "float16" if flags & _FLOAT16 else "float32"
    chained = bool(flags & _CHAINED)
    size = trajectory_payload_bytes(n, c, e, precision, chained)
    if len(data) != size:
        raise fail("length", f"{len(data)} bytes, n={n} C={c} E={e} {precision} needs {size}")

    dtype = PRECISIONS[precision]
    offset = _TRAJECTORY_HEADER.size
    k = n + 1 if chained else 2 * n

    def floats(field: str, count: int, shape_: tuple[int, ...]) -> np.ndarray:
        nonlocal offset
        array = np.frombuffer(data, dtype, count, offset).astype(np.float32).reshape(shape_)
        offset += count * dtype.itemsize
        if not np.all(np.isfinite(array)):
            raise fail(field, "holds NaN or infinite values")
        return array

    all_scalars = floats("scalars", k * (3 + e), (k, 3 + e))
    all_load = floats("load", k * c * e, (k, c, e))
    reward = floats("reward", n, (n,))
    action = np.frombuffer(data, np.uint8, n, offset).astype(np.int64)
    offset += n
    if action.max() > e:
        raise fail("action", f"values {np.unique(action)} outside 0..{e}")
    packed = np.frombuffer(data, np.uint8, -(-n // 8), offset)
    bits = np.unpackbits(packed)
    if bits[n:].any():
        raise fail("done", "padding bits after the n flags are not zero")
    if chained:
        next_scalars, next_load = all_scalars[1:], all_load[1:]
        all_scalars, all_load = all_scalars[:n], all_load[:n]
    else:
        next_scalars, next_load = all_scalars[n:], all_load[n:]
        all_scalars, all_load = all_scalars[:n], all_load[:n]
    return Trajectory(
        scalars=all_scalars,
        load=all_load,
        action=action,
        reward=reward,
        next_scalars=next_scalars,
        next_load=next_load,
        done=bits[:n].astype(bool),
    )


# -- weights ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsPayload:
    """Decoded Q-network weights."""

    version: int
    """Weight version (the edge learner's update count); terminals log the one they act with."""
    weights: dict[str, np.ndarray]
    """Tensors by name, float32, in the encoded order."""


def weights_payload_bytes(shapes: dict[str, tuple[int, ...]], precision: str = "float32") -> int:
    """Encoded size in bytes of weights with these tensor shapes."""
    p = _precision(precision).itemsize
    per_tensor = (
        3 + len(name.encode("utf-8")) + 4 * len(shape) + p * int(np.prod(shape, dtype=np.int64))
        for name, shape in shapes.items()
    )
    return _WEIGHTS_HEADER.size + sum(per_tensor)


def encode_weights(
    weights: dict[str, np.ndarray], version: int, precision: str = "float32"
) -> bytes:
    """The binary encoding of named float tensors and their version."""
    dtype = _precision(precision)
    if not 0 <= version < 2**64:
        raise ValueError(f"weights version must lie in 0..2^64-1, got {version}")
    if not 1 <= len(weights) <= _MAX_TENSORS:
        raise ValueError(f"weights must hold 1..{_MAX_TENSORS} tensors, got {len(weights)}")
    flags = _FLOAT16 if dtype.itemsize == 2 else 0
    parts = [_WEIGHTS_HEADER.pack(FORMAT_VERSION, flags, version, len(weights))]
    for name, tensor in weights.items():
        encoded_name = name.encode("utf-8")
        tensor = np.asarray(tensor)
        if not 1 <= len(encoded_name) <= 0xFFFF or tensor.ndim > _MAX_NDIM:
            raise ValueError(f"weights tensor {name!r}: bad name or {tensor.ndim} > 8 dims")
        parts.append(
            struct.pack(f"<H{len(encoded_name)}sB", len(encoded_name), encoded_name, tensor.ndim)
        )
        parts.append(struct.pack(f"<{tensor.ndim}I", *tensor.shape))
        parts.append(_quantised("weights", name, tensor, dtype))
    return b"".join(parts)


class _Reader:
    """Reads consecutive chunks of a weights payload, failing with the current field's name."""

    def __init__(self, data: memoryview, offset: int):
        self.data, self.offset, self.field = data, offset, ""

    def take(self, size: int, what: str) -> memoryview:
        if self.offset + size > len(self.data):
            raise DecodeError(
                "weights", self.field, f"truncated in its {what} ({len(self.data)} bytes in all)"
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk


def decode_weights(
    data: bytes, expected_shapes: dict[str, tuple[int, ...]] | None = None
) -> WeightsPayload:
    """Decode and validate weights; `expected_shapes`, if given, is the exact set of tensors."""
    data = memoryview(bytes(data))

    def fail(field: str, detail: str) -> DecodeError:
        return DecodeError("weights", field, detail)

    if len(data) < _WEIGHTS_HEADER.size:
        raise fail("header", f"{len(data)} bytes, the header alone takes {_WEIGHTS_HEADER.size}")
    format_version, flags, version, count = _WEIGHTS_HEADER.unpack_from(data)
    if format_version != FORMAT_VERSION:
        raise fail("version", f"format version {format_version}, expected {FORMAT_VERSION}")
    if flags & ~_FLOAT16:
        raise fail("flags", f"unknown flag bits in {flags:#04x}")
    dtype = PRECISIONS["float16" if flags & _FLOAT16 else "float32"]
    reader = _Reader(data, _WEIGHTS_HEADER.size)
    weights: dict[str, np.ndarray] = {}
    for index in range(count):
        reader.field = f"tensor #{index}"
        (name_len,) = struct.unpack("<H", reader.take(2, "name length"))
        try:
            name = bytes(reader.take(name_len, "name")).decode("utf-8")
        except UnicodeDecodeError:
            raise fail(reader.field, "name is not valid UTF-8") from None
        if not name or name in weights:
            raise fail(reader.field, f"empty or repeated tensor name {name!r}")
        reader.field = name
        (ndim,) = reader.take(1, "rank")
        if ndim > _MAX_NDIM:
            raise fail(name, f"rank {ndim} exceeds {_MAX_NDIM}")
        shape = struct.unpack(f"<{ndim}I", reader.take(4 * ndim, "shape"))
        if expected_shapes is not None and shape != tuple(expected_shapes.get(name, shape)):
            raise fail(name, f"shape {shape}, expected {tuple(expected_shapes[name])}")
        size = int(np.prod(shape, dtype=np.int64))
        raw = reader.take(size * dtype.itemsize, "values")
        tensor = np.frombuffer(raw, dtype).astype(np.float32).reshape(shape)
        if not np.all(np.isfinite(tensor)):
            raise fail(name, "holds NaN or infinite values")
        weights[name] = tensor
    offset = reader.offset
    if offset != len(data):
        raise fail("length", f"{len(data) - offset} bytes left after {count} tensors")
    if expected_shapes is not None and set(expected_shapes) != set(weights):
        missing, extra = set(expected_shapes) - set(weights), set(weights) - set(expected_shapes)
        raise fail("names", f"missing {sorted(missing)}, unexpected {sorted(extra)}")
    return WeightsPayload(version, weights)
