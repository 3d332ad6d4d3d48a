"""The runtime's wire protocol: every message survives a round trip over a real socket, and
truncated, oversized, unknown and malformed frames are refused with an error naming the
peer; a weights blob is cut into WEIGHTS frames and put back together, in order only."""

from __future__ import annotations

import asyncio
import math
import struct

import pytest

from fl_crb.runtime.protocol import (
    HEADER,
    MAGIC,
    MAX_CHUNK_BYTES,
    MAX_WEIGHTS_BYTES,
    PROTOCOL_VERSION,
    ErrorNotice,
    FrameType,
    Hello,
    LoadReport,
    Outcome,
    OutcomeKind,
    ProtocolError,
    TaskData,
    TaskHeader,
    WeightsAssembly,
    WeightsChunk,
    Welcome,
    encode,
    frame_bytes,
    read_message,
    weights_chunks,
)

PEER = "terminal 7 at 127.0.0.1:5555"

MESSAGES = [
    Hello(run_id=2**63 - 1, terminal=24),
    Welcome(run_id=12345, edge=3),
    TaskHeader(
        task_id=9,
        arrival_slot=100,
        deadline_slot=111,
        size_bits=3_500_000.25,
        payload_bytes=math.ceil(3_500_000.25 / 8),
        crc32=0xDEADBEEF,
    ),
    TaskData(task_id=9, chunk=bytes(range(256)) * 4),
    LoadReport(slot=599, active_queues=7, queued_bits=1.25e6),
    Outcome(task_id=9, slot=105, kind=OutcomeKind.DROPPED, received_slot=-1),
    Outcome(task_id=10, slot=106, kind=OutcomeKind.FINISHED, received_slot=104),
    WeightsChunk(version=7, published_slot=42, total_bytes=2000, offset=1000, chunk=b"w" * 1000),
    ErrorNotice("TASK 3 deadline slot 2 before its arrival slot 5 — closing"),
]


def frame(kind: int, payload: bytes, magic: bytes = MAGIC, version: int = PROTOCOL_VERSION):
    return HEADER.pack(magic, version, kind, len(payload)) + payload


def read_bytes(data: bytes, close: bool = True):
    """read_message on a stream holding exactly `data` (then EOF if `close`)."""

    async def go():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        if close:
            reader.feed_eof()
        return await read_message(reader, PEER)

    return asyncio.run(go())


def test_every_message_round_trips_over_a_real_socket():
    async def go():
        received = []

        async def serve(reader, writer):
            while (message := await read_message(reader, "client")) is not None:
                received.append(message)
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for message in MESSAGES:
            writer.write(encode(message))
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        for _ in range(100):
            if len(received) == len(MESSAGES):
                break
            await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()
        return received

    received = asyncio.run(go())
    assert len(received) == len(MESSAGES)
    for sent, got in zip(MESSAGES, received, strict=True):
        if isinstance(sent, TaskData | WeightsChunk):
            assert type(got) is type(sent) and bytes(got.chunk) == bytes(sent.chunk)
            assert got == type(sent)(**{**_fields(sent), "chunk": got.chunk})
        else:
            assert got == sent
        assert frame_bytes(got) == len(encode(sent))


def _fields(message) -> dict:
    return {name: getattr(message, name) for name in message.__slots__}


def test_a_clean_close_between_frames_is_not_an_error():
    assert read_bytes(b"") is None


def test_truncated_header_is_rejected():
    data = encode(MESSAGES[0])[:5]
    with pytest.raises(ProtocolError, match="truncated frame header: 5 of 8") as error:
        read_bytes(data)
    assert error.value.peer == PEER and PEER in str(error.value)


def test_truncated_payload_is_rejected():
    data = encode(TaskData(1, b"x" * 1000))[:-10]
    with pytest.raises(ProtocolError, match="truncated DATA frame: 994 of 1004"):
        read_bytes(data)


def test_oversized_frame_is_rejected_from_its_header_alone():
    header = HEADER.pack(MAGIC, PROTOCOL_VERSION, FrameType.DATA, 4 + MAX_CHUNK_BYTES + 1)
    # No payload follows and the stream stays open: the length alone must refuse it.
    with pytest.raises(
        ProtocolError, match=r"DATA frame of 65541 payload bytes; expected 5\.\.65540"
    ):
        read_bytes(header, close=False)


def test_fixed_size_frame_with_the_wrong_length_is_rejected():
    with pytest.raises(ProtocolError, match=r"LOAD frame of 4 payload bytes; expected 16\.\.16"):
        read_bytes(frame(FrameType.LOAD, b"\0" * 4))


def test_unknown_frame_type_is_rejected_and_the_known_ones_listed():
    with pytest.raises(ProtocolError, match=r"unknown frame type 99; known types are 1 \(HELLO\)"):
        read_bytes(frame(99, b"\0"))


def test_wrong_magic_and_wrong_version_are_rejected():
    with pytest.raises(ProtocolError, match="magic b'GE'"):
        read_bytes(frame(FrameType.ERROR, b"x", magic=b"GE"))
    with pytest.raises(ProtocolError, match="protocol version 2, this side speaks version 1"):
        read_bytes(frame(FrameType.ERROR, b"x", version=2))


@pytest.mark.parametrize(
    ("kind", "payload", "problem"),
    [
        (FrameType.TASK, struct.pack(">IIIdII", 1, 5, 16, 8000.0, 999, 0), "announces 999 payload"),
        (FrameType.TASK, struct.pack(">IIIdII", 1, 5, 16, -8.0, 0, 0), "size -8.0 bits"),
        (FrameType.TASK, struct.pack(">IIIdII", 1, 5, 16, math.nan, 0, 0), "size nan bits"),
        (FrameType.TASK, struct.pack(">IIIdII", 1, 5, 4, 8.0, 1, 0), "deadline slot 4 before"),
        (FrameType.LOAD, struct.pack(">IId", 1, 2, -1.0), "queued bits -1.0"),
        (FrameType.OUTCOME, struct.pack(">IIBi", 1, 2, 7, -1), "OUTCOME kind 7"),
        (FrameType.OUTCOME, struct.pack(">IIBi", 1, 2, 0, -5), "received slot -5"),
        (FrameType.ERROR, b"\xff\xfe", "not valid UTF-8"),
        (FrameType.WEIGHTS, struct.pack(">QIII", 3, 0, 0, 0) + b"w", "blob of 0 bytes"),
        (
            FrameType.WEIGHTS,
            struct.pack(">QIII", 3, 0, MAX_WEIGHTS_BYTES + 1, 0) + b"w",
            f"blob of {MAX_WEIGHTS_BYTES + 1} bytes; expected 1..{MAX_WEIGHTS_BYTES}",
        ),
        (FrameType.WEIGHTS, struct.pack(">QIII", 3, 0, 10, 8) + b"www", "3 bytes at offset 8"),
    ],
)
def test_malformed_fields_are_rejected(kind, payload, problem):
    with pytest.raises(ProtocolError, match=problem):
        read_bytes(frame(kind, payload))


def test_a_weights_frame_longer_than_a_chunk_is_rejected_from_its_header_alone():
    header = HEADER.pack(MAGIC, PROTOCOL_VERSION, FrameType.WEIGHTS, 20 + MAX_CHUNK_BYTES + 1)
    with pytest.raises(ProtocolError, match=f"WEIGHTS frame of {20 + MAX_CHUNK_BYTES + 1}"):
        read_bytes(header, close=False)


def test_a_weights_blob_is_cut_into_chunks_and_put_back_together_in_order():
    blob = bytes(range(256)) * 700  # 179 200 bytes: three chunks
    chunks = weights_chunks(blob, version=5, published_slot=31)
    assert [(c.offset, len(c.chunk)) for c in chunks] == [
        (0, MAX_CHUNK_BYTES),
        (MAX_CHUNK_BYTES, MAX_CHUNK_BYTES),
        (2 * MAX_CHUNK_BYTES, len(blob) - 2 * MAX_CHUNK_BYTES),
    ]
    assembly = WeightsAssembly(PEER)
    read_back = [read_bytes(encode(chunk)) for chunk in chunks]
    assert [assembly.add(chunk) for chunk in read_back[:2]] == [None, None]
    whole = assembly.add(read_back[2])
    assert (whole.version, whole.published_slot, whole.total_bytes) == (5, 31, len(blob))
    assert bytes(whole.chunk) == blob


def test_a_newer_version_started_mid_blob_replaces_the_one_being_assembled():
    old = weights_chunks(b"o" * 300, version=1, published_slot=0, chunk_bytes=100)
    new = weights_chunks(b"n" * 150, version=2, published_slot=9, chunk_bytes=100)
    assembly = WeightsAssembly(PEER)
    assert assembly.add(old[0]) is None
    assert assembly.add(new[0]) is None
    whole = assembly.add(new[1])
    assert (whole.version, bytes(whole.chunk)) == (2, b"n" * 150)


@pytest.mark.parametrize(
    ("begun", "chunk", "problem"),
    [
        (False, WeightsChunk(1, 0, 300, 100, b"x" * 100), "continues at offset 100 a blob"),
        (True, WeightsChunk(2, 0, 300, 100, b"x" * 100), "never begun"),  # another version
        (True, WeightsChunk(1, 0, 400, 100, b"x" * 100), "never begun"),  # another size
        (True, WeightsChunk(1, 0, 300, 200, b"x" * 100), "offset 200; expected 100"),
    ],
)
def test_a_weights_chunk_that_does_not_continue_its_blob_is_refused(begun, chunk, problem):
    assembly = WeightsAssembly(PEER)
    if begun:
        assert assembly.add(WeightsChunk(1, 0, 300, 0, b"x" * 100)) is None
    with pytest.raises(ProtocolError, match=problem):
        assembly.add(chunk)


@pytest.mark.parametrize("size", [0, MAX_WEIGHTS_BYTES + 1])
def test_a_weights_blob_outside_its_bounds_is_not_sent(size):
    with pytest.raises(ValueError, match=f"1..{MAX_WEIGHTS_BYTES} bytes, got {size}"):
        weights_chunks(b"\0" * size, version=1, published_slot=0)
