"""The dnspython resolver the scanners use, pointed at the configured name servers.

dnspython is imported only to build a resolver: the settings check the
``--scanner-nameservers`` list at start with ``parse_nameserver`` alone.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from scanq.exceptions import ConfigError

if TYPE_CHECKING:
    import dns.asyncresolver

DNS_PORT = 53
DNS_QUERY_TIMEOUT_S = 3.0
DNS_LIFETIME_FACTOR = 2


def parse_nameserver(spec: str) -> tuple[str, int]:
    """``"ip"``, ``"ip:port"`` or ``"[ipv6]:port"`` as (address, port); raise ``ConfigError``."""
    text = spec.strip()
    host, port = text, DNS_PORT
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port = _port(spec, rest.removeprefix(":"))
    elif text.count(":") == 1:
        host, _, raw_port = text.partition(":")
        port = _port(spec, raw_port)
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        raise ConfigError(f"name server {spec!r} must be an IP address, optionally with :port") from None


def _port(spec: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"name server {spec!r} has an invalid port")
    return int(raw)


def make_resolver(
    nameservers: tuple[str, ...] = (), *, query_timeout_s: float = DNS_QUERY_TIMEOUT_S
) -> dns.asyncresolver.Resolver:
    """A resolver that asks ``nameservers`` (``ip[:port]``), or the system's when empty.

    Args:
        nameservers: ``ip`` or ``ip:port`` strings.
        query_timeout_s: per-server timeout; a whole lookup may take twice that.
    """
    # Imported here: dnspython is in the ``scanners`` extra, and settings.py imports this module.
    import dns.asyncresolver
    import dns.nameserver

    if not nameservers:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(address, port) for address, port in map(parse_nameserver, nameservers)
        ]
    resolver.timeout = query_timeout_s
    resolver.lifetime = query_timeout_s * DNS_LIFETIME_FACTOR
    return resolver
