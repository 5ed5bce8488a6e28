"""The ``tls`` scanner: certificate validity, trust, strength, and old protocol versions.

Handshakes (each its own connection to the checked address, SNI = target name):

1. a probe with no verification, at OpenSSL's default security level (then at
   level 0 if that fails), to read the certificate chain the server sends and
   what it negotiates by default;
2. one handshake pinned to each of TLS 1.0, 1.1, 1.2 and 1.3, at security
   level 0, to learn which the server accepts.

Trust is judged on the chain as sent, apart from any handshake
(``trust.py``: browser rules, system store plus ``--scanner-ca-file``), so it
is the same whichever protocol the server speaks. The hostname is matched here
against the certificate's SANs, so a mismatch and an untrusted chain are two
findings.
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
from scanq.scanners.net.connect import ConnectFailed, Session, probing_context
from scanq.scanners.net.findings import Asset, Check, Finding, PluginReport, Severity
from scanq.scanners.net.plugin import TargetScanner, port_option, reject_unknown
from scanq.scanners.net.targets import ParsedTarget
from scanq.scanners.net.tlswire import Handshake, handshake
from scanq.scanners.net.trust import TrustStore, TrustVerdict
from scanq.scanners.settings import ScannerContext

PLUGIN = "tls"
DEFAULT_TLS_PORT = 443
EXPIRY_WARNING_DAYS = 30
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
    "Use a certificate from a public CA, signed with SHA-256 or better, and serve the full intermediate chain.",
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


class TlsScanner(TargetScanner[TlsOptions]):
    """Checks the certificate and protocol versions of one TLS port."""

    name = PLUGIN

    def parse_options(self, options: Mapping[str, Any]) -> TlsOptions:
        reject_unknown(options, {"port"}, plugin=PLUGIN)
        return TlsOptions(port=port_option(options, "port", DEFAULT_TLS_PORT))

    def __init__(self, context: ScannerContext) -> None:
        super().__init__(context)
        self._trust: TrustStore | None = None

    async def trust_store(self) -> TrustStore:
        """The trust anchors, read once per scanner (the system store takes tens of ms to parse)."""
        if self._trust is None:
            self._trust = await asyncio.to_thread(TrustStore.load, self.settings.ca_file)
        return self._trust

    async def check(self, *, target: ParsedTarget, session: Session | None, options: TlsOptions) -> PluginReport:
        assert session is not None
        port = options.port
        asset = Asset(host=session.host, ip=str(session.address), port=port)
        default = await _first_handshake(session, port)
        protocols, pinned = await _probe_versions(session, port)

        report = PluginReport()
        report.details = {
            "port": port,
            "negotiated": {"version": default.version, "cipher": default.cipher},
            "protocols": dict(protocols),
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
        chain, source = _sent_chain(default, pinned)
        if chain is None:
            report.details["trust"] = f"not verified: {source}"
            return report
        report.details["chain"] = {"sent": _subjects(chain), "read_from": source}
        try:
            verdict = (await self.trust_store()).verify(chain)
        except ValueError as exc:
            report.details["trust"] = f"not verified: {exc}"
            return report
        report.details["trust"] = verdict.reason
        report.findings.append(_trust_finding(verdict, asset))
        return report


async def _first_handshake(session: Session, port: int) -> Handshake:
    """The default handshake; raise ``ScannerError``/``TransientScanError`` when TLS cannot be had at all."""
    last: BaseException | None = None
    for permissive in (False, True):
        try:
            return await handshake(session, port, probing_context(permissive=permissive), read_chain=True)
        except ConnectFailed as exc:
            if exc.kind == "closed":
                raise ScannerError(f"no TLS service: {exc}") from None
            raise TransientScanError(f"no TLS service: {exc}") from None
        except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
            last = exc
    raise ScannerError(f"no TLS handshake on port {port}: {_why(last)}")


async def _probe_versions(session: Session, port: int) -> tuple[dict[str, str], dict[str, Handshake]]:
    """``accepted`` / ``refused`` / ``untested: <why>`` for each protocol version, and the accepted handshakes."""

    async def probe(version: ssl.TLSVersion) -> tuple[str, Handshake | None]:
        try:
            ctx = probing_context(version=version)
        except (ValueError, ssl.SSLError) as exc:
            return f"untested: the local TLS library cannot offer it ({exc})", None
        try:
            # The chain is read where it travels in clear: a fallback when the default one was unreadable.
            seen = await handshake(session, port, ctx, read_chain=version != ssl.TLSVersion.TLSv1_3)
        except ssl.SSLError as exc:
            if "NO_PROTOCOLS_AVAILABLE" in str(exc) or "no protocols available" in str(exc):
                return "untested: the local TLS library cannot offer it", None
            return "refused", None
        except (ConnectionError, TimeoutError):
            return "refused", None
        except ConnectFailed as exc:
            return f"untested: {exc}", None
        if seen.version != _version_name(version):
            return "refused", None
        return "accepted", seen

    names = list(PROBED_VERSIONS)
    outcomes = await asyncio.gather(*(probe(PROBED_VERSIONS[n]) for n in names))
    states = {name: state for name, (state, _) in zip(names, outcomes, strict=True)}
    accepted = {name: seen for name, (_, seen) in zip(names, outcomes, strict=True) if seen is not None}
    return states, accepted


def _sent_chain(default: Handshake, pinned: Mapping[str, Handshake]) -> tuple[tuple[bytes, ...] | None, str]:
    """The chain of the default handshake, else of a pinned one; with where it was read (or why it was not)."""
    if default.chain is not None:
        return default.chain, "default handshake"
    for name in ("TLSv1.2", "TLSv1.1", "TLSv1"):
        seen = pinned.get(name)
        if seen is not None and seen.chain is not None and seen.cert_der == default.cert_der:
            return seen.chain, f"{name} handshake"
    return None, f"the certificate chain could not be read ({default.chain_error})"


def _subjects(chain: tuple[bytes, ...]) -> list[str]:
    subjects = []
    for der in chain:
        try:
            subjects.append(read_certificate(der).subject)
        except ValueError:
            subjects.append("(unreadable certificate)")
    return subjects


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


def _trust_finding(verdict: TrustVerdict, asset: Asset) -> Finding:
    if verdict.is_trusted:
        return CERT_UNTRUSTED.finding(passed=True, asset=asset, expected="chain to a trusted CA", actual=verdict.reason)
    return CERT_UNTRUSTED.finding(
        passed=False,
        asset=asset,
        expected="chain to a trusted CA",
        actual=verdict.reason,
        title="Certificate is self-signed" if verdict.is_self_signed else None,
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
