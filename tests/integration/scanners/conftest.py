"""Fixtures for the scanner integration tests: a test CA, local servers, a DNS server, the scanners' context."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from scanq.scanners.net.settings import NetSettings
from scanq.scanners.settings import ScannerContext
from tests.integration.scanners.servers import DnsServer, Record, Servers, start_dns
from tests.reference.dns_lab import Lab, LabServer, serve
from tests.reference.dns_lab import Record as LabRecord

LOOPBACK_ALLOWLIST = ("127.0.0.0/8",)


@pytest.fixture
def ca() -> trustme.CA:
    """A CA made for this test; trusted by the scanners through ``NetSettings.ca_file``."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def make_context(ca_file: Path) -> Callable[..., ScannerContext]:
    """A context for scanning 127.0.0.1: loopback allow-listed, the test CA trusted, short timeouts.

    Keyword arguments override fields of ``NetSettings``.
    """

    def make(**overrides: Any) -> ScannerContext:
        values: dict[str, Any] = {
            "target_allowlist": LOOPBACK_ALLOWLIST,
            "ca_file": str(ca_file),
            "connect_timeout_seconds": 2.0,
            "plugin_timeout_seconds": 20.0,
        }
        values.update(overrides)
        return ScannerContext(NetSettings(**values))

    return make


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    running = Servers()
    yield running
    await running.close()


@pytest.fixture
async def dns_server() -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await dns_server(records)`` starts a DNS server and returns (server, "ip:port")."""
    transports = []

    async def start(records: list[Record]) -> tuple[DnsServer, str]:
        server, transport, address = await start_dns(records)
        transports.append(transport)
        return server, address

    yield start
    for transport in transports:
        transport.close()


@pytest.fixture
def lab_server() -> Iterator[Callable[..., LabServer]]:
    """Factory: ``lab_server(records, sign=(zone, …))`` serves DNS records (UDP and TCP, DNSSEC) from
    ``tests/reference/dns_lab.py``, each zone in ``sign`` signed with a DS that matches."""
    with contextlib.ExitStack() as stack:

        def start(records: list[LabRecord], *, sign: tuple[str, ...] = ()) -> LabServer:
            lab = Lab().add(*records)
            for zone in sign:
                lab.sign(zone)
            return stack.enter_context(serve(lab=lab))

        yield start
