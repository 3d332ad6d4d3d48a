"""Properties of the runtime's wire frames on arbitrary input: every message survives
encoding and reading back, a reader fed any bytes returns messages, stops cleanly or
raises `ProtocolError`, never another exception, and any weights blob cut into chunks
comes back whole while chunks fed in any other order are refused."""

from __future__ import annotations

import asyncio
import math
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fl_crb.runtime import protocol as wire

PEER = "terminal 7 at 127.0.0.1:5555"
FAST = settings(
    max_examples=80,
    deadline=None,
    database=None,  # the repository keeps no .hypothesis folder
    suppress_health_check=[HealthCheck.too_slow],
)
U16, U32, U64 = st.integers(0, 2**16 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)


def read_all(data: bytes) -> list[wire.Message]:
    """Every message `read_message` reads from a stream holding `data`, then EOF."""

    async def go() -> list[wire.Message]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        messages = []
        while (message := await wire.read_message(reader, PEER)) is not None:
            messages.append(message)
        return messages

    return asyncio.run(go())


@st.composite
def task_headers(draw: st.DrawFn) -> wire.TaskHeader:
    arrival = draw(st.integers(0, 2**32 - 2))
    size_bits = draw(st.floats(min_value=1.0, max_value=8.0 * (2**32 - 1)))
    return wire.TaskHeader(
        task_id=draw(U32),
        arrival_slot=arrival,
        deadline_slot=draw(st.integers(arrival, 2**32 - 1)),
        size_bits=size_bits,
        payload_bytes=math.ceil(size_bits / 8),
        crc32=draw(U32),
    )


@st.composite
def weights_chunks(draw: st.DrawFn) -> wire.WeightsChunk:
    total = draw(st.integers(1, wire.MAX_WEIGHTS_BYTES))
    length = draw(st.integers(1, min(300, total)))
    return wire.WeightsChunk(
        version=draw(U64),
        published_slot=draw(U32),
        total_bytes=total,
        offset=draw(st.integers(0, total - length)),
        chunk=draw(st.binary(min_size=length, max_size=length)),
    )


MESSAGES = st.one_of(
    st.builds(wire.Hello, run_id=U64, terminal=U32),
    st.builds(wire.Welcome, run_id=U64, edge=U16),
    task_headers(),
    st.builds(wire.TaskData, task_id=U32, chunk=st.binary(min_size=1, max_size=300)),
    st.builds(
        wire.LoadReport,
        slot=U32,
        active_queues=U32,
        queued_bits=st.floats(min_value=0, allow_infinity=False),
    ),
    st.builds(
        wire.Outcome,
        task_id=U32,
        slot=U32,
        kind=st.sampled_from(wire.OutcomeKind),
        received_slot=st.integers(-1, 2**31 - 1),
    ),
    weights_chunks(),
    st.builds(
        wire.ErrorNotice,
        text=st.text(min_size=1, max_size=200).filter(lambda t: len(t.encode()) <= 1024),
    ),
)


def comparable(message: wire.Message) -> wire.Message:
    """`message` with a DATA or WEIGHTS chunk as bytes (the reader gives a memoryview)."""
    if isinstance(message, wire.TaskData):
        return wire.TaskData(message.task_id, bytes(message.chunk))
    if isinstance(message, wire.WeightsChunk):
        fields = (message.version, message.published_slot, message.total_bytes, message.offset)
        return wire.WeightsChunk(*fields, bytes(message.chunk))
    return message


@FAST
@given(st.lists(MESSAGES, max_size=6))
def test_messages_read_back_as_they_were_written(messages: list[wire.Message]) -> None:
    frames = [wire.encode(message) for message in messages]
    assert [wire.frame_bytes(m) for m in messages] == [len(frame) for frame in frames]
    assert [comparable(m) for m in read_all(b"".join(frames))] == messages


@st.composite
def framed_garbage(draw: st.DrawFn) -> bytes:
    """Frames whose headers are mostly right and whose payloads are random."""
    frames = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.one_of(st.sampled_from(wire.FrameType), st.integers(0, 255)))
        payload = draw(st.binary(max_size=80))
        length = draw(st.one_of(st.just(len(payload)), st.integers(0, 2**32 - 1)))
        magic = draw(st.sampled_from([wire.MAGIC, wire.MAGIC, b"RF"]))
        version = draw(st.sampled_from([wire.PROTOCOL_VERSION, wire.PROTOCOL_VERSION, 0, 255]))
        frames.append(wire.HEADER.pack(magic, version, kind, length) + payload)
    return b"".join(frames)


@FAST
@given(st.one_of(st.binary(max_size=200), framed_garbage()))
def test_a_reader_fed_any_bytes_reads_messages_or_raises_protocol_error(data: bytes) -> None:
    try:
        read_all(data)
    except wire.ProtocolError as error:
        assert error.peer == PEER
        assert str(error).startswith(f"bad frame from {PEER}: ")


@FAST
@given(st.binary(min_size=wire.HEADER.size, max_size=wire.HEADER.size))
def test_any_header_parses_within_its_type_bounds_or_raises_protocol_error(
    header: bytes,
) -> None:
    try:
        frame_type, length = wire.parse_header(header, PEER)
    except wire.ProtocolError:
        return
    low, high = wire.PAYLOAD_BOUNDS[frame_type]
    assert low <= length <= high


@st.composite
def typed_payloads(draw: st.DrawFn) -> tuple[wire.FrameType, bytes]:
    """A frame type and a payload of a length its header would pass."""
    frame_type = draw(st.sampled_from(wire.FrameType))
    low, high = wire.PAYLOAD_BOUNDS[frame_type]
    return frame_type, draw(st.binary(min_size=low, max_size=min(high, low + 300)))


@FAST
@given(typed_payloads())
def test_a_decoded_payload_is_the_encoding_of_its_message_or_is_refused(
    typed: tuple[wire.FrameType, bytes],
) -> None:
    frame_type, payload = typed
    try:
        message = wire.decode(frame_type, payload, PEER)
    except wire.ProtocolError:
        return
    header = wire.HEADER.pack(wire.MAGIC, wire.PROTOCOL_VERSION, frame_type, len(payload))
    assert wire.encode(message) == header + payload


@FAST
@given(size_bits=st.floats(min_value=0, exclude_min=True, allow_infinity=False))
@example(size_bits=5e-324)
def test_a_task_is_accepted_exactly_when_it_announces_the_ceiling_of_its_bytes(
    size_bits: float,
) -> None:
    """Regression: the check once computed ⌈bits / 8⌉ in floats, which underflows to 0 for
    the smallest subnormal sizes, so a TASK of 5e-324 bits announcing 0 bytes was accepted."""
    exact = math.ceil(Fraction(size_bits) / 8)
    if exact + 1 > 2**32 - 1:
        return
    assert wire.payload_bytes_of(size_bits) == exact >= 1
    for announced in (exact - 1, exact, exact + 1):
        header = wire.TaskHeader(1, 0, 5, size_bits, announced, 0)
        payload = wire.encode(header)[wire.HEADER.size :]
        if announced == exact:
            assert wire.decode(wire.FrameType.TASK, payload, PEER).payload_bytes == exact
        else:
            with pytest.raises(wire.ProtocolError, match="expected ⌈bits / 8⌉"):
                wire.decode(wire.FrameType.TASK, payload, PEER)


@FAST
@given(
    blob=st.binary(min_size=1, max_size=2000),
    chunk_bytes=st.integers(1, 700),
    version=U64,
    published_slot=U32,
)
def test_a_blob_cut_into_weights_frames_is_read_back_whole(
    blob: bytes, chunk_bytes: int, version: int, published_slot: int
) -> None:
    chunks = wire.weights_chunks(blob, version, published_slot, chunk_bytes)
    frames = b"".join(wire.encode(chunk) for chunk in chunks)
    assembly = wire.WeightsAssembly(PEER)
    results = [assembly.add(chunk) for chunk in read_all(frames)]
    assert results[:-1] == [None] * (len(chunks) - 1)
    whole = results[-1]
    assert whole is not None and bytes(whole.chunk) == blob
    assert (whole.version, whole.published_slot, whole.total_bytes) == (
        version,
        published_slot,
        len(blob),
    )


@FAST
@given(
    blob=st.binary(min_size=3, max_size=600),
    chunk_bytes=st.integers(1, 200),
    order=st.randoms(use_true_random=False),
)
def test_weights_chunks_out_of_order_are_refused_or_start_over(
    blob: bytes, chunk_bytes: int, order
) -> None:
    """Chunks in any order: every chunk either continues the blob (offset = bytes held),
    starts it over (offset 0), or is refused; a blob is only ever returned whole."""
    chunks = wire.weights_chunks(blob, 1, 0, chunk_bytes)
    order.shuffle(chunks)
    assembly, held = wire.WeightsAssembly(PEER), None
    for chunk in chunks:
        try:
            whole = assembly.add(chunk)
        except wire.ProtocolError:
            assert held is None or chunk.offset != held
            return
        held = 0 if chunk.offset == 0 else held
        held += len(chunk.chunk)
        if whole is not None:
            assert bytes(whole.chunk) == blob
            held = None
