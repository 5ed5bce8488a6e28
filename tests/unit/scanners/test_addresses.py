"""The address policy: what a scanner may connect to."""

from __future__ import annotations

import ipaddress

import pytest

from scanq.exceptions import TargetRefused
from scanq.scanners.net.addresses import METADATA_ADDRESSES, AddressPolicy, embedded_ipv4
from scanq.scanners.net.settings import NetSettings

DEFAULT = AddressPolicy()
OPEN_EVERYTHING = AddressPolicy.from_cidrs(["0.0.0.0/0", "::/0"])


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("0.0.0.0", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("169.254.1.1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.10", "documentation"),
        ("198.51.100.10", "documentation"),
        ("203.0.113.10", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("192.0.0.8", "IETF"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique local"),
        ("fd12:3456::1", "unique local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("100::1", "discard"),
        ("::ffff:127.0.0.1", "IPv4-mapped for 127.0.0.1: 127.0.0.1 is loopback"),
        ("::ffff:10.0.0.1", "IPv4-mapped for 10.0.0.1"),
        ("64:ff9b::7f00:1", "NAT64 for 127.0.0.1"),
        ("64:ff9b::a00:1", "NAT64 for 10.0.0.1"),
        ("64:ff9b:1::1", "local-use NAT64"),
        ("2002:7f00:1::1", "6to4 for 127.0.0.1"),
        ("2002:c0a8:101::1", "6to4 for 192.168.1.1"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("4000::1", "outside global unicast"),
    ],
)
def test_non_public_addresses_are_refused_with_a_reason(address, reason):
    why = DEFAULT.refusal(ip(address))
    assert why is not None and reason in why
    with pytest.raises(TargetRefused, match="target address refused"):
        DEFAULT.check(ip(address))


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::1"],
)
def test_public_addresses_are_allowed(address):
    assert DEFAULT.refusal(ip(address)) is None


@pytest.mark.parametrize(
    "address",
    [
        *[str(a) for a in METADATA_ADDRESSES],
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "2002:a9fe:a9fe::1",
        "::ffff:168.63.129.16",
    ],
)
def test_metadata_addresses_are_refused_even_when_allow_listed(address):
    why = OPEN_EVERYTHING.refusal(ip(address))
    assert why is not None and "metadata" in why


def test_azure_wireserver_is_refused_although_public():
    assert "Azure WireServer" in (DEFAULT.refusal(ip("168.63.129.16")) or "")


def test_allow_list_opens_only_its_ranges():
    policy = AddressPolicy.from_cidrs(["127.0.0.0/8", "10.20.0.0/16"])
    assert policy.refusal(ip("127.0.0.1")) is None
    assert policy.refusal(ip("10.20.3.4")) is None
    assert policy.refusal(ip("10.21.3.4")) is not None
    assert policy.refusal(ip("::1")) is not None
    # The mapped form of an allowed address is judged as that address.
    assert policy.refusal(ip("::ffff:127.0.0.1")) is None


@pytest.mark.parametrize("address", ["10.0.0.1", "64:ff9b::a00:1", "fd00:ec2::254"])
def test_a_refusal_names_the_refused_address(address):
    with pytest.raises(TargetRefused) as refused:
        DEFAULT.check(ip(address))
    # ``address`` is set by ``ScanqError(**attributes)``, not declared on the class.
    assert refused.value.address == address  # as given, not the IPv4 address inside it


def test_allowed_addresses_pass_the_check():
    DEFAULT.check(ip("8.8.8.8"))
    AddressPolicy.from_cidrs(["10.0.0.0/8"]).check(ip("10.1.2.3"))


def test_an_allow_list_entry_with_host_bits_opens_its_whole_network():
    # The settings accept "10.20.3.4/16" (an address and its prefix); the policy must read it the same way.
    settings = NetSettings(target_allowlist=("10.20.3.4/16", "fd12:3456::5/64"))
    policy = AddressPolicy.from_cidrs(settings.target_allowlist)
    assert policy.allowlist == (ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("fd12:3456::/64"))
    assert policy.refusal(ip("10.20.200.1")) is None
    assert policy.refusal(ip("fd12:3456::ffff")) is None
    assert policy.refusal(ip("10.21.0.1")) is not None


def test_bad_allow_list_entry_raises():
    with pytest.raises(ValueError):
        AddressPolicy.from_cidrs(["not-a-cidr"])


def test_embedded_ipv4_forms():
    assert embedded_ipv4(ipaddress.IPv6Address("::ffff:1.2.3.4")) == (ip("1.2.3.4"), "IPv4-mapped")
    assert embedded_ipv4(ipaddress.IPv6Address("64:ff9b::102:304")) == (ip("1.2.3.4"), "NAT64")
    assert embedded_ipv4(ipaddress.IPv6Address("2002:102:304::")) == (ip("1.2.3.4"), "6to4")
    assert embedded_ipv4(ipaddress.IPv6Address("2606:4700::1")) is None
