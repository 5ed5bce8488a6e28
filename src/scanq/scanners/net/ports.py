"""The ``ports`` scanner: a TCP connect scan of risky ports, with a banner grab.

No raw sockets and no nmap: one ``connect()`` per port to the checked address,
bounded by the target's socket limit and a short timeout. A port is ``open``
(connected), ``closed`` (refused) or ``filtered`` (no answer in time, or
unreachable). On an open port the banner is what the service says first
within ``BANNER_TIMEOUT_S``, or else its answer to ``HEAD /`` (over TLS on the
TLS ports). Banners are cut to one short printable line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scanq.exceptions import ValidationError
from scanq.scanners.net import httpwire
from scanq.scanners.net.connect import ConnectFailed, Session, probing_context
from scanq.scanners.net.findings import Asset, Check, Finding, PluginReport, Severity, shorten
from scanq.scanners.net.plugin import TargetScanner, reject_unknown
from scanq.scanners.net.targets import ParsedTarget

PLUGIN = "ports"
BANNER_TIMEOUT_S = 1.5
BANNER_MAX_BYTES = 512
BANNER_MAX_CHARS = 120
MAX_PORTS_PER_SCAN = 100


@dataclass(frozen=True, slots=True)
class Service:
    """What an exposed port usually is, and how bad exposing it to the internet is."""

    name: str
    severity: Severity


# The default list and each port's severity when open (documented in docs/scanners.md).
RISKY_PORTS: dict[int, Service] = {
    3389: Service("RDP", Severity.CRITICAL),
    5900: Service("VNC", Severity.CRITICAL),
    445: Service("SMB", Severity.CRITICAL),
    23: Service("Telnet", Severity.CRITICAL),
    6379: Service("Redis", Severity.CRITICAL),
    9200: Service("Elasticsearch", Severity.CRITICAL),
    11211: Service("Memcached", Severity.CRITICAL),
    27017: Service("MongoDB", Severity.CRITICAL),
    139: Service("NetBIOS", Severity.HIGH),
    21: Service("FTP", Severity.HIGH),
    1433: Service("Microsoft SQL Server", Severity.HIGH),
    3306: Service("MySQL", Severity.HIGH),
    5432: Service("PostgreSQL", Severity.HIGH),
    1521: Service("Oracle DB", Severity.HIGH),
    4443: Service("remote-access appliance (HTTPS admin/VPN)", Severity.MEDIUM),
    8443: Service("remote-access appliance (HTTPS admin/VPN)", Severity.MEDIUM),
    10443: Service("remote-access appliance (HTTPS admin/VPN)", Severity.MEDIUM),
    22: Service("SSH", Severity.LOW),
}
DEFAULT_PORTS = tuple(RISKY_PORTS)
OTHER_SERVICE = Service("other", Severity.LOW)
HTTPS_PORTS = frozenset({443, 4443, 8443, 10443})

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
    """One port's result."""

    port: int
    state: str  # open | closed | filtered
    banner: str | None = None


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
        return report


async def probe_port(session: Session, port: int) -> PortState:
    """Connect to one port; when it is open, grab a banner.

    TLS ports get a TLS handshake and ``HEAD /``. Elsewhere the banner is what the
    service says first; a service that stays silent (most web servers) is sent
    ``HEAD /`` on the same connection and its status line and Server header kept.
    """
    if port in HTTPS_PORTS:
        return await _probe_tls_web(session, port)
    try:
        async with session.connect(port=port) as conn:
            banner = await _read_banner(conn.reader)
            if banner is None:
                conn.writer.write(f"HEAD / HTTP/1.0\r\nHost: {session.host}\r\n\r\n".encode())
                await conn.writer.drain()
                banner = await _read_banner(conn.reader, web=True)
    except ConnectFailed as exc:
        return PortState(port=port, state="closed" if exc.kind == "closed" else "filtered")
    except ConnectionError:  # it accepted, then hung up on our HEAD
        return PortState(port=port, state="open")
    return PortState(port=port, state="open", banner=banner)


async def _read_banner(reader: asyncio.StreamReader, *, web: bool = False) -> str | None:
    try:
        async with asyncio.timeout(BANNER_TIMEOUT_S):
            data = await reader.read(BANNER_MAX_BYTES)
    except (TimeoutError, ConnectionError):
        return None
    if web and data.startswith(b"HTTP/"):
        try:
            response = httpwire.parse_head(data.split(b"\r\n\r\n", 1)[0])
        except httpwire.HttpError:
            return clean_banner(data)
        return _web_banner(response)
    return clean_banner(data)


async def _probe_tls_web(session: Session, port: int) -> PortState:
    try:
        async with session.connect(port=port):
            pass
    except ConnectFailed as exc:
        return PortState(port=port, state="closed" if exc.kind == "closed" else "filtered")
    try:
        response = await httpwire.request(
            session, port=port, tls=probing_context(permissive=True), method="HEAD", read_timeout_s=BANNER_TIMEOUT_S
        )
    except (httpwire.HttpError, ConnectFailed):
        return PortState(port=port, state="open")
    return PortState(port=port, state="open", banner=_web_banner(response))


def _web_banner(response: httpwire.HttpResponse) -> str:
    server = response.header("server")
    return shorten(f"HTTP {response.status}" + (f" Server: {server}" if server else ""), BANNER_MAX_CHARS)


def clean_banner(data: bytes) -> str | None:
    """The first line of a banner, printable and short; None when empty."""
    line = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    text = shorten(line, BANNER_MAX_CHARS)
    return text or None


def _finding(session: Session, state: PortState) -> Finding:
    service = RISKY_PORTS.get(state.port, OTHER_SERVICE)
    asset = Asset(host=session.host, ip=str(session.address), port=state.port)
    actual = state.state + (f" ({state.banner})" if state.banner else "")
    label = f"{service.name} ({state.port}/tcp)" if service is not OTHER_SERVICE else f"Port {state.port}/tcp"
    return PORT_EXPOSED.finding(
        passed=state.state != "open",
        asset=asset,
        expected="closed or filtered",
        actual=actual,
        severity=service.severity,
        title=f"{label} reachable from the internet",
    )
