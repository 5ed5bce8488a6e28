"""The ports scanner against local banner servers, a closed port and a filtered (backlog-full) port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trustme

from scanq.scanners.net.ports import PortsScanner
from tests.integration.scanners.servers import LOOPBACK, HttpReply, closed_port

SCAN_ID = "0190c0de-0000-7000-8000-000000000003"


@pytest.fixture
async def filtered_port() -> AsyncIterator[int]:
    """A port whose accept queue is full: new SYNs go unanswered, as behind a dropping firewall."""
    listener = socket.socket()
    listener.bind((LOOPBACK, 0))
    listener.listen(0)
    port: int = listener.getsockname()[1]
    _, filler = await asyncio.open_connection(LOOPBACK, port)
    yield port
    filler.close()
    listener.close()


@pytest.mark.slow
async def test_open_closed_and_filtered_ports_with_banners(make_context, servers, filtered_port):
    ssh = await servers.banner(b"SSH-2.0-OpenSSH_9.6p1 Debian\r\n")
    silent = await servers.banner(None)
    web = await servers.http(HttpReply(headers=[("Server", "nginx/1.25.3")]))
    closed = closed_port()
    scanner = PortsScanner(make_context(connect_timeout_seconds=0.5))
    result = await scanner.run(
        scan_id=SCAN_ID, target="127.0.0.1", options={"ports": [ssh, silent, web, closed, filtered_port]}
    )
    assert result["plugins"] == {"ports": "ok"}
    details = result["details"]["ports"]
    assert sorted(details["open"]) == sorted([ssh, silent, web])
    assert details["closed"] == [closed]
    assert details["filtered"] == [filtered_port]
    assert details["banners"] == {str(ssh): "SSH-2.0-OpenSSH_9.6p1 Debian", str(web): "HTTP 200 Server: nginx/1.25.3"}
    by_port = {f["asset"]["port"]: f for f in result["findings"]}
    assert {p for p, f in by_port.items() if f["status"] == "fail"} == {ssh, silent, web}
    assert by_port[ssh]["check_id"] == "ports.exposed"
    assert by_port[ssh]["evidence"]["actual"] == "open (SSH-2.0-OpenSSH_9.6p1 Debian)"
    assert by_port[closed]["status"] == "pass"
    assert by_port[closed]["evidence"]["actual"] == "closed"
    assert by_port[filtered_port]["evidence"]["actual"] == "filtered"
    # Ports outside the risky list are reported with the low severity of "other".
    assert by_port[ssh]["severity"] == "low"
    assert by_port[ssh]["title"] == f"Port {ssh}/tcp reachable from the internet"


async def test_sockets_per_target_bound_the_scan(make_context, servers):
    ports = [await servers.banner(b"220 ftp ready\r\n") for _ in range(6)]
    scanner = PortsScanner(make_context(sockets_per_target=2))
    result = await scanner.run(scan_id=SCAN_ID, target="127.0.0.1", options={"ports": ports})
    assert sorted(result["details"]["ports"]["open"]) == sorted(ports)
    assert servers.peak == 2


# --- services identified and graded by what answered ------------------------------------------


@pytest.fixture
async def speak() -> AsyncIterator[Callable[..., Awaitable[int]]]:
    """``await speak(handler, host=..., port=0, tls=None)`` starts a protocol speaker; returns its port."""
    started: list[asyncio.Server] = []
    talking: set[asyncio.StreamWriter] = set()

    async def start(handler, *, host: str = LOOPBACK, port: int = 0, tls: ssl.SSLContext | None = None) -> int:
        async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            talking.add(writer)
            with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError):
                async with asyncio.timeout(5):
                    await handler(reader, writer)
                    await writer.drain()
            writer.close()
            talking.discard(writer)

        server = await asyncio.start_server(guarded, host, port, ssl=tls, reuse_address=True)
        started.append(server)
        bound: int = server.sockets[0].getsockname()[1]
        return bound

    yield start
    for server in started:
        server.close()
    for writer in list(talking):  # a connection still open when the test ends is closed here, not by the GC
        writer.close()
    for server in started:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await server.wait_closed()


def redis_speaker(*, password: bool) -> Callable[..., Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"PING\r\n")
        if password:
            writer.write(b"-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n")
            return
        await reader.readuntil(b"server\r\n")
        info = b"# Server\r\nredis_version:7.2.4\r\nredis_mode:standalone\r\n"
        writer.write(b"+PONG\r\n$%d\r\n%s\r\n" % (len(info), info))

    return handle


def http_speaker(answer: bytes) -> Callable[..., Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)

    return handle


ES_ROOT = b'{"name":"n1","cluster_name":"c","version":{"number":"7.17.9"},"tagline":"You Know, for Search"}'
ES_OPEN = b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(ES_ROOT), ES_ROOT)
ES_LOCKED = (
    b'HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm="security" charset="UTF-8"\r\n'
    b'content-length: 52\r\n\r\n{"error":{"type":"security_exception"},"status":401}'
)


async def scan_ports(
    make_context, ports: list[int], *, target: str = "127.0.0.1"
) -> tuple[dict[int, dict[str, Any]], dict[str, Any]]:
    """(findings by port, the ``ports`` details)."""
    result = await PortsScanner(make_context()).run(scan_id=SCAN_ID, target=target, options={"ports": ports})
    return {f["asset"]["port"]: f for f in result["findings"]}, result["details"]["ports"]


@pytest.mark.slow
async def test_datastores_are_graded_by_whether_they_want_credentials(make_context, speak):
    # Ports outside the risky list: before, all four were "low" (graded by port number).
    open_redis = await speak(redis_speaker(password=False))
    locked_redis = await speak(redis_speaker(password=True))
    open_es = await speak(http_speaker(ES_OPEN))
    locked_es = await speak(http_speaker(ES_LOCKED))
    found, details = await scan_ports(make_context, [open_redis, locked_redis, open_es, locked_es])
    services = details["services"]
    assert services[str(open_redis)]["service"] == services[str(locked_redis)]["service"] == "redis"
    assert services[str(open_es)]["service"] == services[str(locked_es)]["service"] == "elasticsearch"
    assert found[open_redis]["severity"] == "critical"
    assert found[open_redis]["evidence"]["actual"] == "open (Redis 7.2.4, no authentication)"
    assert found[locked_redis]["severity"] == "high"
    assert found[locked_redis]["evidence"]["actual"] == "open (Redis, authentication required)"
    assert found[open_es]["severity"] == "critical"
    assert found[open_es]["evidence"]["actual"] == "open (Elasticsearch 7.17.9, no authentication)"
    assert found[locked_es]["severity"] == "high"


async def test_tls_only_endpoint_on_the_redis_port_is_not_critical(make_context, speak, ca, tmp_path):
    # A TLS endpoint that wants a client certificate: nothing inside can be reached. Before: critical, for its port.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("redis.shop.test").configure_cert(ctx)
    trustme.CA().configure_trust(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    host = "127.0.0.5"  # the machine's own Redis may hold 127.0.0.1:6379

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)

    try:
        await speak(silent, host=host, port=6379, tls=ctx)
    except OSError as exc:
        pytest.skip(f"cannot listen on {host}:6379: {exc}")
    found, details = await scan_ports(make_context, [6379], target=host)
    assert details["services"]["6379"]["service"] == "ssl"
    assert details["services"]["6379"]["tls"] is True
    assert found[6379]["severity"] == "low"
    assert found[6379]["title"] == "Port 6379/tcp reachable from the internet"
    assert found[6379]["evidence"]["actual"].startswith("open (TLS only")


async def test_binary_greetings_are_read_not_printed(make_context, speak):
    version = b"5.5.5-10.11.6-MariaDB-0+deb12u1"
    body = b"\x0a" + version + b"\x00" + b"\x2a\x00\x00\x00" + b"abcdefgh\x00" + b"\xfe\xf7\x2d\x02\x00\xff\x81"
    mariadb = await speak(lambda r, w: _say(r, w, len(body).to_bytes(3, "little") + b"\x00" + body))
    telnet = await speak(_telnetd)
    found, details = await scan_ports(make_context, [mariadb, telnet])
    assert found[mariadb]["evidence"]["actual"] == (
        "open (MariaDB 10.11.6, server version 5.5.5-10.11.6-MariaDB-0+deb12u1)"
    )
    assert found[mariadb]["severity"] == "high"
    assert found[telnet]["evidence"]["actual"] == "open (Debian GNU/Linux 12 shop login:)"
    assert found[telnet]["severity"] == "critical"
    assert details["services"][str(telnet)]["service"] == "telnet"


async def _say(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()
    await reader.read(1)  # until the client hangs up


async def _telnetd(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"\xff\xfd\x18\xff\xfd\x20\xff\xfd\x23\xff\xfd\x27")
    await writer.drain()
    answer = await reader.readexactly(12)
    assert answer == b"\xff\xfc\x18\xff\xfc\x20\xff\xfc\x23\xff\xfc\x27"  # WONT to each DO
    writer.write(b"\r\nDebian GNU/Linux 12\r\nshop login: ")
    await writer.drain()
    await reader.read(1)  # until the client hangs up
