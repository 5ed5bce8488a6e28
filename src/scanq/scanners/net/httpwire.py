"""A minimal HTTP/1.1 client over ``Session.connect``: one request, headers only.

Why not httpx: its transports resolve the URL's host themselves and pool
connections, so pinning every request to the address the policy checked (and
counting it against the target's socket limit) would mean fighting its
internals. The checks need only a status line and headers, so this client
sends one request with ``Connection: close``, reads at most
``MAX_HEADER_BYTES`` of headers, never reads a body, and keeps no pool.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from scanq.scanners.net.connect import Session

MAX_HEADER_BYTES = 64 * 1024
READ_TIMEOUT_S = 5.0
USER_AGENT = "scanq-scanner/1 (+outside-in security check)"


class HttpError(Exception):
    """The server did not answer with a readable HTTP response."""


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpResponse:
    """A status line and headers (names lowercased, order and repeats kept)."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)

    def header_list(self, name: str) -> list[str]:
        """Every value of header ``name`` (e.g. each ``Set-Cookie``)."""
        wanted = name.lower()
        return [value for key, value in self.headers if key == wanted]


async def request(
    session: Session,
    *,
    port: int,
    tls: ssl.SSLContext | None,
    method: str = "GET",
    path: str = "/",
    read_timeout_s: float = READ_TIMEOUT_S,
) -> HttpResponse:
    """Send one request to the session's checked address and read the response head.

    Args:
        session: the checked target (its name goes in ``Host`` and SNI).
        port: TCP port.
        tls: a client context for HTTPS, None for plain HTTP.
        method: ``GET`` or ``HEAD``.
        path: request target, starting with ``/``.
        read_timeout_s: how long the response head may take.

    Raises:
        ConnectFailed: no TCP connection.
        HttpError: not an HTTP response (garbage, too large, timed out, TLS failed).
    """
    request_bytes = _request_bytes(session, port=port, tls=tls is not None, method=method, path=path)
    try:
        async with session.connect(port=port, tls=tls) as conn:
            conn.writer.write(request_bytes)
            await conn.writer.drain()
            async with asyncio.timeout(read_timeout_s):
                head = await conn.reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise HttpError(f"response headers larger than {MAX_HEADER_BYTES} bytes") from None
    except asyncio.IncompleteReadError as exc:
        raise HttpError(f"connection closed after {len(exc.partial)} bytes, before the end of the headers") from None
    except TimeoutError:
        raise HttpError(f"no complete response head within {read_timeout_s:g}s") from None
    except ssl.SSLError as exc:
        raise HttpError(f"TLS handshake failed: {exc.reason or exc}") from None
    except ConnectionError as exc:
        raise HttpError(f"connection failed: {exc}") from None
    return parse_head(head)


def _request_bytes(session: Session, *, port: int, tls: bool, method: str, path: str) -> bytes:
    host = session.host if not session.target.is_ip or session.address.version == 4 else f"[{session.host}]"
    default_port = 443 if tls else 80
    host_header = host if port == default_port else f"{host}:{port}"
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host_header}",
        f"User-Agent: {USER_AGENT}",
        "Accept: */*",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def parse_head(head: bytes) -> HttpResponse:
    """Parse a status line and header block; raise ``HttpError`` if it is not HTTP/1.x."""
    text = head.decode("iso-8859-1")
    lines = text.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP/1.x response: {lines[0][:60]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if sep and name and name == name.strip():
            headers.append((name.lower(), value.strip()))
    return HttpResponse(status=int(parts[1]), reason=parts[2] if len(parts) > 2 else "", headers=tuple(headers))
