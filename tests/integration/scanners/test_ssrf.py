"""Target safety end to end: names resolved (local DNS server or the system resolver) and every address checked."""

from __future__ import annotations

import pytest

from scanq.exceptions import ScannerError, TargetRefused
from scanq.scanners.net.addresses import AddressPolicy
from scanq.scanners.net.settings import NetSettings
from scanq.scanners.net.targets import parse_target, resolve_target
from scanq.scanners.net.tls import TlsScanner
from scanq.scanners.net.web import HttpScanner
from scanq.scanners.settings import ScannerContext
from tests.integration.scanners.servers import HttpReply, a, aaaa, closed_port

SCAN_ID = "0190c0de-0000-7000-8000-000000000005"

RECORDS = [
    ("private.evil.test", "A", a("10.1.2.3")),
    ("mixed.evil.test", "A", a("93.184.215.14")),
    ("mixed.evil.test", "A", a("192.168.1.1")),
    ("loop.evil.test", "A", a("127.0.0.1")),
    ("metadata.evil.test", "A", a("169.254.169.254")),
    ("azure.evil.test", "A", a("168.63.129.16")),
    ("mapped.evil.test", "AAAA", aaaa("::ffff:127.0.0.1")),
    ("public.example.test", "A", a("93.184.215.14")),
    ("public.example.test", "AAAA", aaaa("2606:2800:21f:cb07:6820:80da:af6b:8b2c")),
]


@pytest.fixture
async def nameserver(dns_server) -> str:
    _, address = await dns_server(RECORDS)
    return str(address)


async def resolve(name: str, nameserver: str, *allowlist: str):
    policy = AddressPolicy.from_cidrs(allowlist)
    target = parse_target(name, policy=policy)
    return await resolve_target(target, policy=policy, nameservers=(nameserver,))


async def test_public_name_resolves_to_checked_addresses_ipv4_first(nameserver):
    addresses = await resolve("public.example.test", nameserver)
    assert [str(x) for x in addresses] == ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("private.evil.test", "10.1.2.3 is private"),
        ("mixed.evil.test", "192.168.1.1 is private"),  # one bad address refuses the whole name
        ("loop.evil.test", "127.0.0.1 is loopback"),
        ("metadata.evil.test", "metadata"),
        ("azure.evil.test", "Azure WireServer"),
        ("mapped.evil.test", "IPv4-mapped for 127.0.0.1: 127.0.0.1 is loopback"),
    ],
)
async def test_names_resolving_to_refused_addresses_are_refused(nameserver, name, reason):
    with pytest.raises(TargetRefused, match="resolves to a refused address") as info:
        await resolve(name, nameserver)
    assert reason in str(info.value)


async def test_loopback_only_through_the_allow_list(nameserver):
    assert [str(x) for x in await resolve("loop.evil.test", nameserver, "127.0.0.0/8")] == ["127.0.0.1"]


async def test_metadata_refused_even_when_everything_is_allow_listed(nameserver):
    for name in ("metadata.evil.test", "azure.evil.test"):
        with pytest.raises(TargetRefused, match=r"metadata|WireServer"):
            await resolve(name, nameserver, "0.0.0.0/0", "::/0")


async def test_unknown_name_is_a_permanent_error(nameserver):
    with pytest.raises(ScannerError, match="does not exist"):
        await resolve("nothing.evil.test", nameserver)


async def test_system_resolver_localhost_refused_by_default_allowed_by_allow_list():
    with pytest.raises(TargetRefused, match="loopback"):
        parse_target("localhost", policy=AddressPolicy())
    policy = AddressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"])
    addresses = await resolve_target(parse_target("localhost", policy=policy), policy=policy)
    assert addresses and all(address.is_loopback for address in addresses)


async def test_submit_time_refusal_reaches_the_plugins():
    scanner = TlsScanner(ScannerContext())
    with pytest.raises(TargetRefused, match="loopback"):
        await scanner.validate(target="127.0.0.1", options={})
    with pytest.raises(TargetRefused, match="IPv4-mapped"):
        await scanner.validate(target="::ffff:127.0.0.1", options={})
    with pytest.raises(TargetRefused, match="metadata"):
        await TlsScanner(ScannerContext(NetSettings(target_allowlist=("169.254.0.0/16",)))).validate(
            target="169.254.169.254", options={}
        )
    allowed = TlsScanner(ScannerContext(NetSettings(target_allowlist=("127.0.0.0/8",))))
    assert await allowed.validate(target="127.0.0.1", options={}) == "127.0.0.1"


async def test_run_time_refusal_is_a_permanent_scan_error(make_context, nameserver):
    scanner = TlsScanner(make_context(nameservers=(nameserver,), target_allowlist=()))
    with pytest.raises(ScannerError, match=r"10\.1\.2\.3 is private"):
        await scanner.run(scan_id=SCAN_ID, target="private.evil.test", options={})


async def test_allow_list_removed_after_submit_refuses_at_run_time():
    submitted = await TlsScanner(ScannerContext(NetSettings(target_allowlist=("127.0.0.0/8",)))).validate(
        target="127.0.0.1", options={}
    )
    with pytest.raises(ScannerError, match="loopback"):
        await TlsScanner(ScannerContext()).run(scan_id=SCAN_ID, target=submitted, options={"port": closed_port()})


async def test_a_scan_resolves_its_target_once(make_context, dns_server, servers):
    """No re-resolution (DNS rebinding): every connection of a scan uses the address checked first."""
    server, nameserver = await dns_server([("loop.evil.test", "A", a("127.0.0.1"))])

    def reply(request_line: str) -> HttpReply:
        hop = int(request_line.split()[1].strip("/") or 0)
        return HttpReply(status=302, headers=[("Location", f"/{hop + 1}")]) if hop < 3 else HttpReply()

    http_port = await servers.http(reply)
    scanner = HttpScanner(make_context(nameservers=(nameserver,)))
    await scanner.run(
        scan_id=SCAN_ID, target="loop.evil.test", options={"http_port": http_port, "https_port": closed_port()}
    )
    assert len(servers.requests) == 4  # the first request and three same-host redirects
    assert server.queries.count(("loop.evil.test", "A")) == 1
