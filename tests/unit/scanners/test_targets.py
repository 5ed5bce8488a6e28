"""Parsing and normalising targets, and checking what they resolve to (the system resolver replaced: no I/O)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from pathlib import Path
from typing import Any

import pytest

from scanq.exceptions import ScannerError, TargetRefused, TransientScanError, ValidationError
from scanq.scanners.net.addresses import AddressPolicy
from scanq.scanners.net.hostsfile import HostsFile
from scanq.scanners.net.targets import (
    MAX_HOSTNAME_CHARS,
    MAX_TARGET_CHARS,
    check_resolution,
    normalise_hostname,
    parse_target,
    resolve_target,
)

POLICY = AddressPolicy()
OPEN_10 = AddressPolicy.from_cidrs(["10.0.0.0/8"])


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("  www.example.com  ", "www.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example.", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a-b.c0.example", "a-b.c0.example"),
    ],
)
def test_hostnames_are_normalised(raw, host):
    target = parse_target(raw, policy=POLICY)
    assert target.host == host
    assert target.ip is None
    assert str(target) == host


def test_ip_literals():
    assert parse_target("93.184.215.14", policy=POLICY).ip == ipaddress.ip_address("93.184.215.14")
    v6 = parse_target("[2606:4700:4700::1111]", policy=POLICY)
    assert v6.host == "2606:4700:4700::1111"
    assert parse_target("2606:4700:4700:0::1111", policy=POLICY).host == "2606:4700:4700::1111"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "needs a target"),
        ("", "needs a target"),
        (".", "hostname is empty"),
        ("exa mple.com", "whitespace"),
        ("example.com\\x", "backslash"),
        ("example.com:443", "not a hostname"),
        ("[2606:4700::1", "not a hostname"),
        ("2606:4700::1]", "not a hostname"),
        ("example.com/path", "not a hostname"),
        ("user@example.com", "not a hostname"),
        ("-bad.example.com", "invalid label"),
        ("bad-.example.com", "invalid label"),
        ("under_score.example.com", "invalid label"),
        ("a..example.com", "invalid label"),
        ("x" * 64 + ".example.com", "invalid label"),
        (("a" * 60 + ".") * 5 + "com", "longer than 253"),
        ("127.1", "non-canonical IP"),
        ("0x7f.1", "non-canonical IP"),
        ("2130706433", "non-canonical IP"),
        ("fe80::1%eth0", "zone ids"),
        ("\u0300a.example", "not a valid internationalised name"),
        ("http://example.com/", "not a URL"),
    ],
)
def test_malformed_targets_are_refused(raw, message):
    with pytest.raises(ValidationError, match=message):
        parse_target(raw, policy=POLICY)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("intranet", "single-label"),
        ("printer.local", ".local"),
        ("db.corp.internal", ".internal"),
        ("router.home.arpa", ".arpa"),
        ("1.0.0.127.in-addr.arpa", ".arpa"),
        ("x.onion", ".onion"),
        ("localhost", "loopback"),
        ("app.localhost", "loopback"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "IPv4-mapped"),
        ("10.0.0.1", "private"),
        ("169.254.169.254", "metadata"),
    ],
)
def test_internal_targets_are_refused_at_submit_time(raw, message):
    with pytest.raises(TargetRefused, match=message):
        parse_target(raw, policy=POLICY)


def test_allow_list_lets_localhost_through_only_when_both_loopbacks_are_open():
    with pytest.raises(TargetRefused):
        parse_target("localhost", policy=AddressPolicy.from_cidrs(["127.0.0.0/8"]))
    assert parse_target("localhost", policy=AddressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"])).host == "localhost"


def test_urls_only_where_allowed_and_normalised():
    target = parse_target("HTTPS://Bücher.Example.:8443/a/b?x=1#frag", policy=POLICY, allow_url=True)
    assert (target.scheme, target.host, target.port, target.path) == (
        "https",
        "xn--bcher-kva.example",
        8443,
        "/a/b?x=1",
    )
    assert str(target) == "https://xn--bcher-kva.example:8443/a/b?x=1"
    assert str(parse_target("http://example.com:80", policy=POLICY, allow_url=True)) == "http://example.com/"
    v6 = parse_target("http://[2606:4700::1]:8080/", policy=POLICY, allow_url=True)
    assert str(v6) == "http://[2606:4700::1]:8080/"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("ftp://example.com/", "scheme"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://:80/", "no host"),
        ("http://example.com:99999/", "malformed"),
        ("http://example.com:0/", "1-65535"),
        ("http://10.0.0.1/", "private"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
    ],
)
def test_bad_urls_are_refused(raw, message):
    with pytest.raises(ValidationError, match=message):
        parse_target(raw, policy=POLICY, allow_url=True)


def test_normalise_hostname_rejects_invalid_idna():
    with pytest.raises(ValidationError, match="not a valid internationalised name"):
        normalise_hostname("\u0300a.example")


def test_a_target_may_be_as_long_as_the_limit_and_no_longer():
    base = "https://example.com/"
    longest = base + "a" * (MAX_TARGET_CHARS - len(base))
    # Measured after the surrounding whitespace is stripped.
    assert str(parse_target(f"  {longest}  ", policy=POLICY, allow_url=True)) == longest
    with pytest.raises(ValidationError, match=f"longer than {MAX_TARGET_CHARS} characters"):
        parse_target(longest + "a", policy=POLICY, allow_url=True)


def test_a_hostname_may_be_as_long_as_the_limit_and_no_longer():
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(longest) == MAX_HOSTNAME_CHARS
    # The trailing dot of an absolute name does not count.
    assert parse_target(longest + ".", policy=POLICY).host == longest
    with pytest.raises(ValidationError, match=f"longer than {MAX_HOSTNAME_CHARS} characters"):
        parse_target("e" + longest, policy=POLICY)


def test_names_listed_in_the_hosts_file_pass_the_name_rules(tmp_path: Path):
    path = tmp_path / "hosts"
    path.write_text("10.0.0.5 db.corp.internal intranet\n127.0.0.1 localhost scanner.localhost\n")
    hosts = HostsFile(str(path))

    assert parse_target("DB.corp.internal.", policy=POLICY, hosts=hosts).host == "db.corp.internal"
    assert parse_target("intranet", policy=POLICY, hosts=hosts).host == "intranet"
    assert str(parse_target("http://intranet:8080/", policy=POLICY, allow_url=True, hosts=hosts)) == (
        "http://intranet:8080/"
    )
    # Only the listed names: the rest of .internal and other single labels stay refused.
    with pytest.raises(TargetRefused, match=r"\.internal"):
        parse_target("other.corp.internal", policy=POLICY, hosts=hosts)
    with pytest.raises(TargetRefused, match="single-label"):
        parse_target("printer", policy=POLICY, hosts=hosts)
    # Listing localhost does not open the loopback interface: the address rules still judge it.
    for name in ("localhost", "scanner.localhost"):
        with pytest.raises(TargetRefused, match="loopback"):
            parse_target(name, policy=POLICY, hosts=hosts)


class FakeResolver:
    """Stands in for the event loop's getaddrinfo: answers with ``addresses`` or raises ``error``."""

    def __init__(self, *addresses: str, error: BaseException | None = None, delay_s: float = 0.0) -> None:
        self.addresses, self.error, self.delay_s = addresses, error, delay_s
        self.asked: list[object] = []

    async def __call__(self, host: object, *args: object, **kwargs: object) -> list[Any]:
        self.asked.append(host)
        await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        infos = []
        for address in self.addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, 0, 0, 0) if family == socket.AF_INET6 else (address, 0)
            infos.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return infos


def system_resolver(monkeypatch: pytest.MonkeyPatch, *addresses: str, **kwargs: Any) -> FakeResolver:
    fake = FakeResolver(*addresses, **kwargs)
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake)
    return fake


async def resolve(name: str, policy: AddressPolicy = POLICY, **kwargs: Any) -> tuple[Any, ...]:
    return await resolve_target(parse_target(name, policy=policy), policy=policy, **kwargs)


async def test_every_address_is_checked_ipv4_first_without_repeats(monkeypatch):
    fake = system_resolver(monkeypatch, "2606:4700::1", "93.184.215.14", "2606:4700::1", "93.184.215.14")

    assert await resolve("WWW.Example.com") == (
        ipaddress.ip_address("93.184.215.14"),
        ipaddress.ip_address("2606:4700::1"),
    )
    # Asked as an absolute name, so no search domain of resolv.conf can turn it into an internal one.
    assert fake.asked == ["www.example.com."]


@pytest.mark.parametrize(
    ("answer", "refused", "reason"),
    [
        (("93.184.215.14", "10.0.0.7"), "10.0.0.7", "private"),
        (("10.0.0.7", "93.184.215.14"), "10.0.0.7", "private"),
        (("2606:4700::1", "fe80::1%eth0"), "fe80::1", "link-local"),
        (("93.184.215.14", "::ffff:169.254.169.254"), "::ffff:a9fe:a9fe", "metadata"),
    ],
)
async def test_one_refused_address_refuses_the_whole_name(monkeypatch, answer, refused, reason):
    system_resolver(monkeypatch, *answer)

    with pytest.raises(TargetRefused, match=f"example.com resolves to a refused address: .*{reason}") as caught:
        await resolve("example.com")
    assert caught.value.address == str(ipaddress.ip_address(refused))


async def test_the_allow_list_opens_resolved_addresses(monkeypatch):
    system_resolver(monkeypatch, "10.0.0.7")
    policy = AddressPolicy.from_cidrs(["10.0.0.0/8"])

    assert await resolve("app.example.com", policy) == (ipaddress.ip_address("10.0.0.7"),)


async def test_an_ip_literal_is_checked_and_never_resolved(monkeypatch):
    fake = system_resolver(monkeypatch, "10.0.0.7")

    assert await resolve("93.184.215.14") == (ipaddress.ip_address("93.184.215.14"),)
    # Parsed while the allow-list opened it, resolved after it no longer does (a scan run after a config change).
    target = parse_target("10.0.0.1", policy=AddressPolicy.from_cidrs(["10.0.0.0/8"]))
    with pytest.raises(TargetRefused, match="private"):
        await resolve_target(target, policy=POLICY)
    assert fake.asked == []


async def test_the_static_rules_are_applied_again_at_resolution(monkeypatch):
    fake = system_resolver(monkeypatch, "93.184.215.14")
    target = parse_target("localhost", policy=AddressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"]))

    with pytest.raises(TargetRefused, match="loopback"):
        await resolve_target(target, policy=POLICY)
    assert fake.asked == []


@pytest.mark.parametrize(
    ("resolver", "error", "message"),
    [
        ({}, ScannerError, "example.com has no A or AAAA record"),
        ({"error": socket.gaierror(socket.EAI_NONAME, "Name or service not known")}, ScannerError, "does not resolve"),
        ({"error": socket.gaierror(socket.EAI_AGAIN, "Temporary failure")}, TransientScanError, "failed"),
        ({"delay_s": 1.0}, TransientScanError, "timed out after 0.05s"),
    ],
)
async def test_resolution_failures(monkeypatch, resolver, error, message):
    system_resolver(monkeypatch, **resolver)

    with pytest.raises(error, match=message) as caught:
        await resolve("example.com", timeout_s=0.05)
    assert type(caught.value) is error


async def test_submit_time_check_turns_failures_into_refusals(monkeypatch):
    target = parse_target("example.com", policy=POLICY)

    system_resolver(monkeypatch, error=socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    with pytest.raises(ValidationError, match=r"target example\.com does not resolve"):
        await check_resolution(target, policy=POLICY)
    await check_resolution(target, policy=POLICY, allow_unresolvable=True)

    system_resolver(monkeypatch, error=socket.gaierror(socket.EAI_AGAIN, "Temporary failure"))
    for allow_unresolvable in (False, True):
        with pytest.raises(ValidationError, match=r"could not be checked: .*; try again later"):
            await check_resolution(target, policy=POLICY, allow_unresolvable=allow_unresolvable)

    system_resolver(monkeypatch, "10.0.0.7")
    with pytest.raises(TargetRefused, match="private"):
        await check_resolution(target, policy=POLICY, allow_unresolvable=True)

    system_resolver(monkeypatch, "93.184.215.14")
    await check_resolution(target, policy=POLICY)


async def test_a_name_in_the_hosts_file_resolves_as_listed_and_is_still_checked(monkeypatch, tmp_path: Path):
    fake = system_resolver(monkeypatch, "93.184.215.14")
    path = tmp_path / "hosts"
    path.write_text("10.0.0.5 db.corp.internal\n93.184.215.14 www.example.com\n")
    hosts = HostsFile(str(path))
    internal = parse_target("db.corp.internal", policy=POLICY, hosts=hosts)
    public = parse_target("www.example.com", policy=POLICY, hosts=hosts)

    assert await resolve_target(internal, policy=OPEN_10, hosts=hosts) == (ipaddress.ip_address("10.0.0.5"),)
    await check_resolution(internal, policy=OPEN_10, hosts=hosts, timeout_s=0.05)
    # Listed is not allowed: the listed address meets the address rules like any other.
    with pytest.raises(TargetRefused, match=r"10\.0\.0\.5 is private"):
        await resolve_target(internal, policy=POLICY, hosts=hosts)
    with pytest.raises(TargetRefused, match=r"10\.0\.0\.5 is private"):
        await check_resolution(internal, policy=POLICY, hosts=hosts)
    assert await resolve_target(public, policy=POLICY, hosts=hosts) == (ipaddress.ip_address("93.184.215.14"),)
    assert fake.asked == []


async def test_localhost_is_asked_for_as_written(monkeypatch):
    fake = system_resolver(monkeypatch, "127.0.0.1", "::1")
    policy = AddressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"])

    assert await resolve("localhost", policy) == (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
    # /etc/hosts lookups do not match "localhost.": the name goes to the resolver without the trailing dot.
    assert fake.asked == ["localhost"]


async def test_a_system_error_from_the_resolver_is_transient(monkeypatch):
    system_resolver(monkeypatch, error=socket.gaierror(socket.EAI_SYSTEM, "System error"))

    with pytest.raises(TransientScanError, match=r"resolving example\.com failed: System error"):
        await resolve("example.com")
    with pytest.raises(ValidationError, match="could not be checked"):
        await check_resolution(parse_target("example.com", policy=POLICY), policy=POLICY, timeout_s=0.05)


async def test_the_submit_time_check_keeps_its_time_limit(monkeypatch):
    system_resolver(monkeypatch, "93.184.215.14", delay_s=1.0)

    with pytest.raises(ValidationError, match=r"timed out after 0\.05s"):
        await check_resolution(parse_target("example.com", policy=POLICY), policy=POLICY, timeout_s=0.05)
