"""Local servers and certificates for the scanner tests: everything on 127.0.0.1, made at test time."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import socket
import ssl
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from dnslib import AAAA, DS, MX, QTYPE, RCODE, RR, SOA, TXT, A, DNSRecord

LOOPBACK = "127.0.0.1"

# --- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CertFiles:
    """A certificate chain and its key, as PEM files for ``load_cert_chain``."""

    chain: Path
    key: Path


def write_self_signed(
    directory: Path,
    *,
    name: str,
    names: Iterable[str] = ("localhost",),
    ips: Iterable[str] = (LOOPBACK,),
    rsa_bits: int | None = None,
    hash_algorithm: hashes.HashAlgorithm | None = None,
    valid_days: tuple[int, int] = (-1, 365),
) -> CertFiles:
    """A self-signed leaf certificate (EC P-256 unless ``rsa_bits``), written under ``directory``."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    key = rsa.generate_private_key(65537, rsa_bits) if rsa_bits else ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    san: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    san += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=valid_days[0]))
        .not_valid_after(now + dt.timedelta(days=valid_days[1]))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
    )
    cert = builder.sign(key, hashes.SHA256())
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    if isinstance(hash_algorithm, hashes.SHA1):
        assert isinstance(key, rsa.RSAPrivateKey)
        cert_der = _resign_with_sha1(cert, cert_der, key)
    chain = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    chain.write_bytes(x509.load_der_x509_certificate(cert_der).public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return CertFiles(chain=chain, key=key_path)


_SHA256_RSA_OID = bytes.fromhex("06092a864886f70d01010b")
_SHA1_RSA_OID = bytes.fromhex("06092a864886f70d010105")


def _resign_with_sha1(cert: x509.Certificate, der: bytes, key: rsa.RSAPrivateKey) -> bytes:
    """The same certificate signed with SHA-1, which cryptography's builder no longer does.

    sha256WithRSAEncryption and sha1WithRSAEncryption OIDs have the same length, and so
    has the new signature, so swapping them in the DER keeps every length field valid.
    """
    tbs = cert.tbs_certificate_bytes
    sha1_tbs = tbs.replace(_SHA256_RSA_OID, _SHA1_RSA_OID)
    signature = key.sign(sha1_tbs, padding.PKCS1v15(), hashes.SHA1())
    out = der.replace(tbs, sha1_tbs).replace(_SHA256_RSA_OID, _SHA1_RSA_OID).replace(cert.signature, signature)
    assert len(out) == len(der)
    return out


def server_context(
    cert: CertFiles,
    *,
    version: ssl.TLSVersion | None = None,
    permissive: bool = False,
) -> ssl.SSLContext:
    """A server context for ``cert``; ``version`` pins the protocol (at OpenSSL security level 0)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if permissive or version is not None:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if version is not None:
            ctx.minimum_version = version
            ctx.maximum_version = version
    ctx.load_cert_chain(cert.chain, cert.key)
    return ctx


# --- HTTP (and bare TLS) servers --------------------------------------------------------------


@dataclass
class HttpReply:
    """What the test server answers to every request."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b"hello"

    def encode(self) -> bytes:
        lines = [f"HTTP/1.1 {self.status} Status", f"Content-Length: {len(self.body)}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass
class Servers:
    """Starts servers on 127.0.0.1 and stops them all at the end of a test."""

    running: list[asyncio.Server] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    active: int = 0
    peak: int = 0

    async def http(self, reply: HttpReply | Callable[[str], HttpReply], *, tls: ssl.SSLContext | None = None) -> int:
        """An HTTP/1.1 server (HTTPS with ``tls``) answering ``reply``; returns its port."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError):
                async with asyncio.timeout(5):
                    head = await reader.readuntil(b"\r\n\r\n")
                request_line = head.split(b"\r\n", 1)[0].decode()
                host = next(
                    (
                        line.split(":", 1)[1].strip()
                        for line in head.decode().split("\r\n")
                        if line.lower().startswith("host:")
                    ),
                    "",
                )
                self.requests.append(f"{request_line} host={host}")
                answer = reply(request_line) if callable(reply) else reply
                writer.write(answer.encode())
                await writer.drain()
            writer.close()

        return await self._start(handle, tls)

    async def banner(self, banner: bytes | None) -> int:
        """A TCP server that sends ``banner`` on connect (None: says nothing); returns its port."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.active += 1
            self.peak = max(self.peak, self.active)
            try:
                await talk(reader, writer)
            finally:
                self.active -= 1
            writer.close()

        async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                await asyncio.sleep(0.05)  # hold the connection a little so concurrency is visible
                if banner is not None:
                    writer.write(banner)
                    await writer.drain()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(3):
                        await reader.read(1)

        return await self._start(handle, None)

    async def _start(self, handle: Callable[..., object], tls: ssl.SSLContext | None) -> int:
        server = await asyncio.start_server(handle, LOOPBACK, 0, ssl=tls)  # type: ignore[arg-type]
        self.running.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        for server in self.running:
            server.close()
        for server in self.running:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await server.wait_closed()


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


# --- DNS ----------------------------------------------------------------------------------------

Record = tuple[str, str, object]  # (name, type, rdata)


def txt(value: str) -> TXT:
    """A TXT rdata, split in 255-byte strings as DNS requires."""
    raw = value.encode()
    return TXT([raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""])


def a(address: str) -> A:
    return A(address)


def aaaa(address: str) -> AAAA:
    return AAAA(list(ipaddress.IPv6Address(address).packed))


def mx(host: str, preference: int = 10) -> MX:
    return MX(host, preference)


def ds() -> DS:
    return DS(12345, 13, 2, bytes(range(32)))


def soa(zone: str) -> SOA:
    return SOA(f"ns.{zone}", f"hostmaster.{zone}", (1, 3600, 600, 86400, 60))


class DnsServer(asyncio.DatagramProtocol):
    """An authoritative-looking UDP DNS server answering from a dict of records."""

    def __init__(self, records: Iterable[Record]) -> None:
        self.records: dict[tuple[str, str], list[object]] = {}
        for name, rtype, rdata in records:
            self.records.setdefault((name.lower().rstrip("."), rtype), []).append(rdata)
        self.queries: list[tuple[str, str]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        request = DNSRecord.parse(data)
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        rtype = QTYPE[request.q.qtype]
        self.queries.append((name, rtype))
        answers = self.records.get((name, rtype), [])
        for rdata in answers:
            reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=rdata, ttl=60))
        if not answers and not any(key[0] == name for key in self.records):
            reply.header.rcode = RCODE.NXDOMAIN
        assert self.transport is not None
        self.transport.sendto(reply.pack(), addr)


async def start_dns(records: Iterable[Record]) -> tuple[DnsServer, asyncio.DatagramTransport, str]:
    """Start a DNS server on 127.0.0.1; returns it, its transport and its ``ip:port``."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(lambda: DnsServer(records), local_addr=(LOOPBACK, 0))
    port = transport.get_extra_info("sockname")[1]
    return protocol, transport, f"{LOOPBACK}:{port}"
