"""Scan targets: parse and normalise what a user typed, then resolve it to checked addresses.

Two steps, both taken at submit time (``Scanner.validate``) and again at run time:

- ``parse_target`` (no I/O): a hostname or an IP literal, or an http(s) URL
  where the plugin takes one. Names are lowercased, IDNA-encoded, stripped of
  a trailing dot; names that are internal by definition (``.local``,
  ``.internal``, ``.arpa``, single labels, numeric forms such as ``127.1``)
  are refused, and IP literals and ``localhost`` are judged by the address
  policy at once.
- ``resolve_target``: every address the name resolves to must pass the
  policy, else the whole target is refused. A name listed in the hosts file
  (``hostsfile.py``) resolves to the addresses listed there, whatever the
  resolver says. At submit time (``check_resolution``) this turns a name
  that resolves to a refused address, or does not resolve, into a 422 with
  the reason. At run time the scan
  resolves again and connects only to the addresses it checked then
  (``connect.Session``), never resolving again, so a DNS answer that changes
  between check and use (rebinding) cannot redirect it: the submit-time answer
  is a courtesy to the user, the run-time one is what protects the network.

A name the operator listed in the hosts file is configuration, not user input:
the name rules (single label, internal suffixes) do not refuse it, and its
addresses are judged by the address rules as always.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna

from scanq.exceptions import ScannerError, TargetRefused, TransientScanError, ValidationError
from scanq.scanners.net.addresses import AddressPolicy, IPAddress
from scanq.scanners.net.hostsfile import HostsFile

logger = logging.getLogger(__name__)

MAX_TARGET_CHARS = 2048
MAX_HOSTNAME_CHARS = 253
RESOLVE_TIMEOUT_S = 5.0
# Suffixes that name internal networks by definition (RFC 6761, 6762, 8375, ICANN .internal).
INTERNAL_SUFFIXES = ("local", "internal", "arpa", "invalid", "onion", "alt", "localdomain", "lan", "intranet")
LOCALHOST_ADDRESSES = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
_URL_SCHEMES = {"http": 80, "https": 443}


@dataclass(frozen=True, kw_only=True, slots=True)
class ParsedTarget:
    """A normalised scan target.

    Attributes:
        host: lowercase ASCII hostname, or the IP literal (IPv6 without brackets).
        ip: the address when ``host`` is an IP literal.
        scheme: ``http``/``https`` when the target was a URL, else None.
        port: the URL's explicit port, else None.
        path: the URL's path and query ("/" when none).
    """

    host: str
    ip: IPAddress | None = None
    scheme: str | None = None
    port: int | None = None
    path: str = "/"

    @property
    def is_ip(self) -> bool:
        return self.ip is not None

    def __str__(self) -> str:
        if self.scheme is None:
            return self.host
        host = f"[{self.host}]" if self.ip is not None and self.ip.version == 6 else self.host
        default = _URL_SCHEMES[self.scheme]
        port = "" if self.port is None or self.port == default else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.path}"


def parse_target(
    raw: str | None, *, policy: AddressPolicy, allow_url: bool = False, hosts: HostsFile | None = None
) -> ParsedTarget:
    """Parse and normalise ``raw``; raise ``ValidationError``/``TargetRefused`` with the reason.

    Args:
        raw: what the user submitted.
        policy: the address rules, applied to IP literals and ``localhost`` now.
        allow_url: accept ``http://`` / ``https://`` URLs (the http and surface plugins).
        hosts: the operator's hosts file: a name listed there passes the name rules.
    """
    if raw is None or not raw.strip():
        raise ValidationError("this scanner needs a target (a hostname or an IP address)")
    text = raw.strip()
    if len(text) > MAX_TARGET_CHARS:
        raise ValidationError(f"target is longer than {MAX_TARGET_CHARS} characters")
    if any(ch.isspace() or not ch.isprintable() or ch == "\\" for ch in text):
        raise ValidationError("target contains whitespace, control characters or a backslash")
    if "://" in text:
        if not allow_url:
            raise ValidationError("this scanner takes a hostname or an IP address, not a URL")
        target = _parse_url(text)
    else:
        target = _parse_host(text)
    check_static(target, policy=policy, hosts=hosts)
    return target


def _parse_host(text: str) -> ParsedTarget:
    literal = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    ip = _ip_literal(literal)
    if ip is not None:
        return ParsedTarget(host=str(ip), ip=ip)
    if ":" in text or "/" in text or "@" in text:
        raise ValidationError(
            f"target {text!r} is not a hostname or an IP address (give ports and paths as options, or a URL)"
        )
    return ParsedTarget(host=normalise_hostname(text))


def _parse_url(text: str) -> ParsedTarget:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"target URL is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _URL_SCHEMES:
        raise ValidationError(f"target URL scheme must be http or https (got {scheme!r})")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValidationError("target URL must not carry credentials (user:password@)")
    if not parts.hostname:
        raise ValidationError("target URL has no host")
    if port == 0:
        raise ValidationError("target URL port must be 1-65535")
    host = _parse_host(parts.hostname)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return ParsedTarget(host=host.host, ip=host.ip, scheme=scheme, port=port, path=path)


def _ip_literal(text: str) -> IPAddress | None:
    if "%" in text:
        raise ValidationError("IPv6 zone ids (%iface) are not allowed in targets")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def normalise_hostname(name: str) -> str:
    """Lowercase, IDNA (UTS 46) encoded, trailing dot removed; raise ``ValidationError`` if not a hostname."""
    stripped = name[:-1] if name.endswith(".") else name
    if not stripped:
        raise ValidationError("target hostname is empty")
    if stripped.isascii():
        ascii_name = stripped.lower()
    else:
        try:
            ascii_name = idna.encode(stripped, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValidationError(f"target hostname {name!r} is not a valid internationalised name: {exc}") from None
    if len(ascii_name) > MAX_HOSTNAME_CHARS:
        raise ValidationError(f"target hostname is longer than {MAX_HOSTNAME_CHARS} characters")
    labels = ascii_name.split(".")
    for label in labels:
        if not _LABEL.match(label):
            raise ValidationError(f"target hostname {name!r} has an invalid label {label!r}")
    if _NUMERIC_LABEL.match(labels[-1]):
        raise ValidationError(f"target {name!r} looks like a non-canonical IP address; write the address in full")
    return ascii_name


def check_static(target: ParsedTarget, *, policy: AddressPolicy, hosts: HostsFile | None = None) -> None:
    """The checks that need no DNS: IP literals, localhost, internal-only names (unless ``hosts`` lists them)."""
    if target.ip is not None:
        policy.check(target.ip)
        return
    host = target.host
    if _is_localhost(host):
        # RFC 6761: these always mean the loopback interface.
        for address in LOCALHOST_ADDRESSES:
            policy.check(address)
        return
    why = internal_name_refusal(host)
    if why is not None and not (hosts is not None and hosts.lookup(host)):
        raise TargetRefused(why)


def internal_name_refusal(host: str) -> str | None:
    """Why the name rules refuse ``host`` (a single label, an internal suffix), or None when they do not."""
    if "." not in host:
        return f"target {host!r} is a single-label name (resolved through local search domains)"
    suffix = next((s for s in INTERNAL_SUFFIXES if host == s or host.endswith("." + s)), None)
    if suffix is not None:
        return f"target {host!r} is under .{suffix}, a name for internal networks"
    return None


def _is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


async def resolve_target(
    target: ParsedTarget,
    *,
    policy: AddressPolicy,
    nameservers: tuple[str, ...] = (),
    timeout_s: float = RESOLVE_TIMEOUT_S,
    hosts: HostsFile | None = None,
) -> tuple[IPAddress, ...]:
    """The target's addresses, every one checked, IPv4 first; raise ``TargetRefused`` if any is refused.

    Args:
        target: from ``parse_target``.
        policy: the address rules.
        nameservers: ``ip`` or ``ip:port`` to query instead of the system resolver (tests, split DNS).
        timeout_s: how long resolution may take.
        hosts: the operator's hosts file, asked before any resolver (as the system resolver would).

    Raises:
        TargetRefused: the name (or one of its addresses) is not allowed.
        ScannerError: the name does not exist or has no address.
        TransientScanError: the resolver failed or timed out.
    """
    check_static(target, policy=policy, hosts=hosts)
    if target.ip is not None:
        return (target.ip,)
    configured = hosts.lookup(target.host) if hosts is not None else ()
    try:
        async with asyncio.timeout(timeout_s):
            if configured:
                found = list(configured)
            elif nameservers:
                found = await _resolve_with_dnspython(target.host, nameservers)
            else:
                found = await _resolve_with_system(target.host)
    except TimeoutError:
        raise TransientScanError(f"resolving {target.host} timed out after {timeout_s:g}s") from None
    addresses = tuple(sorted(dict.fromkeys(found), key=lambda a: a.version))
    if not addresses:
        raise ScannerError(f"{target.host} has no A or AAAA record")
    for address in addresses:
        why = policy.refusal(address)
        if why is not None:
            raise TargetRefused(f"target {target.host} resolves to a refused address: {why}", address=str(address))
    logger.debug("resolved %s to %s", target.host, addresses)
    return addresses


async def check_resolution(
    target: ParsedTarget,
    *,
    policy: AddressPolicy,
    nameservers: tuple[str, ...] = (),
    timeout_s: float = RESOLVE_TIMEOUT_S,
    allow_unresolvable: bool = False,
    hosts: HostsFile | None = None,
) -> None:
    """Submit time: ``resolve_target`` with every failure turned into a refusal of the request (a 422).

    A name that does not resolve now is refused too, rather than stored to fail
    when the scan runs; so is one the resolver could not answer for in time
    (the message says to try again), since nothing about it could be checked.

    Args:
        target: from ``parse_target``.
        policy: the address rules.
        nameservers: as for ``resolve_target``.
        timeout_s: how long resolution may take.
        allow_unresolvable: accept a name that does not exist or has no address
            (``surface`` with the ``dns`` plugin, which needs no address); a refused
            address and a resolver failure are still refused.
        hosts: as for ``resolve_target``.

    Raises:
        TargetRefused: the name (or one of its addresses) is not allowed.
        ValidationError: the name does not resolve, or resolving it failed.
    """
    try:
        await resolve_target(target, policy=policy, nameservers=nameservers, timeout_s=timeout_s, hosts=hosts)
    except TransientScanError as exc:
        raise ValidationError(f"target could not be checked: {exc.message}; try again later") from None
    except ScannerError as exc:
        if not allow_unresolvable:
            raise ValidationError(f"target {exc.message}") from None


async def _resolve_with_system(host: str) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        # A trailing dot makes the name absolute, so no resolv.conf search domain is tried;
        # localhost is left bare because /etc/hosts lookups do not match "localhost." (other
        # hosts-file names never get here: resolve_target reads the hosts file itself).
        absolute = host if _is_localhost(host) else host + "."
        infos = await loop.getaddrinfo(absolute, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_SYSTEM", None)):
            raise TransientScanError(f"resolving {host} failed: {exc.strerror}") from None
        raise ScannerError(f"{host} does not resolve: {exc.strerror}") from None
    found: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        found.append(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
    return found


async def _resolve_with_dnspython(host: str, nameservers: tuple[str, ...]) -> list[IPAddress]:
    # Imported here: dnspython is in the ``scanners`` extra, not a core dependency.
    import dns.exception
    import dns.resolver

    from scanq.scanners.net.dnsresolver import make_resolver

    resolver = make_resolver(nameservers)
    found: list[IPAddress] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(host + ".", rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise ScannerError(f"{host} does not exist (NXDOMAIN)") from None
        except dns.resolver.NoAnswer:
            continue
        except dns.exception.DNSException as exc:
            raise TransientScanError(f"resolving {host} failed: {exc}") from None
        found.extend(ipaddress.ip_address(rr.to_text()) for rr in answer)
    return found
