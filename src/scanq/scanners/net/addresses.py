"""Which IP addresses a scanner may connect to (the SSRF rules).

An address is refused when it is not public: loopback, private, link-local,
CGNAT, multicast, reserved, unspecified, documentation, benchmarking, and the
IPv6 forms that carry an IPv4 address (IPv4-mapped, 6to4, NAT64, Teredo) are
judged by the IPv4 address inside. The operator's allow-list (CIDRs) opens
ranges that would otherwise be refused, except the cloud metadata addresses,
which are refused always, in every form.

The tables are explicit rather than ``ipaddress.is_global`` so that the reason
given is precise and the answer does not change between Python versions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from scanq.exceptions import TargetRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Instance metadata and platform services: a scanner reaching these leaks cloud credentials.
METADATA_ADDRESSES: dict[IPAddress, str] = {
    ipaddress.ip_address("169.254.169.254"): "cloud instance metadata (AWS, GCP, Azure, OpenStack, …)",
    ipaddress.ip_address("169.254.170.2"): "AWS ECS task metadata",
    ipaddress.ip_address("169.254.169.253"): "AWS VPC DNS",
    ipaddress.ip_address("169.254.169.123"): "AWS time sync",
    ipaddress.ip_address("169.254.0.23"): "Tencent Cloud metadata",
    ipaddress.ip_address("fd00:ec2::254"): "AWS instance metadata (IPv6)",
    ipaddress.ip_address("fd00:ec2::253"): "AWS VPC DNS (IPv6)",
    ipaddress.ip_address("fd00:ec2::23"): "AWS ECS task metadata (IPv6)",
    ipaddress.ip_address("168.63.129.16"): "Azure WireServer",
    ipaddress.ip_address("100.100.100.200"): "Alibaba Cloud metadata",
    ipaddress.ip_address("192.0.0.192"): "Oracle Cloud metadata",
}


def _nets(table: Iterable[tuple[str, str]]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), why) for cidr, why in table)


REFUSED_IPV4 = _nets(
    [
        ("0.0.0.0/8", "unspecified / 'this network'"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT (shared address space)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation (TEST-NET-1)"),
        ("192.88.99.0/24", "6to4 relay anycast (deprecated)"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation (TEST-NET-2)"),
        ("203.0.113.0/24", "documentation (TEST-NET-3)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved / broadcast"),
    ]
)

REFUSED_IPV6 = _nets(
    [
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo tunnel"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "unique local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    ]
)

_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIXTOFOUR = ipaddress.ip_network("2002::/16")
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")


def embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 transition form carries, with the form's name; None for plain IPv6."""
    if address in _IPV4_MAPPED:
        mapped = address.ipv4_mapped
        return (mapped, "IPv4-mapped") if mapped is not None else None
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "NAT64"
    if address in _SIXTOFOUR:
        sixtofour = address.sixtofour
        return (sixtofour, "6to4") if sixtofour is not None else None
    return None


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Decides whether an address may be scanned.

    Args:
        allowlist: networks the operator opened (e.g. ``127.0.0.0/8`` in tests); metadata stays refused.
    """

    allowlist: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> AddressPolicy:
        """Build from CIDR strings (``NetSettings.target_allowlist``); raise ``ValueError`` on a bad one."""
        return cls(tuple(ipaddress.ip_network(c, strict=False) for c in cidrs))

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` must not be scanned, or None when it may be."""
        why = _metadata_reason(address)
        if why is not None:
            return why
        if self._allowed(address):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            inner = embedded_ipv4(address)
            if inner is not None:
                ipv4, form = inner
                inner_why = self.refusal(ipv4)
                return None if inner_why is None else f"{address} is {form} for {ipv4}: {inner_why}"
            table = REFUSED_IPV6
        else:
            table = REFUSED_IPV4
        for network, reason in table:
            if address in network:
                return f"{address} is {reason} ({network})"
        if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST_V6:
            return f"{address} is reserved (outside global unicast 2000::/3)"
        return None

    def check(self, address: IPAddress) -> None:
        """Raise ``TargetRefused`` with the reason when ``address`` must not be scanned."""
        why = self.refusal(address)
        if why is not None:
            raise TargetRefused(f"target address refused: {why}", address=str(address))

    def _allowed(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.allowlist)


def _metadata_reason(address: IPAddress) -> str | None:
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            candidates.append(inner[0])
    for candidate in candidates:
        name = METADATA_ADDRESSES.get(candidate)
        if name is not None:
            return f"{address} is a cloud metadata address ({name}); never scanned, allow-list or not"
    return None
