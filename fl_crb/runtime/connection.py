"""One framed TCP connection between a terminal and an edge server, with byte accounting.

What a peer can cost the other side is bounded here:

- sending never waits: frames go to the transport's buffer, so a slow or dead peer cannot
  stall the sender's slot loop; a peer whose unsent backlog grows past
  `max_backlog_bytes` is not reading, and the connection is closed with a clear error
  instead of letting memory grow;
- a frame's length is checked against its type's bounds from its 8-byte header, before
  the payload is read (`fl_crb.runtime.protocol`), so no frame costs more than
  64 KiB of memory;
- a frame, once begun, must arrive whole within `frame_timeout_s` (a peer that stalls in
  the middle of a frame holds nothing for long), and `receive(idle_timeout_s=...)` bounds
  the wait for the next frame when the peer should be talking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fl_crb.runtime.protocol import (
    HEADER,
    ErrorNotice,
    Message,
    ProtocolError,
    TaskData,
    decode,
    encode,
    frame_bytes,
    parse_header,
)

log = logging.getLogger(__name__)

FRAME_TIMEOUT_S = 10.0
"""How long a frame may take to arrive once its first byte did (a 64 KiB DATA frame
takes 40 ms at 14 Mbit/s)."""


class PeerGone(Exception):
    """The connection is closed or its peer stopped reading."""


class PeerSilent(ConnectionError):
    """The peer sent nothing for longer than the receiver allows."""


class FramedConnection:
    """Frames over an asyncio stream pair, with the bytes sent and received counted."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
        max_backlog_bytes: int,
        frame_timeout_s: float = FRAME_TIMEOUT_S,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer
        """Who is on the other side, for messages (refined once the peer says who it is)."""
        self.max_backlog_bytes = max_backlog_bytes
        self.frame_timeout_s = frame_timeout_s
        self.bytes_sent = 0
        self.bytes_received = 0
        self.closed = False

    def send(self, message: Message) -> None:
        """Queue one frame; raises `PeerGone` if the connection is closed or backed up."""
        self._write(encode(message))

    def send_many(self, messages: list[Message]) -> None:
        """Queue frames in one write, so that they leave in as few segments as fit (each
        segment costs a terminal's link its headers, and the peer's acknowledgement);
        raises `PeerGone` if the connection is closed or backed up."""
        self._write(b"".join(encode(message) for message in messages))

    def _write(self, frames: bytes) -> None:
        if self.closed or self.writer.is_closing():
            raise PeerGone(f"connection to {self.peer} is closed")
        backlog = self.writer.transport.get_write_buffer_size()
        if backlog > self.max_backlog_bytes:
            self.close(f"{backlog} unsent bytes: the peer is not reading")
            raise PeerGone(f"{self.peer} is not reading ({backlog} bytes unsent)")
        self.writer.write(frames)
        self.bytes_sent += len(frames)

    async def send_paced(self, message: Message) -> None:
        """Send one frame of bulk data (a weights chunk), then wait until the transport's
        buffer is below its high-water mark: a blob of many frames never piles up in the
        backlog, and the slot loop's small frames still go out between its chunks. Raises
        `PeerGone`, or `ConnectionError` if the connection breaks while waiting."""
        self.send(message)
        await self.writer.drain()

    def send_data(self, task_id: int, payload: memoryview, start: int, stop: int, chunk: int):
        """Send payload[start:stop] of a task as DATA frames of at most `chunk` bytes."""
        for offset in range(start, stop, chunk):
            self.send(TaskData(task_id, payload[offset : min(offset + chunk, stop)]))

    async def receive(self, idle_timeout_s: float | None = None) -> Message | None:
        """The next message, or None once the peer closed cleanly between frames.

        Waits at most `idle_timeout_s` (None: for ever) for a frame to begin, then
        `frame_timeout_s` for the rest of it. Raises `ProtocolError` (a bad, truncated or
        stalled frame), `PeerSilent` (no frame began in time) or `ConnectionError`.
        """
        # One timeout scope per frame, moved from the idle bound to the frame bound once the
        # first byte is in: a terminal takes tens of frames a second from its edges, and
        # a scope is much cheaper than `wait_for` (no task per frame).
        began = False
        try:
            async with asyncio.timeout(idle_timeout_s) as scope:
                first = await self.reader.read(1)
                if not first:
                    return None
                began = True
                scope.reschedule(asyncio.get_running_loop().time() + self.frame_timeout_s)
                header = first + await self._exactly(HEADER.size - 1, "frame header", 1)
                frame_type, length = parse_header(header, self.peer)
                payload = await self._exactly(length, f"{frame_type.name} frame", 0)
        except TimeoutError:
            if not began:
                raise PeerSilent(f"{self.peer} sent nothing for {idle_timeout_s} s") from None
            raise ProtocolError(
                self.peer, f"a frame stalled: not complete {self.frame_timeout_s} s after it began"
            ) from None
        message = decode(frame_type, payload, self.peer)
        self.bytes_received += frame_bytes(message)
        return message

    async def _exactly(self, count: int, what: str, already: int) -> bytes:
        try:
            return await self.reader.readexactly(count)
        except asyncio.IncompleteReadError as error:
            raise ProtocolError(
                self.peer,
                f"truncated {what}: {already + len(error.partial)} of {already + count} bytes",
            ) from None

    def close(self, error: str | None = None) -> None:
        """Close the connection, telling the peer why first if `error` is given."""
        if self.closed:
            return
        self.closed = True
        if error is not None and not self.writer.is_closing():
            with contextlib.suppress(ConnectionError, RuntimeError):
                self.writer.write(encode(ErrorNotice(error)))
        self.writer.close()

    def reject(self, error: ProtocolError) -> None:
        """Log a bad frame naming the peer and close only this connection."""
        log.error("%s; closing the connection to %s", error, self.peer)
        self.close(error.problem)
