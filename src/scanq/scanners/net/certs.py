"""Facts about a server certificate, read with ``cryptography`` (no network here)."""

from __future__ import annotations

import ipaddress
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa

from scanq.scanners.net.addresses import IPAddress

MIN_RSA_BITS = 2048
MIN_EC_BITS = 224
WEAK_HASHES = (hashes.SHA1, hashes.MD5)


@dataclass(frozen=True, kw_only=True, slots=True)
class CertFacts:
    """What the checks need from a leaf certificate."""

    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    dns_names: tuple[str, ...]
    ip_addresses: tuple[IPAddress, ...]
    key_type: str
    key_bits: int
    signature_hash: str | None
    is_self_issued: bool

    @property
    def is_weak_key(self) -> bool:
        if self.key_type == "RSA":
            return self.key_bits < MIN_RSA_BITS
        if self.key_type == "EC":
            return self.key_bits < MIN_EC_BITS
        return self.key_type == "DSA"

    @property
    def is_weak_signature(self) -> bool:
        return self.signature_hash in ("sha1", "md5")


def read_certificate(der: bytes) -> CertFacts:
    """Parse a DER certificate; raise ``ValueError`` if it cannot be read."""
    with warnings.catch_warnings():
        # Odd certificates (negative serials, bad encodings) warn; the scan should still report them.
        warnings.simplefilter("ignore")
        cert = x509.load_der_x509_certificate(der)
        return _facts(cert)


def _facts(cert: x509.Certificate) -> CertFacts:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = tuple(name.lower() for name in san.get_values_for_type(x509.DNSName))
        ips = tuple(san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns_names, ips = (), ()
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key_type, bits = "RSA", key.key_size
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key_type, bits = "EC", key.curve.key_size
    elif isinstance(key, dsa.DSAPublicKey):
        key_type, bits = "DSA", key.key_size
    else:
        key_type, bits = type(key).__name__.removesuffix("PublicKey").lstrip("_"), 0
    try:
        algorithm = cert.signature_hash_algorithm
        signature_hash = algorithm.name if algorithm is not None else None
    except UnsupportedAlgorithm:
        signature_hash = "unknown"
    return CertFacts(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        dns_names=dns_names,
        ip_addresses=tuple(ip for ip in ips if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)),
        key_type=key_type,
        key_bits=bits,
        signature_hash=signature_hash,
        is_self_issued=cert.subject == cert.issuer,
    )


def matches_host(facts: CertFacts, *, host: str, ip: IPAddress | None) -> bool:
    """Whether the certificate names the target (RFC 6125: SAN only, no CN fallback, whole-label wildcards)."""
    if ip is not None:
        return ip in facts.ip_addresses
    return any(_dns_name_matches(pattern, host) for pattern in facts.dns_names)


def _dns_name_matches(pattern: str, host: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if not pattern.startswith("*."):
        return "*" not in pattern and pattern == host
    # A wildcard covers exactly one leftmost label, and never a bare public suffix like "*.com".
    suffix = pattern[2:]
    if "*" in suffix or "." not in suffix:
        return False
    head, _, rest = host.partition(".")
    return bool(head) and rest == suffix


def days_left(facts: CertFacts, *, now: datetime | None = None) -> float:
    """Days until the certificate expires (negative once it has)."""
    moment = now or datetime.now(UTC)
    return (facts.not_after - moment).total_seconds() / 86400
