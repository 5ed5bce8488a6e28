"""One webhook POST against local servers: what is sent, redirects not followed, timeouts, caps, TLS checks."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

from scanq.config import PluginSettings, Settings
from scanq.exceptions import ConfigError
from scanq.scanners.net.settings import NetSettings
from scanq.webhooks.runner import delivery_tls
from scanq.webhooks.sender import MAX_RESPONSE_BYTES, Sender
from scanq.webhooks.urls import EndpointRules

NAME = "hooks.example.com"
HEADERS = {"content-type": "application/json", "webhook-id": "42", "webhook-timestamp": "1700000000"}
BODY = b'{"type":"scan.completed","data":{"scan_id":"x"}}'

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Server:
    port: int
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)  # (head, body)
    connections: int = 0


@contextlib.asynccontextmanager
async def serve(answer: Handler | bytes, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    """A server on 127.0.0.1 that reads one request, records it, then answers ``answer`` (bytes or a handler)."""
    state = Server(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            state.requests.append((head, await reader.readexactly(length)))
            if isinstance(answer, bytes):
                writer.write(answer)
                await writer.drain()
            else:
                await answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await server.wait_closed()


def sender(tmp_path: Path, *, read_timeout_s: float = 2.0, tls: ssl.SSLContext | None = None) -> Sender:
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 {NAME}\n")
    cfg = Settings(webhook_allowlist=("127.0.0.1/32",), plugins=PluginSettings(NetSettings(hosts_file=str(hosts))))
    return Sender(EndpointRules.from_settings(cfg), connect_timeout_s=1.0, read_timeout_s=read_timeout_s, tls=tls)


async def test_a_2xx_is_delivered_and_the_request_is_one_post_with_the_headers_and_body(tmp_path: Path) -> None:
    async with serve(b"HTTP/1.1 204 No Content\r\n\r\n") as server:
        sent = await sender(tmp_path).send(f"http://{NAME}:{server.port}/hooks/scanq?x=1", headers=HEADERS, body=BODY)

    assert (sent.status_code, sent.error, sent.is_delivered) == (204, None, True)
    [(head, body)] = server.requests
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /hooks/scanq?x=1 HTTP/1.1"
    assert f"host: {NAME}:{server.port}" in lines
    assert f"content-length: {len(BODY)}" in lines
    assert "webhook-id: 42" in lines and "connection: close" in lines
    assert body == BODY


async def test_a_redirect_is_not_followed_and_counts_as_a_failure(tmp_path: Path) -> None:
    answer = b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://169.254.169.254/latest\r\nContent-Length: 0\r\n\r\n"
    async with serve(answer) as server:
        sent = await sender(tmp_path).send(f"http://127.0.0.1:{server.port}/hook", headers=HEADERS, body=BODY)

    assert sent.status_code == 307 and not sent.is_delivered
    assert sent.error == "HTTP 307: redirect not followed (to http://169.254.169.254/latest)"
    assert server.connections == 1


async def test_an_error_answer_records_its_status_and_the_start_of_its_body(tmp_path: Path) -> None:
    answer = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 22\r\n\r\ninvalid signature\r\n\x00!!"
    async with serve(answer) as server:
        sent = await sender(tmp_path).send(f"http://127.0.0.1:{server.port}/hook", headers=HEADERS, body=BODY)

    assert sent.status_code == 400
    assert sent.error is not None and sent.error.startswith("HTTP 400 Bad Request: invalid signature")
    assert sent.error.isprintable()


async def test_no_more_than_the_cap_of_an_answer_is_read(tmp_path: Path) -> None:
    huge = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * (MAX_RESPONSE_BYTES + 1024) + b"\r\n\r\n"
    async with serve(huge) as server:
        sent = await sender(tmp_path).send(f"http://127.0.0.1:{server.port}/hook", headers=HEADERS, body=BODY)

    assert sent.status_code is None
    assert sent.error == f"answer headers larger than {MAX_RESPONSE_BYTES} bytes: not read"


async def test_an_endpoint_that_never_answers_times_out(tmp_path: Path) -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # no answer, until the client gives up and closes

    async with serve(hang) as server:
        sent = await sender(tmp_path, read_timeout_s=0.2).send(
            f"http://127.0.0.1:{server.port}/hook", headers=HEADERS, body=BODY
        )

    assert sent == type(sent)(status_code=None, error="no answer within 0.2s of the request")


async def test_a_closed_port_is_a_connection_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    sent = await sender(tmp_path).send(f"http://127.0.0.1:{port}/hook", headers=HEADERS, body=BODY)

    assert sent.status_code is None
    assert sent.error == f"127.0.0.1:{port} refused the connection"


async def test_a_garbled_answer_is_not_http(tmp_path: Path) -> None:
    async with serve(b"SSH-2.0-OpenSSH_9.6\r\n\r\n") as server:
        sent = await sender(tmp_path).send(f"http://127.0.0.1:{server.port}/hook", headers=HEADERS, body=BODY)

    assert sent.status_code is None and sent.error is not None and sent.error.startswith("not an HTTP answer")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, name: str, seen: list[str | None]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(ctx)
    ctx.sni_callback = lambda sock, server_name, context: seen.append(server_name)
    return ctx


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def test_https_sends_the_name_as_sni_and_checks_the_certificate_against_it(
    tmp_path: Path, ca: trustme.CA
) -> None:
    seen: list[str | None] = []
    tls = server_context(ca, NAME, seen)
    async with serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", tls=tls) as server:
        sent = await sender(tmp_path, tls=client_context(ca)).send(
            f"https://{NAME}:{server.port}/hook", headers=HEADERS, body=BODY
        )

    assert (sent.status_code, sent.error) == (200, None)
    assert seen == [NAME]
    [(_, body)] = server.requests
    assert body == BODY


async def test_https_refuses_a_certificate_for_another_name(tmp_path: Path, ca: trustme.CA) -> None:
    tls = server_context(ca, "other.example.com", [])
    async with serve(b"HTTP/1.1 200 OK\r\n\r\n", tls=tls) as server:
        sent = await sender(tmp_path, tls=client_context(ca)).send(
            f"https://{NAME}:{server.port}/hook", headers=HEADERS, body=BODY
        )

    assert sent.status_code is None
    assert sent.error is not None and sent.error.startswith("TLS certificate refused")
    assert server.requests == []


async def test_https_refuses_an_untrusted_certificate(tmp_path: Path, ca: trustme.CA) -> None:
    tls = server_context(trustme.CA(), NAME, [])
    async with serve(b"HTTP/1.1 200 OK\r\n\r\n", tls=tls) as server:
        sent = await sender(tmp_path, tls=client_context(ca)).send(
            f"https://{NAME}:{server.port}/hook", headers=HEADERS, body=BODY
        )

    assert sent.error is not None and "certificate" in sent.error


async def test_the_ca_file_setting_trusts_an_internal_ca_and_the_default_does_not(
    tmp_path: Path, ca: trustme.CA
) -> None:
    ca_file = tmp_path / "internal-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    answers = []
    async with serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", tls=server_context(ca, NAME, [])) as server:
        for settings in (Settings(webhook_ca_file=str(ca_file)), Settings()):
            sent = await sender(tmp_path, tls=delivery_tls(settings)).send(
                f"https://{NAME}:{server.port}/hook", headers=HEADERS, body=BODY
            )
            answers.append((sent.status_code, (sent.error or "")[:22]))

    assert answers == [(200, ""), (None, "TLS certificate refuse")]


def test_a_ca_file_that_is_not_a_file_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SCANQ_WEBHOOK_CA_FILE: not a file"):
        Settings(webhook_ca_file=str(tmp_path / "missing.pem"))


def test_the_attempt_bound_covers_resolve_connect_handshake_and_answer(tmp_path: Path) -> None:
    assert sender(tmp_path, read_timeout_s=10.0).attempt_bound_s == 3 * 1.0 + 10.0
