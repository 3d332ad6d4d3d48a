"""The run service on the authority's host: settings, time, hellos, reports, over HTTPS.

The parties of a role deployment reach the authority's host here before anything else
(`service_client`). It serves, with TLS (the SuperLink's certificate and key of the
authority's bundle, which name the addresses the parties dial; they check it against
ca.crt of their own bundle):

    POST /settings   signed (`signed_requests`; the first may carry a null run id: the
                     party learns it here): the run's `RunSettings` and its
                     `RunProgress` (edges' addresses, the epoch once chosen, the phase)
    POST /time       {"received_unix_s": t2, "answered_unix_s": t3} for the party's
                     clock offset (`clock_offset`); unsigned, cheap, on a kept-alive
                     connection so that the TLS handshake is not in the measurement
    POST /hello      signed (`signed_requests`): role, clock offset, and for an edge its
                     runtime server's address; answers the epoch (null until chosen)
    POST /report     signed: the party's end-of-run report for the summary
    POST /weights    signed, edges only: the edge learner's starting weights file

A signed request that does not verify, names a host the authority's bundle does not
know, or a role other than the host's is refused (HTTP 4xx with the reason), counted by
code and logged with the peer's address. Once `quorum` hosts said hello,
`quorum_reached` is set; the authority then starts its rounds and, once they serve,
calls `start`, which chooses the epoch `start_lead_s` ahead on the authority's clock
(the parties poll their progress for it); a party that says hello later gets the same
epoch.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fl_crb.federation.roles.clock_offset import ClockOffset, flagged
from fl_crb.federation.roles.settings import (
    FINISHED,
    RUNNING,
    EdgeRuntime,
    RunProgress,
    RunSettings,
    settings_json,
)
from fl_crb.federation.roles.signed_requests import (
    SIGNATURE_HEADER,
    RequestRefused,
    RequestVerifier,
)
from fl_crb.runtime.config import Address

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
"""A request body above this is refused (a report is a few kB)."""
REQUEST_TIMEOUT_S = 15.0
"""A connection silent this long (mid-request or idle between requests) is closed."""


class RunService:
    """The state behind the endpoints: settings, progress, offsets, reports, refusals."""

    def __init__(
        self,
        settings: RunSettings,
        verifier: RequestVerifier,
        roles: dict[str, str],
        quorum: int,
        start_lead_s: float,
        start_weights: dict[str, Path] | None = None,
        note: Callable[[str], None] = print,
    ) -> None:
        if not 1 <= quorum <= len(roles):
            raise ValueError(f"start quorum {quorum}: expected 1..{len(roles)} (the parties)")
        self.settings = settings
        self.verifier = verifier
        self.roles = dict(roles)
        """Host → "edge" or "terminal": every party the run expects."""
        self.quorum = quorum
        self.start_lead_s = start_lead_s
        self.start_weights = dict(start_weights or {})
        """Edge → its learner's starting weights file."""
        self.note = note
        """Where the service's one-line notes go (the authority's output)."""
        self.progress = RunProgress()
        self.offsets: dict[str, ClockOffset] = {}
        self.reports: dict[str, dict] = {}
        self.refusals: dict[str, int] = {}
        """Refused requests by code."""
        self.refused: list[str] = []
        """Each refusal's message (naming the peer)."""
        self.quorum_reached = threading.Event()
        """Set once `quorum` parties said hello."""
        self._lock = threading.Lock()

    # -- the endpoints' work ------------------------------------------------------------

    def settings_body(self, body: dict | None = None, peer: str = "") -> dict:
        """The settings and the progress (for a verified request `body` from `peer`)."""
        with self._lock:
            return settings_json(self.settings, self.progress)

    def hello(self, body: dict, peer: str) -> dict:
        """Record a verified hello; the epoch (None until `start` chose it)."""
        host, role = body["host"], body.get("role")
        if role != self.roles.get(host):
            raise RequestRefused(
                "wrong-role",
                403,
                f"hello from {host} at {peer} says role {role!r}; {host} is "
                f"{self.roles.get(host, 'not a party of this run')!r}",
            )
        offset = _clock_offset(body.get("clock"), host, peer)
        runtime = None
        if role == "edge":
            runtime = _address(body.get("runtime"), host, peer)
        with self._lock:
            self.offsets[host] = offset
            edges = self.progress.edges
            if runtime is not None:
                edges = (*(e for e in edges if e.edge != host), EdgeRuntime(host, runtime))
            hellos = self.progress.hellos
            first = host not in hellos
            if first:
                hellos = (*hellos, host)
            phase, epoch = self.progress.phase, self.progress.epoch_unix_s
            self.progress = RunProgress(phase, epoch, edges, hellos)
            if len(hellos) >= self.quorum:
                self.quorum_reached.set()
        where = f" at {runtime.host}:{runtime.port}" if runtime else ""
        late = " (after the epoch)" if epoch is not None and first and time.time() > epoch else ""
        mark = " FLAGGED" if flagged(offset.offset_s, self.settings.slot_s) else ""
        self.note(
            f"hello from {role} {host} ({peer}){where}{late}: clock offset "
            f"{offset.offset_s * 1e3:+.2f} ms ± {offset.delay_s * 5e2:.2f} ms{mark}; "
            f"{len(self.progress.hellos)}/{len(self.roles)} said hello"
        )
        return {"epoch_unix_s": epoch}

    def start(self) -> float:
        """Choose the epoch, `start_lead_s` from now (once the start quorum said hello and
        the authority's rounds serve); the epoch. Called once."""
        with self._lock:
            if not self.quorum_reached.is_set() or self.progress.epoch_unix_s is not None:
                raise RuntimeError(
                    f"the epoch is chosen once, after the start quorum ({self.quorum}) said "
                    f"hello; {len(self.progress.hellos)} did, epoch {self.progress.epoch_unix_s}"
                )
            p = self.progress
            epoch = time.time() + self.start_lead_s
            self.progress = RunProgress(RUNNING, epoch, p.edges, p.hellos)
        return epoch

    def report(self, body: dict, peer: str) -> dict:
        """Keep a party's end-of-run report."""
        report = body.get("report")
        if not isinstance(report, dict):
            raise ValueError(f"report from {body['host']} at {peer}: expected an object")
        with self._lock:
            self.reports[body["host"]] = report
        self.note(f"report from {body['host']} ({len(self.reports)}/{len(self.roles)})")
        return {"ok": True}

    def weights(self, body: dict, peer: str) -> bytes:
        """An edge's starting weights file."""
        host = body["host"]
        if self.roles.get(host) != "edge":
            raise RequestRefused("wrong-role", 403, f"{host} at {peer}: only edges get weights")
        path = self.start_weights.get(host)
        if path is None:
            raise ValueError(f"{host} at {peer}: this run's learners start fresh, no weights")
        return Path(path).read_bytes()

    def finish(self) -> None:
        """The authority is done: the parties may stop their SuperNodes and report."""
        with self._lock:
            p = self.progress
            self.progress = RunProgress(FINISHED, p.epoch_unix_s, p.edges, p.hellos)

    def refuse(self, error: RequestRefused) -> None:
        with self._lock:
            self.refusals[error.code] = self.refusals.get(error.code, 0) + 1
            self.refused.append(str(error))
        self.note(f"refused: {error}")


def _clock_offset(value: object, host: str, peer: str) -> ClockOffset:
    fields = ("offset_s", "delay_s", "samples")
    if not isinstance(value, dict) or not all(
        isinstance(value.get(f), int | float) and math.isfinite(value[f]) for f in fields
    ):
        raise ValueError(f"hello from {host} at {peer}: clock must hold numbers {fields}")
    return ClockOffset(float(value["offset_s"]), float(value["delay_s"]), int(value["samples"]))


def _address(value: object, host: str, peer: str) -> Address:
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("host"), str)
        or not value["host"]
        or not isinstance(value.get("port"), int)
        or not 0 < value["port"] < 65536
    ):
        raise ValueError(
            f"hello from edge {host} at {peer}: runtime must be {{host: text, port: 1..65535}}, "
            f"got {value!r}"
        )
    return Address(value["host"], value["port"])


# -- HTTPS ---------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """One connection: TLS handshake in its own thread, then its requests (kept alive)."""

    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT_S
    server: RunServer

    def setup(self) -> None:
        self.request.settimeout(REQUEST_TIMEOUT_S)
        # Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm
        # holds the body for the client's delayed ACK (~40 ms), one way only, which a
        # time answer would count as a clock offset of half of it.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    @property
    def peer(self) -> str:
        return f"{self.client_address[0]}:{self.client_address[1]}"

    def do_GET(self) -> None:
        self._json(404, {"error": f"no GET {self.path}; POST /settings, signed"})

    def do_POST(self) -> None:
        received = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= MAX_BODY_BYTES:
            self._json(413, {"error": f"body of {length} bytes; at most {MAX_BODY_BYTES}"})
            return
        data = self.rfile.read(length)
        if self.path == "/time":
            self._json(200, {"received_unix_s": received}, stamp="answered_unix_s")
            return
        service = self.server.service
        handlers = {
            "/settings": service.settings_body,
            "/hello": service.hello,
            "/report": service.report,
            "/weights": service.weights,
        }
        handler = handlers.get(self.path)
        if handler is None:
            self._json(
                404, {"error": f"no {self.path}; POST /settings, /time, /hello, /report, /weights"}
            )
            return
        signature = self.headers.get(SIGNATURE_HEADER, "")
        try:
            body = service.verifier.verify(
                data, signature, self.peer, any_run=self.path == "/settings"
            )
            result = handler(body, self.peer)
        except RequestRefused as error:
            service.refuse(error)
            self._json(error.status, {"error": str(error), "code": error.code})
            return
        except (ValueError, OSError) as error:
            self._json(400, {"error": str(error)})
            return
        if isinstance(result, bytes):
            self._send(200, result, "application/octet-stream")
        else:
            self._json(200, result)

    def _json(self, status: int, body: dict, stamp: str | None = None) -> None:
        if stamp is not None:
            body = {**body, stamp: time.time()}
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, data: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.peer, format % args)


class RunServer(ThreadingHTTPServer):
    """The run service's HTTPS server, in a thread of its own (`start`, `stop`)."""

    daemon_threads = True

    def __init__(
        self, service: RunService, listen: str, port: int, certificate: Path, key: Path
    ) -> None:
        self.service = service
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(str(certificate), str(key))
        super().__init__((listen, port), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, name="run-service", daemon=True)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request, client_address) -> None:
        """A connection that fails (a TLS handshake refused, a peer gone): one log line."""
        import sys

        error = sys.exc_info()[1]
        log.warning("run service: connection from %s:%s: %s", *client_address[:2], error)
