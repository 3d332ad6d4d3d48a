"""One framed TCP connection between a terminal and an edge server, with byte accounting.

Sending never waits: frames go to the transport's buffer, so a slow or dead peer cannot
stall the sender's slot loop. A peer whose unsent backlog grows past
`max_backlog_bytes` is not reading; the connection is closed with a clear error
instead of letting memory grow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fl_crb.runtime.protocol import (
    ErrorNotice,
    Message,
    ProtocolError,
    TaskData,
    encode,
    frame_bytes,
    read_message,
)

log = logging.getLogger(__name__)


class PeerGone(Exception):
    """The connection is closed or its peer stopped reading."""


class FramedConnection:
    """Frames over an asyncio stream pair, with the bytes sent and received counted."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
        max_backlog_bytes: int,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer
        """Who is on the other side, for messages (refined once the peer says who it is)."""
        self.max_backlog_bytes = max_backlog_bytes
        self.bytes_sent = 0
        self.bytes_received = 0
        self.closed = False

    def send(self, message: Message) -> None:
        """Queue one frame; raises `PeerGone` if the connection is closed or backed up."""
        if self.closed or self.writer.is_closing():
            raise PeerGone(f"connection to {self.peer} is closed")
        backlog = self.writer.transport.get_write_buffer_size()
        if backlog > self.max_backlog_bytes:
            self.close(f"{backlog} unsent bytes: the peer is not reading")
            raise PeerGone(f"{self.peer} is not reading ({backlog} bytes unsent)")
        frame = encode(message)
        self.writer.write(frame)
        self.bytes_sent += len(frame)

    def send_data(self, task_id: int, payload: memoryview, start: int, stop: int, chunk: int):
        """Send payload[start:stop] of a task as DATA frames of at most `chunk` bytes."""
        for offset in range(start, stop, chunk):
            self.send(TaskData(task_id, payload[offset : min(offset + chunk, stop)]))

    async def receive(self) -> Message | None:
        """The next message, or None once the peer closed cleanly between frames.

        Raises `ProtocolError` (bad or truncated frame) or `ConnectionError`.
        """
        message = await read_message(self.reader, self.peer)
        if message is not None:
            self.bytes_received += frame_bytes(message)
        return message

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
