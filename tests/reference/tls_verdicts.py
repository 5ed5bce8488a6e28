"""One comparable verdict for a TLS server, from sslyze (the reference) and from scanq's ``tls`` result.

A verdict holds what both tools can say about a server: which protocol
versions it accepts, the chain it sent (subjects, leaf first), why the chain
is not trusted by a browser (a set of categories, empty when trusted), and
whether the leaf has a weak key or a SHA-1/MD5 signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
# Why a chain fails, as both tools can name it.
HOSTNAME, DATES, SIGNATURE, NO_PATH, PROFILE_LINT = "hostname", "dates", "signature", "no-path", "profile-lint"
SUPPLIED_CA_STORE = "Supplied CA file"


@dataclass(frozen=True)
class Verdict:
    """What one tool concluded about one server."""

    accepted: frozenset[str]
    chain: tuple[str, ...]
    failures: frozenset[str]
    weak_key: bool
    weak_signature: bool


def sslyze_verdict(host: str, port: int, ca_file: Path) -> Verdict:
    """Scan ``host`` at 127.0.0.1:``port`` with sslyze (blocking: run it in a thread)."""
    from sslyze.plugins.certificate_info.implementation import CertificateInfoExtraArgument
    from sslyze.plugins.scan_commands import ScanCommand
    from sslyze.scanner.models import ScanCommandsExtraArguments, ServerScanRequest, ServerScanStatusEnum
    from sslyze.scanner.scan_command_attempt import ScanCommandAttemptStatusEnum
    from sslyze.scanner.scanner import Scanner
    from sslyze.server_setting import ServerNetworkLocation

    request = ServerScanRequest(
        server_location=ServerNetworkLocation(host, port, ip_address="127.0.0.1"),
        scan_commands={
            ScanCommand.CERTIFICATE_INFO,
            ScanCommand.TLS_1_0_CIPHER_SUITES,
            ScanCommand.TLS_1_1_CIPHER_SUITES,
            ScanCommand.TLS_1_2_CIPHER_SUITES,
            ScanCommand.TLS_1_3_CIPHER_SUITES,
        },
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca_file)
        ),
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    (result,) = list(scanner.get_results())
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    scan = result.scan_result
    assert scan is not None
    attempts = {
        "TLSv1": scan.tls_1_0_cipher_suites,
        "TLSv1.1": scan.tls_1_1_cipher_suites,
        "TLSv1.2": scan.tls_1_2_cipher_suites,
        "TLSv1.3": scan.tls_1_3_cipher_suites,
    }
    accepted = set()
    for name, attempt in attempts.items():
        assert attempt.status == ScanCommandAttemptStatusEnum.COMPLETED, attempt.error_trace
        assert attempt.result is not None
        if attempt.result.accepted_cipher_suites:
            accepted.add(name)
    info = scan.certificate_info
    assert info.status == ScanCommandAttemptStatusEnum.COMPLETED, info.error_trace
    assert info.result is not None
    deployment = info.result.certificate_deployments[0]
    (supplied,) = [r for r in deployment.path_validation_results if r.trust_store.name == SUPPLIED_CA_STORE]
    leaf = deployment.received_certificate_chain[0]
    return Verdict(
        accepted=frozenset(accepted),
        chain=tuple(c.subject.rfc4514_string() for c in deployment.received_certificate_chain),
        failures=frozenset() if supplied.was_validation_successful else frozenset({_sslyze_failure(supplied)}),
        weak_key=_is_weak_key(leaf),
        weak_signature=_is_weak_signature(leaf),
    )


def _sslyze_failure(result: Any) -> str:
    """sslyze 6 validates with cryptography's CA/B Forum profile and reports the first error it met."""
    error = str(result.validation_error)
    for needle, category in (
        ("no matching subjectAltName", HOSTNAME),
        ("not valid at validation time", DATES),
        ("Forbidden signature algorithm", SIGNATURE),
        ("no interior errors", NO_PATH),
        ("incorrect criticality", PROFILE_LINT),
        ("MUST NOT be critical", PROFILE_LINT),
    ):
        if needle in error:
            return category
    return f"other: {error}"


def _is_weak_key(cert: x509.Certificate) -> bool:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return key.key_size < 2048
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.curve.key_size < 224
    return True


def _is_weak_signature(cert: x509.Certificate) -> bool:
    algorithm = cert.signature_hash_algorithm
    return algorithm is None or algorithm.name in ("sha1", "md5")


def scanq_verdict(result: dict[str, Any]) -> Verdict:
    """The same verdict read from a ``tls`` scan result (its findings and details)."""
    findings = {f["check_id"]: f for f in result["findings"]}
    details = result["details"]["tls"]

    def failed(check_id: str) -> bool:
        return bool(findings[check_id]["status"] == "fail")

    failures = set()
    if failed("tls.cert.hostname_mismatch"):
        failures.add(HOSTNAME)
    if failed("tls.cert.expired") or failed("tls.cert.not_yet_valid"):
        failures.add(DATES)
    if failed("tls.cert.untrusted"):
        signed_weakly = "browsers refuse" in findings["tls.cert.untrusted"]["evidence"]["actual"]
        failures.add(SIGNATURE if signed_weakly else NO_PATH)
    return Verdict(
        accepted=frozenset(v for v in VERSIONS if details["protocols"][v] == "accepted"),
        chain=tuple(details["chain"]["sent"]),
        failures=frozenset(failures),
        weak_key=failed("tls.cert.weak_key"),
        weak_signature=failed("tls.cert.weak_signature"),
    )
