"""Webhook URLs under the scanners' SSRF rules: checked when registered, resolved again and pinned at delivery.

The rules are the network library's (``scanq.scanners.net``): the address
policy (public addresses only: loopback, private, link-local, CGNAT, reserved
and the IPv6 forms carrying such an IPv4 address are refused; the cloud
metadata addresses always, allow-list or not), its URL and host-name parsing
(no credentials, no internal names such as ``.internal`` or single labels
unless the hosts file lists them) and its resolution (every address a name
resolves to must pass). Webhooks add two rules of their own: the scheme is
``https``, and plain ``http`` is allowed only when every address of the host
is in ``--webhook-allowlist`` (an operator's own network, a test receiver on
127.0.0.1); and the allow-list is the webhooks' own, not the scanners'.

``check_endpoint_url`` runs at registration and answers a ``ValidationError``
(a 422) that says what is wrong. ``pin_endpoint`` runs at every delivery: it
resolves the name again and returns a ``Session`` that connects only to the
addresses it just checked, so a name whose DNS answer changed since
registration (to a private address, or between the check and the connect) is
refused or still reaches the checked address, never the new one.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass

from scanq.config import Settings
from scanq.exceptions import ScannerError, TransientScanError, ValidationError
from scanq.scanners.net.addresses import AddressPolicy, IPAddress, IPNetwork, embedded_ipv4
from scanq.scanners.net.connect import Session
from scanq.scanners.net.hostsfile import HostsFile
from scanq.scanners.net.settings import NetSettings
from scanq.scanners.net.targets import ParsedTarget, parse_target, resolve_target

MAX_URL_CHARS = 2048
HTTPS = "https"
HTTP = "http"


class EndpointRefused(ValidationError):
    """The webhook URL is not allowed."""


@dataclass(frozen=True, kw_only=True)
class EndpointRules:
    """What a webhook URL is checked against, built once per process from the settings.

    Args:
        policy: the address rules, with ``--webhook-allowlist`` opened.
        allowlist: the allow-listed networks (plain http is allowed to these only).
        net: name servers and hosts file (the scanners' own), and the connect timeout of deliveries.
        hosts: the hosts file, read again whenever it changes (a name listed there resolves as written).
    """

    policy: AddressPolicy
    allowlist: tuple[IPNetwork, ...]
    net: NetSettings
    hosts: HostsFile | None

    @classmethod
    def from_settings(cls, settings: Settings) -> EndpointRules:
        """The rules of ``settings``: ``--webhook-allowlist``, ``--webhook-connect-timeout-seconds`` and the
        network scanners' ``--scanner-nameservers`` and ``--scanner-hosts-file``."""
        policy = AddressPolicy.from_cidrs(settings.webhook_allowlist)
        net = dataclasses.replace(
            settings.plugins[NetSettings], connect_timeout_seconds=settings.webhook_connect_timeout_seconds
        )
        hosts = HostsFile(net.hosts_file) if net.hosts_file else None
        return cls(policy=policy, allowlist=policy.allowlist, net=net, hosts=hosts)

    def is_allowlisted(self, address: IPAddress) -> bool:
        """True when ``address`` (or the IPv4 address an IPv6 transition form carries) is in the allow-list."""
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address) and (inner := embedded_ipv4(address)) is not None:
            candidates.append(inner[0])
        return any(a.version == net.version and a in net for a in candidates for net in self.allowlist)


def parse_endpoint_url(url: str, rules: EndpointRules) -> ParsedTarget:
    """The URL's parts, or ``EndpointRefused`` saying why it cannot be a webhook URL (no DNS asked).

    Args:
        url: what the tenant registered.
        rules: the address rules (applied now to an IP literal or ``localhost``).
    """
    text = url.strip()
    if not text:
        raise EndpointRefused("a webhook URL is required")
    if len(text) > MAX_URL_CHARS:
        raise EndpointRefused(f"webhook URL is longer than {MAX_URL_CHARS} characters")
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme not in (HTTPS, HTTP):
        raise EndpointRefused(f"webhook URL must start with https:// (got {url[:40]!r})")
    if "#" in text:
        raise EndpointRefused("webhook URL must not have a #fragment")
    authority = text.partition("://")[2].split("/", 1)[0].split("?", 1)[0]
    if "@" in authority:
        raise EndpointRefused("webhook URL must not carry credentials (user:password@)")
    try:
        return parse_target(text, policy=rules.policy, allow_url=True, hosts=rules.hosts)
    except ValidationError as exc:
        raise EndpointRefused(f"webhook URL refused: {exc.message}") from None


def _check_scheme(target: ParsedTarget, addresses: tuple[IPAddress, ...], rules: EndpointRules) -> None:
    if target.scheme == HTTP and not all(rules.is_allowlisted(address) for address in addresses):
        raise EndpointRefused(
            f"webhook URL must use https: plain http is allowed only to addresses in --webhook-allowlist "
            f"({target.host} is {', '.join(map(str, addresses))})"
        )


async def check_endpoint_url(url: str, settings: Settings, *, rules: EndpointRules | None = None) -> str:
    """Registration: refuse a URL that may not receive webhooks; return it normalised.

    The host is resolved now and every address must pass (public, or in ``--webhook-allowlist``);
    ``http`` only when every address is allow-listed. This answer is a courtesy to the tenant: each
    delivery checks again (``pin_endpoint``), which is what protects the network.

    Args:
        url: the URL to register.
        settings: ``--webhook-allowlist`` and the scanners' name servers and hosts file.
        rules: built from ``settings`` when not given (a caller checking many URLs builds them once).

    Raises:
        ValidationError: (``EndpointRefused``) with what is wrong: scheme, credentials, an internal
            name, a refused address, a name that does not resolve or could not be checked now.
    """
    rules = rules if rules is not None else EndpointRules.from_settings(settings)
    target = parse_endpoint_url(url, rules)
    addresses = await _resolve(target, rules)
    _check_scheme(target, addresses, rules)
    return str(target)


async def _resolve(target: ParsedTarget, rules: EndpointRules) -> tuple[IPAddress, ...]:
    try:
        return await resolve_target(
            target,
            policy=rules.policy,
            nameservers=rules.net.nameservers,
            timeout_s=rules.net.connect_timeout_seconds,
            hosts=rules.hosts,
        )
    except ValidationError as exc:  # TargetRefused: an address is not allowed
        raise EndpointRefused(f"webhook URL refused: {exc.message}") from None
    except TransientScanError as exc:
        raise EndpointRefused(f"webhook URL could not be checked: {exc.message}; try again later") from None
    except ScannerError as exc:
        raise EndpointRefused(f"webhook URL host {exc.message}") from None


async def pin_endpoint(url: str, rules: EndpointRules) -> Session:
    """Delivery: resolve the stored URL again, check every address, and return a session pinned to them.

    Raises:
        EndpointRefused: the URL or an address it resolves to now is refused (the delivery records why).
        ScannerError: the host does not resolve (``TransientScanError``: the resolver failed).
    """
    target = parse_endpoint_url(url, rules)
    try:
        addresses = await resolve_target(
            target,
            policy=rules.policy,
            nameservers=rules.net.nameservers,
            timeout_s=rules.net.connect_timeout_seconds,
            hosts=rules.hosts,
        )
    except ValidationError as exc:  # TargetRefused
        raise EndpointRefused(f"refused at delivery: {exc.message}") from None
    _check_scheme(target, addresses, rules)
    # The only way to the endpoint: connections go to these checked addresses, never to a new DNS answer.
    return Session(target=target, addresses=addresses, settings=rules.net)


__all__ = ["EndpointRefused", "EndpointRules", "check_endpoint_url", "parse_endpoint_url", "pin_endpoint"]
