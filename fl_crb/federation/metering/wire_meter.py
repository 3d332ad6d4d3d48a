"""Count the bytes Flower puts on the wire, per node and per HTTP endpoint, without root.

A SuperNode talks to the SuperLink over one HTTP/1.1 port (Fleet API: register, pull
messages, pull and push objects, heartbeats...). `WireMeter` listens on one loopback port
per SuperNode and forwards every byte to the SuperLink, counting TCP payload bytes in
each direction: everything HTTP carries, framing (request lines, headers) and Flower's
protobuf included; TCP/IP headers are not (about 52 bytes per segment on loopback; the
Mininet face can read true interface counters instead). Because each node has its own
port, bytes are attributed to nodes exactly.

When the stream is plain HTTP (the `--insecure` deployments), the meter also follows
request boundaries (request line, Content-Length) and labels bytes with the request's
path, e.g. `/v1/fleet/pull-messages`; a response's bytes go to the request it answers
(httpx does not pipeline). Under TLS the bytes are opaque: they are counted under the
label `tls`, still exact per node and direction.

Counters are cumulative; `snapshot()` returns them, and any process can read the same
snapshot as JSON from the control port (`read_snapshot(meter.control_address)`). The
authority takes one before and after each exchange: the difference is that exchange's
bytes per node and endpoint (plus whatever idle polling happened meanwhile, which is
part of Flower's real cost).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import defaultdict

_METHODS = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"PATCH ", b"HEAD ", b"OPTIONS ")
_MAX_HEADER_BYTES = 64 << 10
TLS_LABEL, CONNECT_LABEL = "tls", "connect"

Snapshot = dict[str, dict[str, dict[str, int]]]
"""node name → label → {"up_bytes", "down_bytes", "requests"}."""


class _RequestTracker:
    """Follows HTTP/1.1 requests in a node → SuperLink byte stream to label the bytes."""

    def __init__(self) -> None:
        self.label = CONNECT_LABEL
        self._header = b""
        self._body_left = 0
        self._opaque = False

    def feed(self, data: bytes) -> list[tuple[str, int, bool]]:
        """Split `data` into (label, bytes, starts_a_request) pieces."""
        pieces: list[tuple[str, int, bool]] = []
        position = 0
        while position < len(data):
            if self._opaque:
                pieces.append((self.label, len(data) - position, False))
                break
            if self._body_left:
                taken = min(self._body_left, len(data) - position)
                pieces.append((self.label, taken, False))
                self._body_left -= taken
                position += taken
                continue
            buffered = self._header + data[position:]
            if not any(m.startswith(buffered[:8]) or buffered.startswith(m) for m in _METHODS):
                self._opaque, self.label = True, TLS_LABEL
                pieces.append((self.label, len(self._header) + len(data) - position, False))
                self._header = b""
                break
            end = buffered.find(b"\r\n\r\n")
            if end < 0:
                if len(buffered) > _MAX_HEADER_BYTES:
                    self._opaque = True
                self._header = buffered
                break
            head = buffered[: end + 4]
            position += len(head) - len(self._header)
            self._header = b""
            self.label, self._body_left, chunked = _parse_head(head)
            self._opaque = chunked
            pieces.append((self.label, len(head), True))
        return pieces


def _parse_head(head: bytes) -> tuple[str, int, bool]:
    """(path, Content-Length, opaque) of an HTTP request head; opaque: body length unknown."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    path = parts[1] if len(parts) > 1 else "?"
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            if not value.strip().isdigit():
                return path, 0, True  # unparseable: count the rest of the stream unlabelled
            length = int(value.strip())
        elif name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    return path, length, chunked


class WireMeter:
    """Counting TCP proxies on loopback, one per node, in front of the SuperLink."""

    def __init__(self, upstream_host: str, upstream_port: int, listen_host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self.ports: dict[str, int] = {}
        """Listening port per node name (point that node's --superlink here)."""
        self.control_address = ""
        """host:port serving the snapshot as JSON to whoever connects."""
        self._counts: Snapshot = defaultdict(lambda: defaultdict(_zero))
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._servers: list[asyncio.base_events.Server] = []

    def start(self, node_names: list[str]) -> dict[str, int]:
        """Open one listening port per node and the control port; returns the node ports."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(node_names), self._loop)
        future.result(timeout=10)
        return dict(self.ports)

    def snapshot(self) -> Snapshot:
        """Cumulative counters (a copy)."""
        with self._lock:
            return {
                node: {k: dict(v) for k, v in labels.items()}
                for node, labels in self._counts.items()
            }

    def stop(self) -> None:
        """Close every listener and connection and end the proxy thread."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self, node_names: list[str]) -> None:
        for name in node_names:
            server = await asyncio.start_server(
                lambda r, w, name=name: self._proxy(name, r, w), self.listen_host, 0
            )
            self._servers.append(server)
            self.ports[name] = server.sockets[0].getsockname()[1]
        control = await asyncio.start_server(self._serve_snapshot, self.listen_host, 0)
        self._servers.append(control)
        self.control_address = f"{self.listen_host}:{control.sockets[0].getsockname()[1]}"

    async def _close(self) -> None:
        """Stop listening, then cancel every connection's task and wait until each has
        ended (closing its sockets), so that none is left pending when the loop stops."""
        for server in self._servers:
            server.close()
        current = asyncio.current_task()
        # A connection accepted just before the close may start its task meanwhile: repeat.
        while tasks := [task for task in asyncio.all_tasks() if task is not current]:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    async def _serve_snapshot(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(json.dumps(self.snapshot()).encode())
        await writer.drain()
        writer.close()

    def _count(self, node: str, label: str, direction: str, size: int, request: bool) -> None:
        with self._lock:
            counter = self._counts[node][label]
            counter[direction] += size
            counter["requests"] += request

    async def _proxy(self, node: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        tracker = _RequestTracker()

        async def upward() -> None:
            while data := await reader.read(1 << 16):
                for label, size, starts in tracker.feed(data):
                    self._count(node, label, "up_bytes", size, starts)
                up_writer.write(data)
                await up_writer.drain()
            up_writer.write_eof()

        async def downward() -> None:
            while data := await up_reader.read(1 << 16):
                self._count(node, tracker.label, "down_bytes", len(data), False)
                writer.write(data)
                await writer.drain()
            writer.write_eof()

        try:
            await asyncio.gather(upward(), downward())
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for stream in (writer, up_writer):
                stream.close()


def _zero() -> dict[str, int]:
    return {"up_bytes": 0, "down_bytes": 0, "requests": 0}


def read_snapshot(address: str, timeout_s: float = 5.0) -> Snapshot:
    """The snapshot served at a meter's `control_address` (from any process)."""
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as connection:
        chunks = []
        while chunk := connection.recv(1 << 16):
            chunks.append(chunk)
    return json.loads(b"".join(chunks))


def difference(after: Snapshot, before: Snapshot) -> Snapshot:
    """Counters of `after` minus those of `before`, keeping only what changed."""
    result: Snapshot = {}
    for node, labels in after.items():
        for label, counter in labels.items():
            old = before.get(node, {}).get(label, _zero())
            change = {key: counter[key] - old.get(key, 0) for key in counter}
            if any(change.values()):
                result.setdefault(node, {})[label] = change
    return result
