"""Submit-time target checks through the real ingest app: names are resolved, and a refused one is a 422.

Requests go through the whole ingest stack in-process (``tests.integration.apps``)
over a real SQLite store; the scanners resolve through the local DNS test server
(``--scanner-nameservers``). Resolution is the only traffic at submit time: no
scanner connects to a target before the scan runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from scanq.config import PluginSettings
from scanq.scanners.net.settings import NetSettings
from tests.integration.apps import Services, services, snapshot
from tests.integration.scanners.servers import DnsServer, a, aaaa, closed_port, mx, txt

PUBLIC_IP = "93.184.215.14"  # public, not a documentation range; nothing is ever sent to it
RECORDS = [
    ("private.evil.test", "A", a("10.0.0.1")),
    ("loop.evil.test", "A", a("127.0.0.1")),
    ("metadata.evil.test", "A", a("169.254.169.254")),
    ("mapped.evil.test", "AAAA", aaaa("::ffff:127.0.0.1")),
    ("mixed.evil.test", "A", a(PUBLIC_IP)),
    ("mixed.evil.test", "A", a("192.168.1.1")),
    ("public.example.test", "A", a(PUBLIC_IP)),
    ("mail-only.example.test", "MX", mx("mx.elsewhere.test")),
    ("mail-only.example.test", "TXT", txt("v=spf1 -all")),
]
CONNECTING_SCANNERS = ["tls", "ports", "http", "surface"]

ServicesFactory = Callable[..., Any]


@pytest.fixture
async def dns(dns_server: Callable[..., Any]) -> tuple[DnsServer, str]:
    server, address = await dns_server(RECORDS)
    return server, str(address)


@pytest.fixture
def ingest(sqlite_url: str, dns: tuple[DnsServer, str]) -> ServicesFactory:
    """Factory: ``async with ingest(**net) as api`` serves ingest on a fresh store, resolving through ``dns``.

    Keyword arguments override fields of the network scanners' ``NetSettings``.
    """

    @asynccontextmanager
    async def start(**net: Any) -> AsyncIterator[Services]:
        values: dict[str, Any] = {"nameservers": (dns[1],), "connect_timeout_seconds": 2.0}
        values.update(net)
        async with services(sqlite_url, plugins=PluginSettings(NetSettings(**values))) as api:
            yield api

    return start


async def submit(api: Services, target: str, scanner: str, **extra: Any) -> httpx.Response:
    return await api.ingest.post("/scans", json={"target": target, "scanner": scanner, **extra})


async def assert_refused(api: Services, response: httpx.Response, *, code: str, reason: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert reason in error["message"]
    counts, scans = await snapshot(api.store)
    assert scans == []
    assert not any(counts.values())


@pytest.mark.parametrize("scanner", CONNECTING_SCANNERS)
async def test_a_name_resolving_to_a_private_address_is_a_422_and_nothing_is_stored(ingest, scanner):
    async with ingest() as api:
        response = await submit(api, "private.evil.test", scanner)
        await assert_refused(api, response, code="target_refused", reason="10.0.0.1 is private")
        assert "private.evil.test resolves to a refused address" in response.json()["error"]["message"]


async def test_a_url_target_is_resolved_too(ingest):
    async with ingest() as api:
        response = await submit(api, "https://Private.Evil.Test/login", "http")
        await assert_refused(api, response, code="target_refused", reason="10.0.0.1 is private")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("mixed.evil.test", "192.168.1.1 is private"),  # one refused address refuses the name
        ("mapped.evil.test", "IPv4-mapped for 127.0.0.1: 127.0.0.1 is loopback"),
    ],
)
async def test_every_address_is_checked(ingest, name, reason):
    async with ingest() as api:
        await assert_refused(api, await submit(api, name, "tls"), code="target_refused", reason=reason)


async def test_loopback_name_refused_by_default_and_accepted_through_the_allow_list(ingest):
    async with ingest() as api:
        response = await submit(api, "loop.evil.test", "tls")
        await assert_refused(api, response, code="target_refused", reason="127.0.0.1 is loopback")
    async with ingest(target_allowlist=("127.0.0.0/8",)) as api:
        response = await submit(api, "Loop.Evil.Test.", "tls")
        assert response.status_code == 202, response.text
        scan = await api.store.get(scan_id=response.json()["scan_id"])
        assert scan.target == "loop.evil.test"


async def test_metadata_name_refused_even_when_everything_is_allow_listed(ingest):
    async with ingest(target_allowlist=("0.0.0.0/0", "::/0")) as api:
        response = await submit(api, "metadata.evil.test", "ports")
        await assert_refused(api, response, code="target_refused", reason="metadata")


@pytest.mark.parametrize("scanner", CONNECTING_SCANNERS)
async def test_a_public_name_is_accepted_after_resolving_only(ingest, dns, scanner):
    server, _ = dns
    async with ingest() as api:
        response = await submit(api, "Public.Example.Test", scanner)
        assert response.status_code == 202, response.text
        assert response.json()["target"] == "public.example.test"
        assert response.json()["status"] == "Accepted"
    # Submit time asks the resolver for addresses and nothing else (the scan connects when it runs).
    assert set(server.queries) == {("public.example.test", "A"), ("public.example.test", "AAAA")}


async def test_a_name_that_does_not_resolve_is_a_422(ingest):
    async with ingest() as api:
        response = await submit(api, "nothing.example.test", "tls")
        await assert_refused(api, response, code="invalid_request", reason="nothing.example.test does not exist")
        response = await submit(api, "mail-only.example.test", "ports")
        await assert_refused(api, response, code="invalid_request", reason="has no A or AAAA record")


async def test_an_unreachable_resolver_is_a_422_saying_to_try_again(ingest):
    async with ingest(nameservers=(f"127.0.0.1:{closed_port()}",), connect_timeout_seconds=0.3) as api:
        response = await submit(api, "public.example.test", "tls")
        await assert_refused(api, response, code="invalid_request", reason="try again")


async def test_the_dns_scanner_does_not_resolve_the_target(ingest, dns):
    """It only queries resolvers about the domain, never connects to it: its addresses are not its business."""
    server, _ = dns
    async with ingest() as api:
        for name in ("private.evil.test", "nothing.example.test"):
            assert (await submit(api, name, "dns")).status_code == 202
    assert server.queries == []


async def test_surface_accepts_a_name_without_address_when_dns_runs(ingest):
    async with ingest() as api:
        # The dns plugin can still check a mail-only domain; the network plugins will report the missing address.
        accepted = await submit(api, "mail-only.example.test", "surface")
        assert accepted.status_code == 202, accepted.text
        only_network = await submit(api, "mail-only.example.test", "surface", options={"plugins": ["tls", "ports"]})
        assert only_network.status_code == 422
        assert "has no A or AAAA record" in only_network.json()["error"]["message"]
        refused = await submit(api, "private.evil.test", "surface", options={"plugins": ["dns", "tls"]})
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "target_refused"
        assert len((await snapshot(api.store))[1]) == 1


async def test_a_batch_with_one_refused_name_stores_nothing(ingest):
    async with ingest() as api:
        items = [{"target": "public.example.test", "scanner": "tls"}, {"target": "private.evil.test", "scanner": "tls"}]
        response = await api.ingest.post("/scans/batch", json={"scans": items})
        await assert_refused(api, response, code="target_refused", reason="scans[1]: target private.evil.test")


async def test_mock_and_noop_do_not_resolve(ingest, dns):
    server, _ = dns
    async with ingest() as api:
        for scanner in ("mock", "noop"):
            response = await submit(api, "private.evil.test", scanner)
            assert response.status_code == 202, response.text
    assert server.queries == []


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"min_sleep": "abc"}, "option 'min_sleep' must be a number"),
        ({"min_slep": 1}, "unknown mock option(s): min_slep"),
        ({"max_sleep": -1}, "option 'max_sleep' must not be negative"),
        ({"min_sleep": 3, "max_sleep": 1}, "option 'max_sleep' must be at least min_sleep"),
    ],
)
async def test_mock_options_are_checked_at_submit(ingest, options, named):
    async with ingest() as api:
        response = await submit(api, "anything", "mock", options=options)
        await assert_refused(api, response, code="invalid_request", reason=named)
        batch = await api.ingest.post("/scans/batch", json={"scans": [{"scanner": "noop"}, {"options": options}]})
        await assert_refused(api, batch, code="invalid_request", reason=named)
