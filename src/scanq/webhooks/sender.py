"""One webhook POST over a pinned connection, bounded in time and in what it reads.

Why not httpx: its transports resolve the URL's host themselves and pool
connections, and a webhook must go to the address the SSRF rules just
checked (``urls.pin_endpoint``), so, like the scanners' ``httpwire``, this
sends one HTTP/1.1 request with ``Connection: close`` over
``Session.connect`` and reads the status line and headers only:

- HTTPS verifies the certificate chain and the host name (SNI and the check
  use the URL's name; the packets go to the checked address);
- redirects are not followed: a 3xx is a failed attempt (the URL is the
  tenant's to fix; following it could lead anywhere);
- the connect timeout covers resolving, the TCP connect and the TLS
  handshake (each); the read timeout covers sending the body and reading the
  answer's head; the whole attempt is bounded by ``Sender.attempt_bound_s``;
- at most ``MAX_RESPONSE_BYTES`` of the answer are read (the head), plus a
  short snippet of the body of an error answer for the delivery's last error.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from scanq.exceptions import ScanqError
from scanq.scanners.net.connect import ConnectFailed, Connection, Session
from scanq.scanners.net.httpwire import HttpError, HttpResponse, parse_head
from scanq.webhooks.urls import HTTPS, EndpointRules, pin_endpoint

# The answer is read up to here (its status line and headers): an endpoint cannot make a worker buffer more.
MAX_RESPONSE_BYTES = 64 * 1024
# Of an error answer's body, this much goes into the delivery's last error (what the receiver said).
ERROR_SNIPPET_BYTES = 200
ERROR_SNIPPET_WAIT_S = 0.2
MAX_ERROR_CHARS = 500
# Printable ASCII stays as written in the request target; anything else is percent-encoded.
_PATH_SAFE = "".join(chr(code) for code in range(0x21, 0x7F))
_DEFAULT_PORTS = {"https": 443, "http": 80}


class AttemptFailed(Exception):
    """The endpoint did not give a usable answer; the message says what happened."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SendResult:
    """How one attempt went: the status code the endpoint answered, and what was wrong (None on a 2xx)."""

    status_code: int | None = None
    error: str | None = None

    @property
    def is_delivered(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


class Sender:
    """Sends one delivery at a time per call; safe to share across concurrent deliveries.

    Args:
        rules: the SSRF rules each attempt resolves and checks the URL with.
        connect_timeout_s: resolving, connecting, the TLS handshake: each at most this long.
        read_timeout_s: sending the body and reading the answer's head, once connected.
        tls: the client TLS context (default: the system's trust store, host names checked).
    """

    def __init__(
        self,
        rules: EndpointRules,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.rules = rules
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.tls = tls if tls is not None else ssl.create_default_context()

    @property
    def attempt_bound_s(self) -> float:
        """The longest one ``send`` can take: resolve, connect and handshake, then the answer."""
        return 3 * self.connect_timeout_s + self.read_timeout_s

    async def send(self, url: str, *, headers: Mapping[str, str], body: bytes) -> SendResult:
        """POST ``body`` to ``url`` with ``headers``; never raises for anything the endpoint or network does.

        Args:
            url: the endpoint's stored URL, or a callback's (checked again here, ``urls.pin_endpoint``).
            headers: lowercase names, values without line breaks (``signing.webhook_headers``).
            body: the JSON body.
        """
        try:
            async with asyncio.timeout(self.attempt_bound_s):
                session = await pin_endpoint(url, self.rules)
                return await self._post(session, headers=headers, body=body)
        except ScanqError as exc:  # refused (SSRF rules), does not resolve, resolver failed
            return SendResult(error=exc.message)
        except (ConnectFailed, AttemptFailed) as exc:
            return SendResult(error=str(exc))
        except TimeoutError:
            return SendResult(error=f"no answer within {self.attempt_bound_s:g}s")
        except ssl.SSLCertVerificationError as exc:
            return SendResult(error=f"TLS certificate refused: {exc.verify_message or exc.reason}")
        except ssl.SSLError as exc:
            return SendResult(error=f"TLS failed: {exc.reason or exc}")
        except HttpError as exc:
            return SendResult(error=f"not an HTTP answer: {exc}")
        except (ConnectionError, OSError) as exc:
            return SendResult(error=f"connection failed: {exc.strerror or exc}")

    async def _post(self, session: Session, *, headers: Mapping[str, str], body: bytes) -> SendResult:
        target = session.target
        scheme = target.scheme or HTTPS
        port = target.port or _DEFAULT_PORTS[scheme]
        request = _request_bytes(session, port=port, scheme=scheme, headers=headers, body=body)
        async with session.connect(port=port) as conn:
            if scheme == HTTPS:
                await self._start_tls(conn, host=target.host)
            try:
                async with asyncio.timeout(self.read_timeout_s):
                    conn.writer.write(request)
                    await conn.writer.drain()
                    head = await conn.reader.readuntil(b"\r\n\r\n")
            except TimeoutError:
                raise AttemptFailed(f"no answer within {self.read_timeout_s:g}s of the request") from None
            except asyncio.LimitOverrunError:
                raise AttemptFailed(f"answer headers larger than {MAX_RESPONSE_BYTES} bytes: not read") from None
            except asyncio.IncompleteReadError as exc:
                raise AttemptFailed(f"connection closed after {len(exc.partial)} bytes of the answer") from None
            response = parse_head(head)
            if 200 <= response.status < 300:
                return SendResult(status_code=response.status)
            return SendResult(status_code=response.status, error=await _failure(response, conn))

    async def _start_tls(self, conn: Connection, *, host: str) -> None:
        # The URL's name (or IP literal) is what the certificate must be for; the socket is the checked address.
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await conn.writer.start_tls(
                    self.tls, server_hostname=host, ssl_handshake_timeout=self.connect_timeout_s
                )
        except TimeoutError:
            raise AttemptFailed(f"TLS handshake not done within {self.connect_timeout_s:g}s") from None


def _request_bytes(session: Session, *, port: int, scheme: str, headers: Mapping[str, str], body: bytes) -> bytes:
    target = session.target
    host = f"[{target.host}]" if target.ip is not None and target.ip.version == 6 else target.host
    host_header = host if port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    lines = [f"POST {quote(target.path, safe=_PATH_SAFE)} HTTP/1.1", f"host: {host_header}"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} has a line break")
        lines.append(f"{name}: {value}")
    lines += [f"content-length: {len(body)}", "connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _failure(response: HttpResponse, conn: Connection) -> str:
    """The last error of an answer that is not a 2xx: the status, where a redirect pointed, what the body said."""
    if 300 <= response.status < 400:
        location = response.header("location") or "no Location"
        return _clean(f"HTTP {response.status}: redirect not followed (to {location})")
    try:
        async with asyncio.timeout(ERROR_SNIPPET_WAIT_S):
            snippet = await conn.reader.read(ERROR_SNIPPET_BYTES)
    except (TimeoutError, ConnectionError, OSError, ssl.SSLError):
        snippet = b""
    said = snippet.decode("utf-8", "replace").strip()
    return _clean(f"HTTP {response.status} {response.reason}".rstrip() + (f": {said}" if said else ""))


def _clean(text: str) -> str:
    """One printable line, at most ``MAX_ERROR_CHARS``: what the receiver sent goes into a stored field."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text)
    return flat if len(flat) <= MAX_ERROR_CHARS else flat[: MAX_ERROR_CHARS - 1] + "…"


__all__ = ["MAX_RESPONSE_BYTES", "SendResult", "Sender"]
