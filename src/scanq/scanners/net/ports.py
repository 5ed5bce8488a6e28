"""The ``ports`` scanner: a TCP connect scan of risky ports; each open port's service identified and graded.

No raw sockets and no nmap: one ``connect()`` per port to the checked address,
bounded by the target's socket limit and a short timeout. A port is ``open``
(connected), ``closed`` (refused) or ``filtered`` (no answer in time, or
unreachable). On an open port ``probes.py`` finds the service: its greeting,
or its answer to a short protocol-appropriate probe (Redis ``PING``/``INFO``,
PostgreSQL SSLRequest and StartupMessage, MQTT CONNECT, MongoDB ``buildInfo``,
AMQP header, ``GET /``, a TLS handshake, ...), within about twice
``BANNER_TIMEOUT_S``.

The finding's severity is graded by what answered (``grade``): a datastore
that served an anonymous request is critical, one that asked for credentials
high, a TLS-only endpoint with nothing readable inside low. A port whose
service could not be identified keeps the severity of its usual service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scanq.exceptions import ValidationError
from scanq.scanners.net import probes
from scanq.scanners.net.connect import ConnectFailed, Session
from scanq.scanners.net.findings import Asset, Check, Finding, PluginReport, Severity
from scanq.scanners.net.plugin import TargetScanner, reject_unknown
from scanq.scanners.net.servicewire import AUTH, OPEN, Identity, printable_line
from scanq.scanners.net.targets import ParsedTarget

PLUGIN = "ports"
BANNER_TIMEOUT_S = 1.5
MAX_PORTS_PER_SCAN = 100


@dataclass(frozen=True, slots=True)
class Service:
    """What an exposed port usually is (``service``: its nmap name), and how bad exposing it is."""

    name: str
    severity: Severity
    service: str = ""


# The default list and each port's severity when open and not identified (documented in docs/scanners.md).
RISKY_PORTS: dict[int, Service] = {
    3389: Service("RDP", Severity.CRITICAL, "ms-wbt-server"),
    5900: Service("VNC", Severity.CRITICAL, "vnc"),
    445: Service("SMB", Severity.CRITICAL, "microsoft-ds"),
    23: Service("Telnet", Severity.CRITICAL, "telnet"),
    6379: Service("Redis", Severity.CRITICAL, "redis"),
    9200: Service("Elasticsearch", Severity.CRITICAL, "elasticsearch"),
    11211: Service("Memcached", Severity.CRITICAL, "memcached"),
    27017: Service("MongoDB", Severity.CRITICAL, "mongodb"),
    139: Service("NetBIOS", Severity.HIGH, "netbios-ssn"),
    21: Service("FTP", Severity.HIGH, "ftp"),
    1433: Service("Microsoft SQL Server", Severity.HIGH, "ms-sql-s"),
    3306: Service("MySQL", Severity.HIGH, "mysql"),
    5432: Service("PostgreSQL", Severity.HIGH, "postgresql"),
    1521: Service("Oracle DB", Severity.HIGH, "oracle-tns"),
    4443: Service("remote-access appliance (HTTPS admin/VPN)", Severity.MEDIUM, "http"),
    8443: Service("remote-access appliance (HTTPS admin/VPN)", Severity.MEDIUM, "http"),
    10443: Service("remote-access appliance (HTTPS admin/VPN)", Severity.MEDIUM, "http"),
    22: Service("SSH", Severity.LOW, "ssh"),
}
DEFAULT_PORTS = tuple(RISKY_PORTS)
OTHER_SERVICE = Service("other", Severity.LOW)
HTTPS_PORTS = frozenset({443, 4443, 8443, 10443})

# Grading by what answered (docs/scanners.md, "ports: grading").
_DATASTORES = frozenset({"redis", "mongodb", "elasticsearch", "memcached"})
_REMOTE_ACCESS = frozenset({"telnet", "vnc", "ms-wbt-server", "microsoft-ds"})
_DATABASES = frozenset({"mysql", "postgresql", "ms-sql-s", "oracle-tns", "ftp", "netbios-ssn"})
_BROKERS = frozenset({"mqtt", "amqp", "nats"})

PORT_EXPOSED = Check(
    check_id="ports.exposed",
    plugin=PLUGIN,
    severity=Severity.LOW,
    title="Risky port reachable from the internet",
    remediation="Close the port at the firewall, or put the service behind a VPN / allow-list of source addresses.",
)
CHECKS = (PORT_EXPOSED,)


@dataclass(frozen=True, kw_only=True, slots=True)
class PortsOptions:
    """``ports``: the TCP ports to try (default: the risky-ports list), at most ``MAX_PORTS_PER_SCAN``."""

    ports: tuple[int, ...] = DEFAULT_PORTS


@dataclass(frozen=True, kw_only=True, slots=True)
class PortState:
    """One port's result: its state, the service found on it, and a one-line banner."""

    port: int
    state: str  # open | closed | filtered
    banner: str | None = None
    identity: Identity | None = None


class PortsScanner(TargetScanner[PortsOptions]):
    """Finds risky services reachable on a host."""

    name = PLUGIN

    def parse_options(self, options: Mapping[str, Any]) -> PortsOptions:
        reject_unknown(options, {"ports"}, plugin=PLUGIN)
        raw = options.get("ports")
        if raw is None:
            return PortsOptions()
        if not isinstance(raw, list) or not raw:
            raise ValidationError("option 'ports' must be a non-empty list of port numbers")
        if len(raw) > MAX_PORTS_PER_SCAN:
            raise ValidationError(f"option 'ports' may list at most {MAX_PORTS_PER_SCAN} ports (got {len(raw)})")
        for port in raw:
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise ValidationError(f"option 'ports' must hold port numbers 1-65535 (got {port!r})")
        return PortsOptions(ports=tuple(dict.fromkeys(raw)))

    async def check(self, *, target: ParsedTarget, session: Session | None, options: PortsOptions) -> PluginReport:
        assert session is not None
        states = await asyncio.gather(*(probe_port(session, port) for port in options.ports))
        report = PluginReport()
        report.findings = [_finding(session, s) for s in states]
        report.details = {
            state: [s.port for s in states if s.state == state] for state in ("open", "closed", "filtered")
        }
        report.details["banners"] = {str(s.port): s.banner for s in states if s.banner}
        report.details["services"] = {str(s.port): _service_details(s.identity) for s in states if s.identity}
        return report


async def probe_port(session: Session, port: int) -> PortState:
    """Connect to one port; when it is open, identify its service (see ``probes.py``)."""
    try:
        async with session.connect(port=port) as conn:
            first = await probes.first_look(session, conn, timeout_s=BANNER_TIMEOUT_S)
    except ConnectFailed as exc:
        return PortState(port=port, state="closed" if exc.kind == "closed" else "filtered")
    except (ConnectionError, TimeoutError):  # it accepted, then hung up
        first = probes.Found(identity=None)
    identity = first.identity or await probes.fallback(session, port, timeout_s=BANNER_TIMEOUT_S)
    banner = identity.describe() if identity is not None else clean_banner(first.first_words)
    if identity is None and first.first_words and banner is None:
        banner = f"binary answer ({len(first.first_words)} bytes), service not identified"
    return PortState(port=port, state="open", banner=banner, identity=identity)


def clean_banner(data: bytes) -> str | None:
    """The first line of what a service said, when it is text (printable, short); None when empty or binary."""
    return printable_line(data)


def grade(identity: Identity | None, port: int) -> Severity:
    """How bad it is that this answered on the internet (the port's usual service when nothing was identified)."""
    if identity is None:
        return RISKY_PORTS.get(port, OTHER_SERVICE).severity
    service = identity.service
    if service in _DATASTORES:
        return Severity.CRITICAL if identity.access == OPEN else Severity.HIGH
    if service in _REMOTE_ACCESS:
        return Severity.CRITICAL
    if service in _DATABASES:
        return Severity.CRITICAL if identity.access == OPEN else Severity.HIGH
    if service in _BROKERS:
        return Severity.HIGH if identity.access == OPEN else Severity.MEDIUM
    if service == "http" and port in HTTPS_PORTS:
        return RISKY_PORTS.get(port, OTHER_SERVICE).severity
    return Severity.LOW


def _service_details(identity: Identity | None) -> dict[str, Any]:
    assert identity is not None
    return {
        "service": identity.service,
        "product": identity.product,
        "version": identity.version,
        "access": {OPEN: "no authentication", AUTH: "authentication required"}.get(identity.access or "", "unknown"),
        "tls": identity.tls,
    }


def _finding(session: Session, state: PortState) -> Finding:
    usual = RISKY_PORTS.get(state.port)
    asset = Asset(host=session.host, ip=str(session.address), port=state.port)
    actual = state.state + (f" ({state.banner})" if state.banner else "")
    # The title names the port's usual service only when that is what answered (or nothing could tell).
    named = usual is not None and (state.identity is None or state.identity.service == usual.service)
    label = f"{usual.name} ({state.port}/tcp)" if named and usual is not None else f"Port {state.port}/tcp"
    return PORT_EXPOSED.finding(
        passed=state.state != "open",
        asset=asset,
        expected="closed or filtered",
        actual=actual,
        severity=grade(state.identity, state.port)
        if state.state == "open"
        else RISKY_PORTS.get(state.port, OTHER_SERVICE).severity,
        title=f"{label} reachable from the internet",
    )
