"""The TLS lab: a private PKI made at test time, TLS servers on 127.0.0.1, and sslyze as the reference.

Every certificate is made here with ``cryptography``: a lab root (trusted by
both scanq and sslyze through a CA file), an intermediate, and leaves with
one weakness each. Servers run in threads (not on the test's event loop), so
sslyze's blocking scans and scanq's asyncio scans can both reach them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import socketserver
import ssl
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK = "127.0.0.1"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# --- certificates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: PrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "scanq lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(common_name: str, *, issuer: Issued | None = None, sha1: bool = False) -> Issued:
    """A CA certificate (RSA 2048, so it can also sign with SHA-1): a root, or an intermediate of ``issuer``."""
    key = rsa.generate_private_key(65537, 2048)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.cert.subject if issuer else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(days=30))
        .not_valid_after(_now() + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    signer = issuer.key if issuer else key
    cert = builder.sign(signer, hashes.SHA256())
    if sha1:
        assert isinstance(signer, rsa.RSAPrivateKey)
        cert = _resign_with_sha1(cert, signer)
    return Issued(cert, key)


def make_leaf(
    issuer: Issued | None,
    names: Sequence[str],
    *,
    rsa_bits: int | None = None,
    sha1: bool = False,
    valid_days: tuple[int, int] = (-1, 365),
) -> Issued:
    """A server certificate for ``names`` (EC P-256 unless ``rsa_bits``), signed by ``issuer`` (None: self-signed)."""
    key: PrivateKey = rsa.generate_private_key(65537, rsa_bits) if rsa_bits else ec.generate_private_key(ec.SECP256R1())
    subject = _name(names[0])
    san = [x509.DNSName(n) for n in names]
    signer = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() + dt.timedelta(days=valid_days[0]))
        .not_valid_after(_now() + dt.timedelta(days=valid_days[1]))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    )
    cert = builder.sign(signer, hashes.SHA256())
    if sha1:
        assert isinstance(signer, rsa.RSAPrivateKey), "SHA-1 re-signing needs an RSA signer"
        cert = _resign_with_sha1(cert, signer)
    return Issued(cert, key)


_SHA256_RSA_OID = bytes.fromhex("06092a864886f70d01010b")
_SHA1_RSA_OID = bytes.fromhex("06092a864886f70d010105")


def _resign_with_sha1(cert: x509.Certificate, signer: rsa.RSAPrivateKey) -> x509.Certificate:
    """The same certificate signed with SHA-1, which cryptography's builder refuses to do.

    The two signature OIDs have the same length, and so has the new signature
    (same key), so swapping them in the DER keeps every length field valid.
    """
    der = cert.public_bytes(serialization.Encoding.DER)
    tbs = cert.tbs_certificate_bytes
    sha1_tbs = tbs.replace(_SHA256_RSA_OID, _SHA1_RSA_OID)
    signature = signer.sign(sha1_tbs, padding.PKCS1v15(), hashes.SHA1())
    out = der.replace(tbs, sha1_tbs).replace(_SHA256_RSA_OID, _SHA1_RSA_OID).replace(cert.signature, signature)
    assert len(out) == len(der)
    return x509.load_der_x509_certificate(out)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# --- servers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    """One lab server: the chain it sends (leaf first) and the protocol versions it speaks."""

    leaf: Issued
    extra_chain: tuple[x509.Certificate, ...] = ()
    min_version: ssl.TLSVersion | None = None
    max_version: ssl.TLSVersion | None = None


def server_context(config: ServerConfig, directory: Path, label: str) -> ssl.SSLContext:
    """A server context sending ``config``'s chain; old versions and small keys need OpenSSL security level 0."""
    chain_path, key_path = directory / f"{label}.chain.pem", directory / f"{label}.key"
    chain_path.write_bytes(pem(config.leaf.cert) + b"".join(pem(c) for c in config.extra_chain))
    key_path.write_bytes(
        config.leaf.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = config.min_version or ssl.TLSVersion.MINIMUM_SUPPORTED
        if config.max_version is not None:
            ctx.maximum_version = config.max_version
    ctx.load_cert_chain(chain_path, key_path)
    return ctx


class _Handler(socketserver.BaseRequestHandler):
    server: _TlsServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(5)
        with contextlib.suppress(OSError, ssl.SSLError, ValueError):
            with self.server.tls.wrap_socket(sock, server_side=True) as conn:
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    conn.recv(1024)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")


class _TlsServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, tls: ssl.SSLContext) -> None:
        self.tls = tls
        super().__init__((LOOPBACK, 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a probe that hangs up mid-handshake is expected here


@dataclass
class TlsLab:
    """The lab PKI and its running servers (``close`` stops them)."""

    directory: Path
    root: Issued = field(init=False)
    intermediate: Issued = field(init=False)
    trustme_ca: trustme.CA = field(init=False)
    ca_file: Path = field(init=False)
    servers: list[_TlsServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = make_ca("scanq lab root")
        self.intermediate = make_ca("scanq lab intermediate", issuer=self.root)
        # trustme's certificates follow RFC 5280 but not every CA/B Forum lint (see the trustme case).
        self.trustme_ca = trustme.CA()
        self.ca_file = self.directory / "lab-roots.pem"
        self.ca_file.write_bytes(pem(self.root.cert) + self.trustme_ca.cert_pem.bytes())

    def trustme_chain(self, host: str) -> ServerConfig:
        """A leaf from a trustme intermediate, sent with the intermediate."""
        child = self.trustme_ca.create_child_ca()
        leaf = child.issue_cert(host)
        certs = [x509.load_pem_x509_certificate(blob.bytes()) for blob in leaf.cert_chain_pems]
        key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        return ServerConfig(Issued(certs[0], key), tuple(certs[1:]))

    def serve(self, config: ServerConfig, label: str) -> int:
        """Start a server for ``config``; returns its port on 127.0.0.1."""
        server = _TlsServer(server_context(config, self.directory, label))
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        self.servers.append(server)
        port: int = server.server_address[1]
        return port

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@contextlib.contextmanager
def tls_lab(directory: Path) -> Iterator[TlsLab]:
    lab = TlsLab(directory)
    try:
        yield lab
    finally:
        lab.close()
