"""Whether a certificate chain, as the server sent it, is trusted: browser rules, any protocol version.

The chain is verified with ``cryptography``'s X.509 path validation against
the system store plus the configured CA file, apart from any handshake, so
the result does not depend on which protocol or OpenSSL security level a
handshake used. The rules are the web PKI's as browsers apply them:

- signatures: SHA-256/384/512 with RSA (PKCS#1 v1.5 or PSS) or ECDSA; SHA-1 and
  MD5 are refused anywhere in the chain below the root;
- CA keys: RSA of at least 2048 bits, or ECDSA P-256/384/521;
- issuers are CAs (basicConstraints cA), path lengths, name constraints, key
  usage keyCertSign and, when present, an EKU that allows serverAuth;
- the leaf carries a subjectAltName and, when present, an EKU with serverAuth.

Two things are judged elsewhere and so left out here: the host name (a
mismatch is its own finding) and the leaf's own validity dates (expired and
not-yet-valid are their own findings): a leaf outside its dates is verified
at the nearest moment inside them. Criticality lints of the CA/B Forum
profile that browsers do not enforce (a critical subjectAltName, a critical
EKU on a CA) are not applied.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

MAX_CHAIN_DEPTH = 8
_SERVER_AUTH_EKUS = frozenset({ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE})
# The verifier always matches a name against the leaf's SANs; the host name is judged apart, so one of the
# leaf's own names is given (this one when it has none: the missing SAN then fails as it should).
_PLACEHOLDER_NAME = x509.DNSName("scanq.invalid")
_WEAK_HASH_LABELS = (("sha1", "SHA-1"), ("md5", "MD5"))


@dataclass(frozen=True, kw_only=True, slots=True)
class TrustVerdict:
    """The result of verifying one chain."""

    is_trusted: bool
    reason: str
    is_self_signed: bool = False


class TrustStore:
    """Trust anchors: the system store plus an optional CA file.

    Args:
        anchors: the trusted root certificates.
    """

    def __init__(self, anchors: Sequence[x509.Certificate]) -> None:
        self.size = len(anchors)
        self._store = Store(list(anchors)) if anchors else None

    @classmethod
    def load(cls, ca_file: str = "") -> TrustStore:
        """The system's default CA store (as OpenSSL finds it) plus the PEM bundle ``ca_file``."""
        ctx = ssl.create_default_context()
        anchors: list[x509.Certificate] = []
        with warnings.catch_warnings():
            # A few system roots have odd encodings (e.g. a zero serial); cryptography warns and still reads them.
            warnings.simplefilter("ignore")
            for der in ctx.get_ca_certs(binary_form=True):
                try:
                    anchors.append(x509.load_der_x509_certificate(der))
                except ValueError:
                    continue
            if ca_file:
                with open(ca_file, "rb") as f:
                    anchors += x509.load_pem_x509_certificates(f.read())
        return cls(anchors)

    def verify(self, chain: Sequence[bytes], *, now: dt.datetime | None = None) -> TrustVerdict:
        """Verify a chain as sent (leaf first, DER); the extra certificates are untrusted intermediates.

        Raises:
            ValueError: the leaf cannot be parsed.
        """
        if not chain:
            raise ValueError("no certificate to verify")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            leaf = x509.load_der_x509_certificate(chain[0])
            intermediates = []
            for der in chain[1:]:
                try:
                    intermediates.append(x509.load_der_x509_certificate(der))
                except ValueError:
                    continue  # an unreadable extra is as good as absent
        is_self_signed = leaf.subject == leaf.issuer
        if self._store is None:
            return TrustVerdict(is_trusted=False, reason="no trust anchors to verify against", is_self_signed=False)
        moment = _inside_validity(leaf, now or dt.datetime.now(dt.UTC))
        verifier = (
            PolicyBuilder()
            .store(self._store)
            .time(moment)
            .max_chain_depth(MAX_CHAIN_DEPTH)
            .extension_policies(ca_policy=_ca_policy(), ee_policy=_ee_policy())
            .build_server_verifier(_own_name(leaf))
        )
        try:
            built = verifier.verify(leaf, intermediates)
        except VerificationError as exc:
            return TrustVerdict(is_trusted=False, reason=_reason(exc, is_self_signed), is_self_signed=is_self_signed)
        root = built[-1].subject.rfc4514_string()
        return TrustVerdict(is_trusted=True, reason=f"chain of {len(built)} verifies to {root}")


def _own_name(leaf: x509.Certificate) -> x509.DNSName | x509.IPAddress:
    """A name the leaf's subjectAltName covers (a wildcard's label filled in)."""
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return _PLACEHOLDER_NAME
    for name in san:
        if isinstance(name, x509.DNSName) and name.value:
            value = name.value.rstrip(".")
            return x509.DNSName("scanq" + value[1:] if value.startswith("*.") else value)
        if isinstance(name, x509.IPAddress) and not isinstance(
            name.value, ipaddress.IPv4Network | ipaddress.IPv6Network
        ):
            return name
    return _PLACEHOLDER_NAME


def _inside_validity(leaf: x509.Certificate, now: dt.datetime) -> dt.datetime:
    """``now``, or the nearest moment within the leaf's dates (those are reported apart)."""
    second = dt.timedelta(seconds=1)
    if now < leaf.not_valid_before_utc:
        return leaf.not_valid_before_utc + second
    if now > leaf.not_valid_after_utc:
        return leaf.not_valid_after_utc - second
    return now


def _reason(exc: VerificationError, is_self_signed: bool) -> str:
    text = str(exc).removeprefix("validation failed: ")
    # Drop cryptography's "(encountered processing <Certificate(...)>)" tail: long and not for a human.
    text = text.split(" (encountered processing", 1)[0].removeprefix("candidates exhausted: ")
    if "no interior errors" in text:
        if is_self_signed:
            return "self-signed certificate, not in the trust store"
        return "no path to a trusted root (an intermediate is missing, or the issuer is not trusted)"
    if "Forbidden signature algorithm" in text:
        weak = next((label for h, label in _WEAK_HASH_LABELS if h in text.lower()), "a refused algorithm")
        return f"a certificate in the chain is signed with {weak}, which browsers refuse"
    if "RSA key is too weak" in text:
        return "an issuing CA has an RSA key below 2048 bits"
    return text


def _ca_policy() -> ExtensionPolicy:
    return (
        ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _ca_basic_constraints)
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _server_auth_eku)
    )


def _ee_policy() -> ExtensionPolicy:
    return (
        ExtensionPolicy.permit_all()
        .require_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _server_auth_eku)
    )


def _ca_basic_constraints(policy: Policy, cert: x509.Certificate, value: x509.BasicConstraints) -> None:
    if not value.ca:
        raise ValueError("issuer is not a CA (basicConstraints cA is false)")


def _ca_key_usage(policy: Policy, cert: x509.Certificate, value: x509.KeyUsage | None) -> None:
    if value is not None and not value.key_cert_sign:
        raise ValueError("issuer's keyUsage does not allow signing certificates")


def _server_auth_eku(policy: Policy, cert: x509.Certificate, value: x509.ExtendedKeyUsage | None) -> None:
    if value is not None and not _SERVER_AUTH_EKUS.intersection(value):
        raise ValueError("extendedKeyUsage does not allow serverAuth")
