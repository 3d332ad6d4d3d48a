"""A terminal's link, captured from the real wire and split by what each byte carried.

The relay uplink's cost on a terminal's own link (its UPLOAD frames, the TCP/IP headers
of the segments carrying them, the TCP acknowledgements the terminal sends for the
edge's STORED and ACK frames) shares one TCP connection with everything else the
terminal says to its managing edge (tasks, loads, outcomes, weights). Neither counters
nor a run without uploads can separate a few hundred bytes a second from megabytes of
tasks, so the packets themselves are captured and classified:

- `LinkCapture` records every TCP packet on an interface (a raw `AF_PACKET` socket: root
  only) while a run goes on, with its length on the wire (Ethernet header included) and,
  for the runtime's connections (their first payload bytes are a runtime frame header,
  `protocol.MAGIC`), its payload; it fails if the kernel dropped any packet.
- `classify_links` puts each runtime connection's two byte streams back together, walks
  their frames (`protocol.HEADER`), and gives every packet's wire bytes to the frame
  types it carried, in proportion to the bytes of each (its headers too). A packet
  carrying no payload (a pure TCP acknowledgement) goes to the frame types of the bytes
  it newly acknowledges in the other direction; a SYN, FIN or RST to "connection".

On loopback (`lo`, where the local face runs) each packet is seen twice, going out and
coming in; only the outgoing copy is kept. Loopback's MTU is 64 KiB, so a frame bigger
than an Ethernet segment travels in fewer segments than it would on a terminal's real
link; `relay_model` counts the Ethernet segments.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field

from fl_crb.runtime.protocol import HEADER, MAGIC, PROTOCOL_VERSION, FrameType

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
ETHERNET_HEADER_BYTES = 14
TCP_SYN, TCP_FIN, TCP_RST, TCP_ACK = 0x02, 0x01, 0x04, 0x10
CONNECTION = "connection"
"""Class of SYN, FIN and RST packets (opening and closing a connection)."""
ACK_OF = "ack of "
"""Prefix of the class of a pure TCP acknowledgement: "ack of UPLOAD"."""
_RUNTIME_PREFIX = MAGIC + bytes([PROTOCOL_VERSION])


@dataclass(frozen=True, slots=True)
class Packet:
    """One captured TCP packet."""

    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    ack: int
    flags: int
    wire_bytes: int
    """Length on the wire from the Ethernet header on."""
    payload: bytes | None
    """TCP payload (None when the connection is not the runtime's)."""
    payload_bytes: int


class LinkCapture:
    """Every TCP packet on `interface` while the context is open (root only)."""

    def __init__(self, interface: str = "lo", receive_buffer_bytes: int = 64 << 20):
        self.interface = interface
        self.receive_buffer_bytes = receive_buffer_bytes
        self.packets: list[Packet] = []
        self.dropped = 0
        self._runtime: dict[tuple, bool] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def __enter__(self) -> LinkCapture:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise PermissionError(
                f"capturing the packets on {self.interface} needs root (a raw AF_PACKET "
                "socket): run the overhead study as root to measure the relay uplink"
            ) from None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer_bytes)
        sock.bind((self.interface, 0))
        sock.settimeout(0.1)
        sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)  # reset the kernel's counters
        self._socket = sock
        self._thread = threading.Thread(target=self._run, name="link-capture", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.3)  # the last packets still in the socket's queue
        self._stop.set()
        assert self._thread is not None and self._socket is not None
        self._thread.join()
        _, drops = struct.unpack("II", self._socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        self.dropped += drops
        self._socket.close()

    def check_complete(self) -> None:
        """Raise if the kernel dropped packets: the classification would be wrong."""
        if self.dropped:
            raise RuntimeError(
                f"the capture on {self.interface} lost {self.dropped} packets (the socket's "
                "queue overflowed): the terminal link's bytes cannot be classified"
            )

    def _run(self) -> None:
        assert self._socket is not None
        while not self._stop.is_set():
            try:
                data, address = self._socket.recvfrom(1 << 17)
            except TimeoutError:
                continue
            if self.interface == "lo" and address[2] != PACKET_OUTGOING:
                continue  # loopback: the incoming copy of a packet already seen
            packet = self._parse(data)
            if packet is not None:
                self.packets.append(packet)

    def _parse(self, data: bytes) -> Packet | None:
        if len(data) < ETHERNET_HEADER_BYTES + 20 or data[12:14] != b"\x08\x00":
            return None
        ip = ETHERNET_HEADER_BYTES
        ip_header = (data[ip] & 0x0F) * 4
        if data[ip + 9] != socket.IPPROTO_TCP:
            return None
        total = struct.unpack_from(">H", data, ip + 2)[0]
        tcp = ip + ip_header
        sport, dport, seq, ack, offset_flags = struct.unpack_from(">HHIIH", data, tcp)
        start = tcp + (offset_flags >> 12) * 4
        payload = data[start : ip + total]
        src = (socket.inet_ntoa(data[ip + 12 : ip + 16]), sport)
        dst = (socket.inet_ntoa(data[ip + 16 : ip + 20]), dport)
        key = (src, dst) if src < dst else (dst, src)
        if payload and key not in self._runtime:
            self._runtime[key] = payload.startswith(_RUNTIME_PREFIX)
        keep = self._runtime.get(key, False)
        return Packet(
            src,
            dst,
            seq,
            ack,
            offset_flags & 0x3F,
            ETHERNET_HEADER_BYTES + total,
            payload if keep else None,
            len(payload),
        )


@dataclass
class LinkBytes:
    """One runtime connection's wire bytes, by class, seen from the terminal."""

    run_id: int
    """The run the connection belongs to (its HELLO)."""
    terminal: int
    """0-based terminal index (its HELLO)."""
    edge: int
    """0-based edge index (its WELCOME)."""
    sent: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Terminal → edge wire bytes by class: a frame type's name, "ack of TYPE", or
    "connection"."""
    received: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Edge → terminal wire bytes by class."""
    sent_packets: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Terminal → edge packets by class (fractions where a packet carried several)."""
    uploads: dict[int, int] = field(default_factory=dict)
    """Post id → bytes of the upload blob (each handed upload once)."""
    weights_versions: set[int] = field(default_factory=set)
    """Weights versions whose WEIGHTS frames arrived."""


def link_rows(links: list[LinkBytes]) -> list[dict]:
    """The classified links as CSV rows: terminal, edge, direction, class, wire bytes."""
    return [
        {
            "run_id": link.run_id,
            "terminal": link.terminal,
            "edge": link.edge,
            "direction": direction,
            "class": name,
            "wire_bytes": size,
        }
        for link in links
        for direction, classes in (("sent", link.sent), ("received", link.received))
        for name, size in sorted(classes.items())
    ]


_WEIGHTS_VERSION = struct.Struct(">Q")
_POST_ID = struct.Struct(">Q")


def classify_links(packets: list[Packet]) -> list[LinkBytes]:
    """Every runtime connection of the capture, classified (see the module docstring)."""
    flows: dict[tuple, list[Packet]] = defaultdict(list)
    for packet in packets:
        if packet.payload is not None or packet.payload_bytes == 0:
            flows[(packet.src, packet.dst)].append(packet)
    links = []
    for (client, server), outgoing in flows.items():
        first = next((p for p in outgoing if p.payload_bytes), None)
        if first is None or not first.payload or first.payload[3] != FrameType.HELLO:
            continue  # not a terminal's side of a runtime connection
        incoming = flows.get((server, client), [])
        up, down = _Stream(outgoing), _Stream(incoming)
        run_id, terminal = up.hello()
        link = LinkBytes(run_id=run_id, terminal=terminal, edge=down.welcome_edge())
        link.uploads = up.uploads()
        link.weights_versions = down.weights_versions()
        _attribute(outgoing, up, down, link.sent, link.sent_packets)
        _attribute(incoming, down, up, link.received, defaultdict(float))
        links.append(link)
    return links


class _Stream:
    """One direction of a runtime connection: its bytes and its frames."""

    def __init__(self, packets: list[Packet]):
        data = [p for p in packets if p.payload_bytes and p.payload is not None]
        self.base = data[0].seq if data else 0
        size = max((self.offset(p.seq) + p.payload_bytes for p in data), default=0)
        stream = bytearray(size)
        for packet in data:
            start = self.offset(packet.seq)
            stream[start : start + packet.payload_bytes] = packet.payload
        self.bytes = bytes(stream)
        self.frames: list[tuple[int, int, str]] = []
        """(start, end, frame type name), in stream order."""
        position = 0
        while position + HEADER.size <= len(self.bytes):
            magic, version, kind, length = HEADER.unpack_from(self.bytes, position)
            if magic != MAGIC or version != PROTOCOL_VERSION:
                raise RuntimeError(
                    f"captured runtime stream broken at byte {position} (a lost segment?)"
                )
            end = position + HEADER.size + length
            self.frames.append((position, end, FrameType(kind).name))
            position = end
        self._starts = [start for start, _, _ in self.frames]

    def offset(self, seq: int) -> int:
        return (seq - self.base) % (1 << 32)

    def shares(self, start: int, end: int) -> dict[str, int]:
        """Bytes of each frame type within stream bytes [start, end)."""
        shares: dict[str, int] = defaultdict(int)
        index = max(bisect_right(self._starts, start) - 1, 0)
        while index < len(self.frames) and self.frames[index][0] < end:
            frame_start, frame_end, name = self.frames[index]
            overlap = min(end, frame_end) - max(start, frame_start)
            if overlap > 0:
                shares[name] += overlap
            index += 1
        return shares

    def _payloads(self, kind: str) -> list[bytes]:
        return [
            self.bytes[start + HEADER.size : end]
            for start, end, name in self.frames
            if name == kind
        ]

    def hello(self) -> tuple[int, int]:
        """(run id, terminal index) of the connection's HELLO."""
        return struct.unpack(">QI", self._payloads("HELLO")[0])

    def welcome_edge(self) -> int:
        welcomes = self._payloads("WELCOME")
        return struct.unpack(">QH", welcomes[0])[1] if welcomes else -1

    def uploads(self) -> dict[int, int]:
        return {
            _POST_ID.unpack_from(payload)[0]: len(payload) - _POST_ID.size
            for payload in self._payloads("UPLOAD")
        }

    def weights_versions(self) -> set[int]:
        return {_WEIGHTS_VERSION.unpack_from(p)[0] for p in self._payloads("WEIGHTS")}


def _attribute(
    packets: list[Packet],
    own: _Stream,
    other: _Stream,
    wire: dict[str, float],
    counts: dict[str, float],
) -> None:
    """Give each packet's wire bytes to the classes it carried (module docstring)."""
    acked = 0
    for packet in packets:
        if packet.flags & (TCP_SYN | TCP_FIN | TCP_RST):
            wire[CONNECTION] += packet.wire_bytes
            counts[CONNECTION] += 1
            continue
        newly = other.offset(packet.ack) if packet.flags & TCP_ACK else -1
        if packet.payload_bytes:
            start = own.offset(packet.seq)
            shares = own.shares(start, start + packet.payload_bytes)
            prefix = ""
            if acked < newly <= len(other.bytes):
                acked = newly  # an acknowledgement riding on data costs nothing more
        else:
            if newly > len(other.bytes) or newly <= acked:  # a window update or duplicate
                wire[ACK_OF + "nothing new"] += packet.wire_bytes
                counts[ACK_OF + "nothing new"] += 1
                continue
            shares, acked = other.shares(acked, newly), newly
            prefix = ACK_OF
        total = sum(shares.values())
        for name, size in shares.items():
            wire[prefix + name] += packet.wire_bytes * size / total
            counts[prefix + name] += size / total
