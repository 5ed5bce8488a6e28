"""Connections to a checked target: pinned to its checked address, bounded in number and time.

Every plugin connects through ``Session.connect``, so the SSRF rules hold by
construction: a ``Session`` is only made by ``open_session`` from addresses that
passed the policy, and it connects to those addresses only. TLS is started on
the TCP stream to that address with ``server_hostname`` set to the target name
(SNI and certificate checks use the name; the packets go to the checked IP).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass

from scanq.scanners.net.addresses import AddressPolicy, IPAddress
from scanq.scanners.net.hostsfile import HostsFile
from scanq.scanners.net.settings import NetSettings
from scanq.scanners.net.targets import ParsedTarget, resolve_target

# OpenSSL refuses old protocols and weak keys at its default security level;
# level 0 lets a probe see what the server would accept.
PERMISSIVE_CIPHERS = "DEFAULT:@SECLEVEL=0"


class ConnectFailed(Exception):
    """The TCP connection could not be made (``kind``: ``closed``, ``filtered`` or ``unreachable``)."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Connection:
    """An open stream to the target."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    address: IPAddress
    port: int

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        obj = self.writer.get_extra_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None


class Session:
    """One resolved and checked target, shared by the plugins of a scan.

    Args:
        target: the parsed target.
        addresses: its checked addresses; connections go to the first one (IPv4 preferred).
        settings: connect timeout, sockets per target, CA file.
    """

    def __init__(self, *, target: ParsedTarget, addresses: tuple[IPAddress, ...], settings: NetSettings) -> None:
        if not addresses:
            raise ValueError("a session needs at least one checked address")
        self.target = target
        self.addresses = addresses
        self.settings = settings
        self.connect_timeout_s = settings.connect_timeout_seconds
        self._sockets = asyncio.Semaphore(settings.sockets_per_target)

    @property
    def host(self) -> str:
        return self.target.host

    @property
    def address(self) -> IPAddress:
        """The address every connection goes to."""
        return self.addresses[0]

    @property
    def server_hostname(self) -> str | None:
        """The SNI name: the target name, or None for an IP target (no SNI for addresses)."""
        return None if self.target.is_ip else self.target.host

    @contextlib.asynccontextmanager
    async def connect(
        self, *, port: int, tls: ssl.SSLContext | None = None, timeout_s: float | None = None
    ) -> AsyncIterator[Connection]:
        """Open a TCP connection to the checked address, optionally start TLS, close it on exit.

        Holds one of the target's socket slots for the connection's lifetime.

        Raises:
            ConnectFailed: the TCP connection failed (refused, timed out, unreachable).
            ssl.SSLError, ConnectionError, TimeoutError: the TLS handshake failed.
        """
        timeout = self.connect_timeout_s if timeout_s is None else timeout_s
        async with self._sockets:
            reader, writer = await _open_tcp(self.address, port, timeout)
            try:
                if tls is not None:
                    async with asyncio.timeout(timeout):
                        await writer.start_tls(tls, server_hostname=self.server_hostname, ssl_handshake_timeout=timeout)
                yield Connection(reader=reader, writer=writer, address=self.address, port=port)
            finally:
                await close_quietly(writer)


async def _open_tcp(
    address: IPAddress, port: int, timeout_s: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    where = f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
    try:
        async with asyncio.timeout(timeout_s):
            return await asyncio.open_connection(str(address), port)
    except TimeoutError:
        raise ConnectFailed(f"{where} did not answer within {timeout_s:g}s", kind="filtered") from None
    except ConnectionRefusedError:
        raise ConnectFailed(f"{where} refused the connection", kind="closed") from None
    except OSError as exc:
        raise ConnectFailed(f"{where} unreachable: {exc.strerror or exc}", kind="unreachable") from None


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    """Close a stream, ignoring the errors a peer that already hung up causes."""
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        async with asyncio.timeout(1.0):
            await writer.wait_closed()


async def open_session(
    target: ParsedTarget, *, settings: NetSettings, policy: AddressPolicy | None = None, hosts: HostsFile | None = None
) -> Session:
    """Resolve ``target``, check every address, and return a session pinned to them.

    Args:
        target: the parsed target.
        settings: the allow-list, name servers and hosts file, unless given here.
        policy: the address rules (default: from ``settings``).
        hosts: the hosts file, read before any resolver (default: ``settings.hosts_file``).

    Raises:
        TargetRefused, ScannerError, TransientScanError: from ``targets.resolve_target``.
    """
    rules = policy if policy is not None else AddressPolicy.from_cidrs(settings.target_allowlist)
    if hosts is None and settings.hosts_file:
        hosts = HostsFile(settings.hosts_file)
    addresses = await resolve_target(target, policy=rules, nameservers=settings.nameservers, hosts=hosts)
    return Session(target=target, addresses=addresses, settings=settings)


def verifying_context(ca_file: str = "") -> ssl.SSLContext:
    """A client context that verifies the chain (system store plus ``ca_file``), not the hostname.

    The hostname is checked separately (``tls.py``) so a mismatch and an untrusted
    chain are reported as two findings.
    """
    ctx = ssl.create_default_context()
    if ca_file:
        ctx.load_verify_locations(cafile=ca_file)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def probing_context(*, version: ssl.TLSVersion | None = None, permissive: bool = False) -> ssl.SSLContext:
    """A client context that accepts any certificate, to look at what the server offers.

    Args:
        version: pin the handshake to exactly this protocol version.
        permissive: lower OpenSSL's security level so old protocols, ciphers and small keys can be negotiated.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if permissive or version is not None:
        ctx.set_ciphers(PERMISSIVE_CIPHERS)
    with warnings.catch_warnings():
        # Naming TLSv1/TLSv1_1 warns as deprecated: probing for them is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        if version is not None:
            ctx.minimum_version = version
            ctx.maximum_version = version
        elif permissive:
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return ctx
