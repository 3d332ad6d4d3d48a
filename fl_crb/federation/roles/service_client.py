"""A party's side of the run service: settings, clock offset, signed hello and report.

Every call goes over HTTPS to the authority's host, checking its certificate against
ca.crt of the party's own bundle and the address the party was told (`--authority`).
While the authority is unreachable (not started yet, restarting, a network hiccup) a
call is retried with backoff (`RETRY_FIRST_S` doubling to `RETRY_MAX_S`), one line per
attempt saying so, until `give_up_s`; a certificate that does not fit is not retried:
its error says how to fix the keys.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fl_crb.federation.roles.clock_offset import ClockOffset, TimeSample, best_offset
from fl_crb.federation.roles.settings import RunProgress, RunSettings, parse_settings
from fl_crb.federation.roles.signed_requests import SIGNATURE_HEADER, RequestSigner

DEFAULT_SERVICE_PORT = 9300
"""The run service's port unless `--authority HOST:PORT` says otherwise."""
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 8.0
CALL_TIMEOUT_S = 15.0
TIME_SAMPLES = 8
"""Time requests per offset measurement; the least-delayed one counts."""

_Result = TypeVar("_Result")


class ServiceError(RuntimeError):
    """The run service refused a request, or stayed unreachable; the message says which."""


def parse_authority(text: str) -> tuple[str, int]:
    """HOST[:PORT] (IPv6 as [ADDR]:PORT) → (host, port); ValueError naming the flag."""
    text = text.strip()
    host, port = text, DEFAULT_SERVICE_PORT
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise ValueError(f"--authority {text!r}: expected [IPv6]:PORT")
        host, port_text = text[1:end], rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        port_text = ""
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"--authority {text!r}: port {port_text!r} is not 1..65535")
        port = int(port_text)
    if not host:
        raise ValueError(f"--authority {text!r}: expected HOST[:PORT], e.g. 10.0.0.1:9300")
    return host, port


class ServiceClient:
    """Calls to the run service at `authority` (HOST[:PORT]), checked against `ca_certificate`."""

    def __init__(
        self,
        authority: str,
        ca_certificate: Path,
        say: Callable[[str], None] = print,
        give_up_s: float = 600.0,
    ) -> None:
        self.host, self.port = parse_authority(authority)
        self.tls = ssl.create_default_context(cafile=str(ca_certificate))
        self.say = say
        self.give_up_s = give_up_s
        self._stopped = threading.Event()
        self.local_address: str | None = None
        """This host's address on its last connection to the authority (what an edge
        advertises unless told otherwise)."""

    def stop(self) -> None:
        """End any retrying (from another thread: the role command is being stopped)."""
        self._stopped.set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _connect(self) -> http.client.HTTPSConnection:
        connection = http.client.HTTPSConnection(
            self.host, self.port, context=self.tls, timeout=CALL_TIMEOUT_S
        )
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see run_service
        self.local_address = connection.sock.getsockname()[0]
        return connection

    def _retrying(self, what: str, call: Callable[[], _Result]) -> _Result:
        """`call()`, retried with backoff while the authority is unreachable."""
        give_up = time.monotonic() + self.give_up_s
        wait_s = RETRY_FIRST_S
        while True:
            if self._stopped.is_set():
                raise ServiceError(f"stopped while calling the authority at {self.address}")
            try:
                return call()
            except ssl.SSLCertVerificationError as error:
                raise ServiceError(
                    f"the authority's certificate at {self.address} does not check out against "
                    f"this bundle's ca.crt ({error.verify_message}): use the address the keys "
                    f"were made for, or make them again with `fl-crb keys ... --san {self.host}`"
                ) from None
            except (OSError, http.client.HTTPException) as error:
                if time.monotonic() + wait_s > give_up:
                    raise ServiceError(
                        f"the authority's run service at {self.address} stayed unreachable for "
                        f"{self.give_up_s:g} s ({what}): {error}"
                    ) from None
                self.say(
                    f"authority at {self.address} unreachable ({what}: {error}); "
                    f"retrying in {wait_s:g} s"
                )
                self._stopped.wait(wait_s)
                wait_s = min(2 * wait_s, RETRY_MAX_S)

    def _request(self, method: str, path: str, data: bytes = b"", headers=None) -> bytes:
        connection = self._connect()
        try:
            connection.request(method, path, body=data or None, headers=headers or {})
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status != 200:
            try:
                reason = json.loads(body)["error"]
            except (ValueError, KeyError, TypeError):
                reason = body[:200].decode(errors="replace")
            raise ServiceError(f"the authority at {self.address} refused {path}: {reason}")
        return body

    # -- the calls ------------------------------------------------------------------------

    def settings(self, signer: RequestSigner) -> tuple[RunSettings, RunProgress]:
        """POST /settings signed by `signer`, retried while unreachable."""
        body = self.signed("/settings", {"kind": "settings"}, signer)
        try:
            return parse_settings(json.loads(body), f"settings from {self.address}")
        except json.JSONDecodeError as error:
            raise ServiceError(f"settings from {self.address}: not JSON ({error})") from None

    def clock_offset(self, samples: int = TIME_SAMPLES) -> ClockOffset:
        """The authority's clock minus this host's, from `samples` time requests on one
        kept-alive connection (the TLS handshake stays out of the measurement)."""
        return self._retrying("time", lambda: self._measure(samples))

    def _measure(self, samples: int) -> ClockOffset:
        connection = self._connect()
        taken = []
        try:
            for _ in range(samples):
                sent = time.time()
                connection.request("POST", "/time", body=b"{}")
                response = connection.getresponse()
                body = json.loads(response.read())
                returned = time.time()
                taken.append(
                    TimeSample(sent, body["received_unix_s"], body["answered_unix_s"], returned)
                )
        finally:
            connection.close()
        return best_offset(taken)

    def signed(self, path: str, body: dict, signer: RequestSigner) -> bytes:
        """POST a request signed by `signer`, retried while unreachable (each attempt
        signed afresh: a nonce is used once)."""

        def attempt() -> bytes:
            data, signature = signer.sign(body)
            headers = {SIGNATURE_HEADER: signature, "Content-Type": "application/json"}
            return self._request("POST", path, data, headers)

        return self._retrying(path.strip("/"), attempt)
