"""The ``tls`` scanner: certificate validity, trust, strength, and old protocol versions.

Handshakes (each its own connection to the checked address, SNI = target name):

1. a probe with no verification, at OpenSSL's default security level (then at
   level 0 if that fails), to read the certificate and what the server
   negotiates by default;
2. a verifying handshake (system store plus ``--scanner-ca-file``) for the
   chain: its verify error names why a chain is untrusted or self-signed;
3. one handshake pinned to each of TLS 1.0, 1.1, 1.2 and 1.3, at security
   level 0, to learn which the server accepts.

The hostname is matched here against the certificate's SANs, so a mismatch
and an untrusted chain are two findings.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scanq.exceptions import ScannerError, TransientScanError
from scanq.scanners.net.certs import CertFacts, days_left, matches_host, read_certificate
from scanq.scanners.net.connect import ConnectFailed, Session, probing_context, verifying_context
from scanq.scanners.net.findings import Asset, Check, Finding, PluginReport, Severity
from scanq.scanners.net.plugin import TargetScanner, port_option, reject_unknown
from scanq.scanners.net.targets import ParsedTarget

PLUGIN = "tls"
DEFAULT_TLS_PORT = 443
EXPIRY_WARNING_DAYS = 30
# OpenSSL verify codes for validity dates: the chain itself was built and trusted.
_TIME_VERIFY_CODES = frozenset({9, 10})  # X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED
_SELF_SIGNED_VERIFY_CODES = frozenset({18, 19})  # DEPTH_ZERO_SELF_SIGNED_CERT, SELF_SIGNED_CERT_IN_CHAIN
_MODERN = ("TLSv1.2", "TLSv1.3")
PROBED_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


def _check(check_id: str, severity: Severity, title: str, remediation: str) -> Check:
    return Check(check_id=check_id, plugin=PLUGIN, severity=severity, title=title, remediation=remediation)


CERT_EXPIRED = _check(
    "tls.cert.expired", Severity.HIGH, "Certificate has expired", "Renew the certificate and deploy it."
)
CERT_NOT_YET_VALID = _check(
    "tls.cert.not_yet_valid",
    Severity.HIGH,
    "Certificate is not yet valid",
    "Deploy a certificate whose validity has started; check the server clock.",
)
CERT_EXPIRING = _check(
    "tls.cert.expiring_soon",
    Severity.MEDIUM,
    f"Certificate expires within {EXPIRY_WARNING_DAYS} days",
    "Renew the certificate now, and automate renewal (ACME).",
)
CERT_HOSTNAME = _check(
    "tls.cert.hostname_mismatch",
    Severity.HIGH,
    "Certificate does not name the host",
    "Serve a certificate whose subjectAltName covers this host name.",
)
CERT_UNTRUSTED = _check(
    "tls.cert.untrusted",
    Severity.HIGH,
    "Certificate chain is not trusted (or self-signed)",
    "Use a certificate from a public CA and serve the full intermediate chain.",
)
CERT_WEAK_KEY = _check(
    "tls.cert.weak_key",
    Severity.MEDIUM,
    "Certificate key is too small (RSA < 2048 bits)",
    "Reissue the certificate with an RSA key of at least 2048 bits or an ECDSA P-256 key.",
)
CERT_WEAK_SIGNATURE = _check(
    "tls.cert.weak_signature",
    Severity.MEDIUM,
    "Certificate is signed with SHA-1 (or MD5)",
    "Reissue the certificate with a SHA-256 signature.",
)
TLS10 = _check(
    "tls.protocol.tls10_enabled",
    Severity.MEDIUM,
    "TLS 1.0 is accepted",
    "Disable TLS 1.0; accept TLS 1.2 and 1.3 only.",
)
TLS11 = _check(
    "tls.protocol.tls11_enabled",
    Severity.MEDIUM,
    "TLS 1.1 is accepted",
    "Disable TLS 1.1; accept TLS 1.2 and 1.3 only.",
)
NEGOTIATED = _check(
    "tls.protocol.negotiated",
    Severity.INFO,
    "Protocol negotiated by default",
    "Prefer TLS 1.3 (or 1.2 with AEAD ciphers).",
)
CHECKS = (
    CERT_EXPIRED,
    CERT_NOT_YET_VALID,
    CERT_EXPIRING,
    CERT_HOSTNAME,
    CERT_UNTRUSTED,
    CERT_WEAK_KEY,
    CERT_WEAK_SIGNATURE,
    TLS10,
    TLS11,
    NEGOTIATED,
)
_OLD_PROTOCOL_CHECKS = {"TLSv1": TLS10, "TLSv1.1": TLS11}


@dataclass(frozen=True, kw_only=True, slots=True)
class TlsOptions:
    """``port``: the TLS port (default 443)."""

    port: int = DEFAULT_TLS_PORT


@dataclass(frozen=True, kw_only=True, slots=True)
class Handshake:
    """What one probe handshake saw."""

    version: str | None
    cipher: str | None
    cert_der: bytes | None


class TlsScanner(TargetScanner[TlsOptions]):
    """Checks the certificate and protocol versions of one TLS port."""

    name = PLUGIN

    def parse_options(self, options: Mapping[str, Any]) -> TlsOptions:
        reject_unknown(options, {"port"}, plugin=PLUGIN)
        return TlsOptions(port=port_option(options, "port", DEFAULT_TLS_PORT))

    async def check(self, *, target: ParsedTarget, session: Session | None, options: TlsOptions) -> PluginReport:
        assert session is not None
        port = options.port
        asset = Asset(host=session.host, ip=str(session.address), port=port)
        default = await _first_handshake(session, port)
        verify_task = asyncio.create_task(_verify(session, port, self.settings.ca_file))
        protocols = await _probe_versions(session, port)
        verify_error = await verify_task

        report = PluginReport()
        report.details = {
            "port": port,
            "negotiated": {"version": default.version, "cipher": default.cipher},
            "protocols": {name: state for name, state in protocols.items()},
        }
        report.findings.append(_negotiated_finding(default, asset))
        report.findings += _protocol_findings(protocols, asset)
        if default.cert_der is None:
            report.details["certificate"] = "the server sent no certificate"
            return report
        try:
            facts = read_certificate(default.cert_der)
        except ValueError as exc:
            report.details["certificate"] = f"unreadable: {exc}"
            return report
        report.details["certificate"] = _cert_details(facts)
        report.findings += _cert_findings(facts, asset, target=target, session=session)
        if verify_error is not None and verify_error[0] == -1:
            report.details["trust"] = f"not verified: {verify_error[1]}"
        else:
            report.findings.append(_trust_finding(verify_error, facts, asset))
        return report


async def _handshake(session: Session, port: int, ctx: ssl.SSLContext) -> Handshake:
    async with session.connect(port=port, tls=ctx) as conn:
        obj = conn.ssl_object
        if obj is None:  # pragma: no cover - start_tls always sets it
            raise ssl.SSLError("no TLS session")
        cipher = obj.cipher()
        return Handshake(version=obj.version(), cipher=cipher[0] if cipher else None, cert_der=obj.getpeercert(True))


async def _first_handshake(session: Session, port: int) -> Handshake:
    """The default handshake; raise ``ScannerError``/``TransientScanError`` when TLS cannot be had at all."""
    last: BaseException | None = None
    for permissive in (False, True):
        try:
            return await _handshake(session, port, probing_context(permissive=permissive))
        except ConnectFailed as exc:
            if exc.kind == "closed":
                raise ScannerError(f"no TLS service: {exc}") from None
            raise TransientScanError(f"no TLS service: {exc}") from None
        except (ssl.SSLError, ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
            last = exc
    raise ScannerError(f"no TLS handshake on port {port}: {_why(last)}")


async def _verify(session: Session, port: int, ca_file: str) -> tuple[int, str] | None:
    """None when the chain verifies; else (OpenSSL verify code, message); code -1: could not tell."""
    ctx = verifying_context(ca_file)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        await _handshake(session, port, ctx)
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_code, str(exc.verify_message)
    except (ssl.SSLError, ConnectionError, TimeoutError, asyncio.IncompleteReadError, ConnectFailed) as exc:
        return -1, _why(exc)
    return None


async def _probe_versions(session: Session, port: int) -> dict[str, str]:
    """``accepted`` / ``refused`` / ``untested: <why>`` for each protocol version."""

    async def probe(version: ssl.TLSVersion) -> str:
        try:
            ctx = probing_context(version=version)
        except (ValueError, ssl.SSLError) as exc:
            return f"untested: the local TLS library cannot offer it ({exc})"
        try:
            seen = await _handshake(session, port, ctx)
        except ssl.SSLError as exc:
            if "NO_PROTOCOLS_AVAILABLE" in str(exc) or "no protocols available" in str(exc):
                return "untested: the local TLS library cannot offer it"
            return "refused"
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            return "refused"
        except ConnectFailed as exc:
            return f"untested: {exc}"
        return "accepted" if seen.version == _version_name(version) else "refused"

    names = list(PROBED_VERSIONS)
    states = await asyncio.gather(*(probe(PROBED_VERSIONS[n]) for n in names))
    return dict(zip(names, states, strict=True))


def _version_name(version: ssl.TLSVersion) -> str:
    return {v: k for k, v in PROBED_VERSIONS.items()}[version]


def _why(exc: BaseException | None) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _negotiated_finding(default: Handshake, asset: Asset) -> Finding:
    modern = default.version in _MODERN
    return NEGOTIATED.finding(
        passed=modern,
        asset=asset,
        expected="TLSv1.2 or TLSv1.3",
        actual=f"{default.version} {default.cipher or ''}",
        severity=None if modern else Severity.MEDIUM,
    )


def _protocol_findings(protocols: Mapping[str, str], asset: Asset) -> list[Finding]:
    findings = []
    for name, check in _OLD_PROTOCOL_CHECKS.items():
        state = protocols[name]
        if state.startswith("untested"):
            continue  # never claim a pass we could not test; details say why
        findings.append(check.finding(passed=state == "refused", asset=asset, expected="refused", actual=state))
    return findings


def _cert_findings(facts: CertFacts, asset: Asset, *, target: ParsedTarget, session: Session) -> list[Finding]:
    now = datetime.now(UTC)
    left = days_left(facts, now=now)
    expires = facts.not_after.strftime("%Y-%m-%d %H:%M UTC")
    starts = facts.not_before.strftime("%Y-%m-%d %H:%M UTC")
    names = ", ".join(facts.dns_names + tuple(str(ip) for ip in facts.ip_addresses)) or "no subjectAltName"
    return [
        CERT_EXPIRED.finding(passed=left >= 0, asset=asset, expected="not expired", actual=f"expires {expires}"),
        CERT_NOT_YET_VALID.finding(
            passed=facts.not_before <= now, asset=asset, expected="valid from a past date", actual=f"from {starts}"
        ),
        CERT_EXPIRING.finding(
            passed=left >= EXPIRY_WARNING_DAYS or left < 0,
            asset=asset,
            expected=f"more than {EXPIRY_WARNING_DAYS} days left",
            actual=f"{max(left, 0):.0f} days left (expires {expires})",
        ),
        CERT_HOSTNAME.finding(
            passed=matches_host(facts, host=session.host, ip=target.ip),
            asset=asset,
            expected=f"subjectAltName covers {session.host}",
            actual=names,
        ),
        CERT_WEAK_KEY.finding(
            passed=not facts.is_weak_key,
            asset=asset,
            expected="RSA >= 2048 bits or ECDSA >= 224 bits",
            actual=f"{facts.key_type} {facts.key_bits} bits",
        ),
        CERT_WEAK_SIGNATURE.finding(
            passed=not facts.is_weak_signature,
            asset=asset,
            expected="SHA-256 or stronger",
            actual=str(facts.signature_hash),
        ),
    ]


def _trust_finding(verify_error: tuple[int, str] | None, facts: CertFacts, asset: Asset) -> Finding:
    if verify_error is None or verify_error[0] in _TIME_VERIFY_CODES:
        actual = "chain verifies" if verify_error is None else "chain verifies (validity dates reported apart)"
        return CERT_UNTRUSTED.finding(passed=True, asset=asset, expected="chain to a trusted CA", actual=actual)
    code, message = verify_error
    self_signed = code in _SELF_SIGNED_VERIFY_CODES or facts.is_self_issued
    return CERT_UNTRUSTED.finding(
        passed=False,
        asset=asset,
        expected="chain to a trusted CA",
        actual=f"{'self-signed: ' if self_signed else ''}{message} (code {code})",
        title="Certificate is self-signed" if self_signed else None,
    )


def _cert_details(facts: CertFacts) -> dict[str, Any]:
    return {
        "subject": facts.subject,
        "issuer": facts.issuer,
        "not_before": facts.not_before.isoformat(),
        "not_after": facts.not_after.isoformat(),
        "names": list(facts.dns_names) + [str(ip) for ip in facts.ip_addresses],
        "key": f"{facts.key_type} {facts.key_bits}",
        "signature_hash": facts.signature_hash,
    }
