"""The ports scanner against local banner servers, a closed port and a filtered (backlog-full) port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

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
