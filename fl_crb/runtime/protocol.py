"""The runtime's wire protocol between terminals and edge servers: small, versioned, framed.

Every frame is an 8-byte header followed by a payload:

    magic  b"FR"   2 bytes   marks an fl-crb runtime frame
    version        1 byte    PROTOCOL_VERSION; any other version is refused
    type           1 byte    a `FrameType`
    length         4 bytes   payload bytes, big-endian, within the type's bounds

| type     | direction       | payload                                                     |
| -------- | --------------- | ----------------------------------------------------------- |
| HELLO    | terminal → edge | run id u64, terminal index u32                              |
| WELCOME  | edge → terminal | run id u64, edge index u16                                  |
| TASK     | terminal → edge | task id u32, arrival slot u32, deadline slot u32, size f64  |
|          |                 | bits, payload bytes u32, CRC-32 of the payload u32          |
| DATA     | terminal → edge | task id u32, then 1..MAX_CHUNK_BYTES payload bytes          |
| LOAD     | edge → terminal | slot u32, active queues Q_e u32, the terminal's queued f64  |
|          |                 | bits q_{d,e}                                                |
| OUTCOME  | edge → terminal | task id u32, slot u32, kind u8 (FINISHED / DROPPED),        |
|          |                 | slot its last byte arrived i32 (−1: never fully received)   |
| WEIGHTS  | edge → terminal | version u64, published slot u32, total bytes u32, offset    |
|          |                 | u32, then 1..MAX_CHUNK_BYTES bytes of an opaque weights blob |
| UPLOAD   | terminal → edge | post id u64, then 1..MAX_UPLOAD_BYTES of an opaque upload   |
| STORED   | edge → terminal | post id u64: the edge keeps that upload durably             |
| ACK      | edge → terminal | 1..MAX_ACK_BYTES of an opaque acknowledgement               |
| ERROR    | either          | UTF-8 text, why the sender closes the connection            |

UPLOAD, STORED and ACK carry the relay uplink (`fl_crb.runtime.upload_relay`): a terminal
hands each of its uploads (the federation's sealed envelope, which the runtime never
opens) to its managing edge under the terminal's own post id, the edge answers STORED
once it keeps it durably, and passes on the acknowledgements it is given for that
terminal (the federation's authenticated ack, which the terminal checks) as ACK frames.

A weights blob (at most MAX_WEIGHTS_BYTES; the federation's signed envelope, which the
runtime never opens) travels as WEIGHTS frames of one version in offset order, so no frame
is bigger than a DATA frame; `WeightsAssembly` puts them back together. The published slot
is the slot the edge saw that version appear (0 for one it held before the run began).

Every frame is validated before use: magic, version, a known type, a length within the
type's bounds (checked before the payload is read, so an oversized frame costs nothing),
and field values (finite sizes, payload bytes = ⌈bits / 8⌉, deadline ≥ arrival, a weights
chunk inside its blob's announced size, a blob within MAX_WEIGHTS_BYTES). A bad
frame raises `ProtocolError` naming the peer; the caller closes that connection only.
"""

from __future__ import annotations

import asyncio
import math
import struct
from dataclasses import dataclass
from enum import IntEnum

MAGIC = b"FR"
"""First two bytes of every frame."""
PROTOCOL_VERSION = 1
"""Version byte this implementation speaks; bumped on any change to the frame layouts (a
new frame type changes none: a peer without it refuses it as an unknown type)."""
HEADER = struct.Struct(">2sBBI")
"""magic, version, type, payload length."""
MAX_CHUNK_BYTES = 64 * 1024
"""Largest slice of task payload in one DATA frame."""
MAX_ERROR_BYTES = 1024
"""Largest ERROR text, in UTF-8 bytes."""
MAX_WEIGHTS_BYTES = 16 << 20
"""Largest weights blob an edge may hand a terminal (a terminal holds at most one being
assembled per edge); CRB-DRQN's default network signed is about 65 kB."""
MAX_UPLOAD_BYTES = 256 * 1024
"""Largest upload a terminal may hand its edge in one UPLOAD frame; a sealed CRB-DRQN
trajectory of the default length (n = 4) at four-edge is about 1.4 kB."""
MAX_ACK_BYTES = 512
"""Largest acknowledgement in one ACK frame (an authenticated ack is about 80 bytes)."""


class FrameType(IntEnum):
    HELLO = 1
    WELCOME = 2
    TASK = 3
    DATA = 4
    LOAD = 5
    OUTCOME = 6
    ERROR = 7
    WEIGHTS = 8
    UPLOAD = 9
    STORED = 10
    ACK = 11


class OutcomeKind(IntEnum):
    FINISHED = 0
    DROPPED = 1


class ProtocolError(Exception):
    """A frame that breaks the protocol; names the peer it came from."""

    def __init__(self, peer: str, problem: str) -> None:
        self.peer = peer
        """Who sent the frame (e.g. `terminal 3 at 127.0.0.1:51234`)."""
        self.problem = problem
        """What was wrong and what was expected."""
        super().__init__(f"bad frame from {peer}: {problem}")


@dataclass(frozen=True, slots=True)
class Hello:
    run_id: int
    """The run both sides belong to; a terminal of another run is refused."""
    terminal: int
    """0-based terminal index."""


@dataclass(frozen=True, slots=True)
class Welcome:
    run_id: int
    """Echo of the run id."""
    edge: int
    """0-based edge index of the server."""


@dataclass(frozen=True, slots=True)
class TaskHeader:
    task_id: int
    """The terminal's own task counter (increasing over its whole run)."""
    arrival_slot: int
    """Slot the task arrived at the terminal."""
    deadline_slot: int
    """Last slot the task may finish in: arrival + τ − 1."""
    size_bits: float
    """η, the task's size in the model, in bits (processing is accounted in these)."""
    payload_bytes: int
    """Bytes that follow in DATA frames: ⌈size_bits / 8⌉."""
    crc32: int
    """CRC-32 of the payload, checked by the edge once all bytes arrived."""


@dataclass(frozen=True, slots=True)
class TaskData:
    task_id: int
    """Task the bytes belong to."""
    chunk: bytes | memoryview
    """The next slice of the task's payload."""


@dataclass(frozen=True, slots=True)
class LoadReport:
    slot: int
    """Slot t the report describes (sent once its computing is done)."""
    active_queues: int
    """Q_e(t), the edge's active queues in slot t."""
    queued_bits: float
    """q_{d,e}(t): bits of the receiving terminal's tasks queued at the edge after slot t."""


@dataclass(frozen=True, slots=True)
class Outcome:
    task_id: int
    """The terminal's task id."""
    slot: int
    """Slot the task finished in, or was dropped at the end of."""
    kind: OutcomeKind
    """FINISHED or DROPPED."""
    received_slot: int
    """Slot the task's last byte reached the edge; −1 if it never fully arrived."""


@dataclass(frozen=True, slots=True)
class WeightsChunk:
    version: int
    """Version of the weights the blob carries (as its sender says; the blob proves it)."""
    published_slot: int
    """Slot the edge saw this version published in (0: before the run began)."""
    total_bytes: int
    """Size of the whole blob, 1..MAX_WEIGHTS_BYTES."""
    offset: int
    """Where `chunk` starts in the blob."""
    chunk: bytes | memoryview
    """The next slice of the blob."""


@dataclass(frozen=True, slots=True)
class Upload:
    post_id: int
    """The terminal's own number of this upload (rising; its acknowledgements name it)."""
    blob: bytes
    """The upload as the terminal posted it (for the federation: its sealed envelope)."""


@dataclass(frozen=True, slots=True)
class Stored:
    post_id: int
    """The upload the edge now keeps durably (it relays it until acknowledged)."""


@dataclass(frozen=True, slots=True)
class Ack:
    blob: bytes
    """An acknowledgement of the terminal's uploads, as the edge was given it (for the
    federation: the authority's authenticated ack, which the terminal checks)."""


@dataclass(frozen=True, slots=True)
class ErrorNotice:
    text: str
    """Why the sender is closing the connection."""


Message = (
    Hello
    | Welcome
    | TaskHeader
    | TaskData
    | LoadReport
    | Outcome
    | WeightsChunk
    | Upload
    | Stored
    | Ack
    | ErrorNotice
)

_HELLO = struct.Struct(">QI")
_WELCOME = struct.Struct(">QH")
_TASK = struct.Struct(">IIIdII")
_DATA_ID = struct.Struct(">I")
_LOAD = struct.Struct(">IId")
_OUTCOME = struct.Struct(">IIBi")
_WEIGHTS = struct.Struct(">QIII")
_POST = struct.Struct(">Q")

PAYLOAD_BOUNDS: dict[FrameType, tuple[int, int]] = {
    FrameType.HELLO: (_HELLO.size, _HELLO.size),
    FrameType.WELCOME: (_WELCOME.size, _WELCOME.size),
    FrameType.TASK: (_TASK.size, _TASK.size),
    FrameType.DATA: (_DATA_ID.size + 1, _DATA_ID.size + MAX_CHUNK_BYTES),
    FrameType.LOAD: (_LOAD.size, _LOAD.size),
    FrameType.OUTCOME: (_OUTCOME.size, _OUTCOME.size),
    FrameType.WEIGHTS: (_WEIGHTS.size + 1, _WEIGHTS.size + MAX_CHUNK_BYTES),
    FrameType.UPLOAD: (_POST.size + 1, _POST.size + MAX_UPLOAD_BYTES),
    FrameType.STORED: (_POST.size, _POST.size),
    FrameType.ACK: (1, MAX_ACK_BYTES),
    FrameType.ERROR: (1, MAX_ERROR_BYTES),
}
"""Smallest and largest payload length of each frame type."""


def _header(kind: FrameType, length: int) -> bytes:
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, kind, length)


def encode(message: Message) -> bytes:
    """The frame (header and payload) carrying `message`."""
    if isinstance(message, TaskData):
        chunk = bytes(message.chunk)
        return _header(FrameType.DATA, _DATA_ID.size + len(chunk)) + (
            _DATA_ID.pack(message.task_id) + chunk
        )
    if isinstance(message, WeightsChunk):
        chunk = bytes(message.chunk)
        head = _WEIGHTS.pack(
            message.version, message.published_slot, message.total_bytes, message.offset
        )
        return _header(FrameType.WEIGHTS, _WEIGHTS.size + len(chunk)) + head + chunk
    if isinstance(message, Upload):
        if not 1 <= len(message.blob) <= MAX_UPLOAD_BYTES:
            raise ValueError(
                f"upload {message.post_id} has {len(message.blob)} bytes; an UPLOAD frame "
                f"carries 1..{MAX_UPLOAD_BYTES}"
            )
        kind, payload = FrameType.UPLOAD, _POST.pack(message.post_id) + bytes(message.blob)
    elif isinstance(message, Stored):
        kind, payload = FrameType.STORED, _POST.pack(message.post_id)
    elif isinstance(message, Ack):
        if not 1 <= len(message.blob) <= MAX_ACK_BYTES:
            raise ValueError(
                f"an acknowledgement of {len(message.blob)} bytes; an ACK frame carries "
                f"1..{MAX_ACK_BYTES}"
            )
        kind, payload = FrameType.ACK, bytes(message.blob)
    elif isinstance(message, Hello):
        kind, payload = FrameType.HELLO, _HELLO.pack(message.run_id, message.terminal)
    elif isinstance(message, Welcome):
        kind, payload = FrameType.WELCOME, _WELCOME.pack(message.run_id, message.edge)
    elif isinstance(message, TaskHeader):
        kind, payload = (
            FrameType.TASK,
            _TASK.pack(
                message.task_id,
                message.arrival_slot,
                message.deadline_slot,
                message.size_bits,
                message.payload_bytes,
                message.crc32,
            ),
        )
    elif isinstance(message, LoadReport):
        kind = FrameType.LOAD
        payload = _LOAD.pack(message.slot, message.active_queues, message.queued_bits)
    elif isinstance(message, Outcome):
        kind = FrameType.OUTCOME
        payload = _OUTCOME.pack(message.task_id, message.slot, message.kind, message.received_slot)
    elif isinstance(message, ErrorNotice):
        kind = FrameType.ERROR
        payload = message.text.encode("utf-8")[:MAX_ERROR_BYTES] or b"?"
    else:
        raise TypeError(f"not a runtime protocol message: {message!r}")
    return _header(kind, len(payload)) + payload


def parse_header(header: bytes, peer: str) -> tuple[FrameType, int]:
    """Validate an 8-byte frame header; returns the frame type and payload length."""
    magic, version, kind, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise ProtocolError(peer, f"magic {magic!r}, expected {MAGIC!r} (not an fl-crb peer?)")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            peer, f"protocol version {version}, this side speaks version {PROTOCOL_VERSION}"
        )
    try:
        frame_type = FrameType(kind)
    except ValueError:
        known = ", ".join(f"{t.value} ({t.name})" for t in FrameType)
        raise ProtocolError(peer, f"unknown frame type {kind}; known types are {known}") from None
    low, high = PAYLOAD_BOUNDS[frame_type]
    if not low <= length <= high:
        raise ProtocolError(
            peer, f"{frame_type.name} frame of {length} payload bytes; expected {low}..{high}"
        )
    return frame_type, length


def decode(frame_type: FrameType, payload: bytes, peer: str) -> Message:
    """The message in a payload whose header `parse_header` accepted; checks its fields."""
    if frame_type is FrameType.DATA:
        (task_id,) = _DATA_ID.unpack_from(payload)
        return TaskData(task_id, memoryview(payload)[_DATA_ID.size :])
    if frame_type is FrameType.WEIGHTS:
        chunk = WeightsChunk(*_WEIGHTS.unpack_from(payload), memoryview(payload)[_WEIGHTS.size :])
        _check_weights(chunk, peer)
        return chunk
    if frame_type is FrameType.UPLOAD:
        (post_id,) = _POST.unpack_from(payload)
        return Upload(post_id, bytes(payload[_POST.size :]))
    if frame_type is FrameType.STORED:
        return Stored(*_POST.unpack(payload))
    if frame_type is FrameType.ACK:
        return Ack(bytes(payload))
    if frame_type is FrameType.HELLO:
        return Hello(*_HELLO.unpack(payload))
    if frame_type is FrameType.WELCOME:
        return Welcome(*_WELCOME.unpack(payload))
    if frame_type is FrameType.TASK:
        header = TaskHeader(*_TASK.unpack(payload))
        _check_task(header, peer)
        return header
    if frame_type is FrameType.LOAD:
        report = LoadReport(*_LOAD.unpack(payload))
        if not (math.isfinite(report.queued_bits) and report.queued_bits >= 0):
            raise ProtocolError(peer, f"LOAD queued bits {report.queued_bits!r}; expected >= 0")
        return report
    if frame_type is FrameType.OUTCOME:
        task_id, slot, kind, received_slot = _OUTCOME.unpack(payload)
        if kind not in OutcomeKind._value2member_map_:
            raise ProtocolError(peer, f"OUTCOME kind {kind}; expected 0 (finished) or 1 (dropped)")
        if received_slot < -1:
            raise ProtocolError(peer, f"OUTCOME received slot {received_slot}; expected >= -1")
        return Outcome(task_id, slot, OutcomeKind(kind), received_slot)
    try:
        return ErrorNotice(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProtocolError(peer, "ERROR text is not valid UTF-8") from None


def payload_bytes_of(size_bits: float) -> int:
    """⌈size_bits / 8⌉, the bytes that carry a task of `size_bits` > 0 bits. Dividing by 8
    is exact for every float but the smallest subnormals, where it rounds to 0: the ceiling
    of a positive size is at least one byte."""
    return max(1, math.ceil(size_bits / 8))


def _check_task(header: TaskHeader, peer: str) -> None:
    if not (math.isfinite(header.size_bits) and header.size_bits > 0):
        raise ProtocolError(peer, f"TASK {header.task_id} size {header.size_bits!r} bits; > 0")
    expected = payload_bytes_of(header.size_bits)
    if header.payload_bytes != expected:
        raise ProtocolError(
            peer,
            f"TASK {header.task_id} announces {header.payload_bytes} payload bytes for "
            f"{header.size_bits!r} bits; expected ⌈bits / 8⌉ = {expected}",
        )
    if header.deadline_slot < header.arrival_slot:
        raise ProtocolError(
            peer,
            f"TASK {header.task_id} deadline slot {header.deadline_slot} before its arrival "
            f"slot {header.arrival_slot}",
        )


def _check_weights(chunk: WeightsChunk, peer: str) -> None:
    if not 1 <= chunk.total_bytes <= MAX_WEIGHTS_BYTES:
        raise ProtocolError(
            peer,
            f"WEIGHTS version {chunk.version} announces a blob of {chunk.total_bytes} bytes; "
            f"expected 1..{MAX_WEIGHTS_BYTES}",
        )
    if chunk.offset + len(chunk.chunk) > chunk.total_bytes:
        raise ProtocolError(
            peer,
            f"WEIGHTS version {chunk.version}: {len(chunk.chunk)} bytes at offset "
            f"{chunk.offset} overrun its blob of {chunk.total_bytes} bytes",
        )


def weights_chunks(
    blob: bytes, version: int, published_slot: int, chunk_bytes: int = MAX_CHUNK_BYTES
) -> list[WeightsChunk]:
    """The WEIGHTS frames' messages that carry `blob` (1..MAX_WEIGHTS_BYTES), in order."""
    if not 1 <= len(blob) <= MAX_WEIGHTS_BYTES:
        raise ValueError(f"a weights blob has 1..{MAX_WEIGHTS_BYTES} bytes, got {len(blob)}")
    view = memoryview(blob)
    return [
        WeightsChunk(
            version, published_slot, len(blob), offset, view[offset : offset + chunk_bytes]
        )
        for offset in range(0, len(blob), chunk_bytes)
    ]


class WeightsAssembly:
    """A terminal's reassembly of the weights blob one edge is sending: the chunks of one
    version must come in order; a chunk at offset 0 starts a new blob (an edge drops a
    version it was sending when a newer one appears). Holds at most one blob."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self._chunk: WeightsChunk | None = None
        """The first chunk of the blob being assembled (its version, slot and size)."""
        self._parts = bytearray()

    def add(self, chunk: WeightsChunk) -> WeightsChunk | None:
        """Take one chunk; returns the whole blob (as a chunk at offset 0 holding all of
        it) once its last byte arrived, else None. Raises `ProtocolError` for a chunk that
        does not continue the blob being assembled."""
        if chunk.offset == 0:
            self._chunk, self._parts = chunk, bytearray()
        elif self._chunk is None or (chunk.version, chunk.total_bytes) != (
            self._chunk.version,
            self._chunk.total_bytes,
        ):
            raise ProtocolError(
                self.peer,
                f"WEIGHTS version {chunk.version} continues at offset {chunk.offset} a blob "
                "that was never begun",
            )
        elif chunk.offset != len(self._parts):
            raise ProtocolError(
                self.peer,
                f"WEIGHTS version {chunk.version} chunk at offset {chunk.offset}; expected "
                f"{len(self._parts)} (chunks come in order)",
            )
        self._parts += chunk.chunk
        first = self._chunk
        if len(self._parts) < first.total_bytes:
            return None
        self._chunk = None
        whole = bytes(self._parts)
        self._parts = bytearray()
        return WeightsChunk(first.version, first.published_slot, len(whole), 0, whole)


def frame_bytes(message: Message) -> int:
    """Bytes the frame carrying `message` takes on the wire, header included."""
    if isinstance(message, TaskData):
        return HEADER.size + _DATA_ID.size + len(message.chunk)
    if isinstance(message, WeightsChunk):
        return HEADER.size + _WEIGHTS.size + len(message.chunk)
    if isinstance(message, ErrorNotice):
        return HEADER.size + len(message.text.encode("utf-8"))
    if isinstance(message, Upload):
        return HEADER.size + _POST.size + len(message.blob)
    if isinstance(message, Ack):
        return HEADER.size + len(message.blob)
    return HEADER.size + PAYLOAD_BOUNDS[_FIXED_TYPES[type(message)]][0]


_FIXED_TYPES: dict[type, FrameType] = {
    Hello: FrameType.HELLO,
    Welcome: FrameType.WELCOME,
    TaskHeader: FrameType.TASK,
    LoadReport: FrameType.LOAD,
    Outcome: FrameType.OUTCOME,
    Stored: FrameType.STORED,
}


async def read_message(reader: asyncio.StreamReader, peer: str) -> Message | None:
    """The next message from `reader`; None if the peer closed cleanly between frames.

    Raises `ProtocolError` for a bad header or payload and for a stream that ends inside a
    frame (a truncated frame).
    """
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            return None
        raise ProtocolError(
            peer, f"truncated frame header: {len(error.partial)} of {HEADER.size} bytes"
        ) from None
    frame_type, length = parse_header(header, peer)
    try:
        payload = await reader.readexactly(length)
    except asyncio.IncompleteReadError as error:
        raise ProtocolError(
            peer,
            f"truncated {frame_type.name} frame: {len(error.partial)} of {length} payload bytes",
        ) from None
    return decode(frame_type, payload, peer)
