"""The tls scanner against local TLS servers with certificates made at test time."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import hashes

from scanq.exceptions import ScannerError
from scanq.scanners.net.tls import TlsScanner
from tests.integration.scanners.servers import CertFiles, HttpReply, a, closed_port, server_context, write_self_signed

HOST = "www.shop.test"
SCAN_ID = "0190c0de-0000-7000-8000-000000000001"


def leaf_files(cert: trustme.LeafCert, directory: Path) -> CertFiles:
    chain, key = directory / "leaf.pem", directory / "leaf.key"
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    return CertFiles(chain=chain, key=key)


@pytest.fixture
async def scan(make_context, dns_server, servers):
    """``await scan(cert_files, target=HOST, **server_kwargs)`` -> (result, findings by check_id)."""
    _, nameserver = await dns_server([(HOST, "A", a("127.0.0.1"))])

    async def run(cert: CertFiles, *, target: str = HOST, **server: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        port = await servers.http(HttpReply(), tls=server_context(cert, **server))
        scanner = TlsScanner(make_context(nameservers=(nameserver,)))
        result = dict(await scanner.run(scan_id=SCAN_ID, target=target, options={"port": port}))
        return result, {f["check_id"]: f for f in result["findings"]}

    return run


def status(findings: dict[str, Any], check_id: str) -> str:
    return str(findings[check_id]["status"])


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def test_valid_certificate_passes_every_check(scan, ca, tmp_path):
    result, findings = await scan(leaf_files(ca.issue_cert(HOST, key_type=trustme.KeyType.RSA), tmp_path))
    assert result["plugins"] == {"tls": "ok"}
    assert result["addresses"] == ["127.0.0.1"]
    failed = [f["check_id"] for f in result["findings"] if f["status"] == "fail"]
    assert failed == []
    assert set(findings) >= {
        "tls.cert.expired",
        "tls.cert.not_yet_valid",
        "tls.cert.expiring_soon",
        "tls.cert.hostname_mismatch",
        "tls.cert.untrusted",
        "tls.cert.weak_key",
        "tls.cert.weak_signature",
        "tls.protocol.tls10_enabled",
        "tls.protocol.tls11_enabled",
        "tls.protocol.negotiated",
    }
    assert findings["tls.protocol.negotiated"]["evidence"]["actual"].startswith("TLSv1.3")
    assert findings["tls.cert.weak_key"]["evidence"]["actual"] == "RSA 2048 bits"
    assert result["details"]["tls"]["protocols"]["TLSv1.3"] == "accepted"
    assert findings["tls.cert.expired"]["asset"] == {
        "host": HOST,
        "ip": "127.0.0.1",
        "port": result["details"]["tls"]["port"],
    }


async def test_expired_certificate_fails_expiry_but_not_trust(scan, ca, tmp_path):
    cert = ca.issue_cert(HOST, not_before=now() - dt.timedelta(days=90), not_after=now() - dt.timedelta(days=1))
    _, findings = await scan(leaf_files(cert, tmp_path))
    assert status(findings, "tls.cert.expired") == "fail"
    assert findings["tls.cert.expired"]["severity"] == "high"
    assert status(findings, "tls.cert.untrusted") == "pass"
    assert status(findings, "tls.cert.hostname_mismatch") == "pass"


async def test_certificate_expiring_within_30_days(scan, ca, tmp_path):
    cert = ca.issue_cert(HOST, not_before=now() - dt.timedelta(days=60), not_after=now() + dt.timedelta(days=10))
    _, findings = await scan(leaf_files(cert, tmp_path))
    assert status(findings, "tls.cert.expiring_soon") == "fail"
    assert "days left" in findings["tls.cert.expiring_soon"]["evidence"]["actual"]
    assert status(findings, "tls.cert.expired") == "pass"


async def test_certificate_not_yet_valid(scan, ca, tmp_path):
    cert = ca.issue_cert(HOST, not_before=now() + dt.timedelta(days=5), not_after=now() + dt.timedelta(days=400))
    _, findings = await scan(leaf_files(cert, tmp_path))
    assert status(findings, "tls.cert.not_yet_valid") == "fail"
    assert status(findings, "tls.cert.untrusted") == "pass"


async def test_self_signed_certificate_is_untrusted(scan, tmp_path):
    _, findings = await scan(write_self_signed(tmp_path, name="selfsigned", names=[HOST]))
    finding = findings["tls.cert.untrusted"]
    assert finding["status"] == "fail"
    assert finding["title"] == "Certificate is self-signed"
    assert "self-signed" in finding["evidence"]["actual"]
    assert status(findings, "tls.cert.hostname_mismatch") == "pass"


async def test_wrong_host_certificate_is_a_mismatch(scan, ca, tmp_path):
    _, findings = await scan(leaf_files(ca.issue_cert("other.example"), tmp_path))
    assert status(findings, "tls.cert.hostname_mismatch") == "fail"
    assert findings["tls.cert.hostname_mismatch"]["evidence"]["actual"] == "other.example"
    assert status(findings, "tls.cert.untrusted") == "pass"


async def test_ip_target_is_matched_against_ip_san(scan, ca, tmp_path):
    result, findings = await scan(leaf_files(ca.issue_cert("127.0.0.1"), tmp_path), target="127.0.0.1")
    assert result["target"] == "127.0.0.1"
    assert status(findings, "tls.cert.hostname_mismatch") == "pass"


async def test_small_rsa_key_and_sha1_signature(scan, tmp_path):
    cert = write_self_signed(tmp_path, name="weak", names=[HOST], rsa_bits=1024, hash_algorithm=hashes.SHA1())
    _, findings = await scan(cert, permissive=True)
    assert status(findings, "tls.cert.weak_key") == "fail"
    assert findings["tls.cert.weak_key"]["evidence"]["actual"] == "RSA 1024 bits"
    assert status(findings, "tls.cert.weak_signature") == "fail"
    assert findings["tls.cert.weak_signature"]["evidence"]["actual"] == "sha1"


async def test_tls10_only_server(scan, ca, tmp_path):
    # This machine's OpenSSL can still speak TLS 1.0 at security level 0 on both ends.
    result, findings = await scan(leaf_files(ca.issue_cert(HOST), tmp_path), version=ssl.TLSVersion.TLSv1)
    assert result["details"]["tls"]["protocols"]["TLSv1"] == "accepted"
    assert status(findings, "tls.protocol.tls10_enabled") == "fail"
    assert status(findings, "tls.protocol.tls11_enabled") == "pass"
    negotiated = findings["tls.protocol.negotiated"]
    assert negotiated["status"] == "fail"
    assert negotiated["severity"] == "medium"
    assert negotiated["evidence"]["actual"].startswith("TLSv1 ")


async def test_tls11_accepted_is_reported(scan, ca, tmp_path):
    _, findings = await scan(leaf_files(ca.issue_cert(HOST), tmp_path), version=ssl.TLSVersion.TLSv1_1)
    assert status(findings, "tls.protocol.tls11_enabled") == "fail"
    assert status(findings, "tls.protocol.tls10_enabled") == "pass"


async def test_closed_port_is_a_permanent_error(make_context):
    scanner = TlsScanner(make_context())
    with pytest.raises(ScannerError, match="refused"):
        await scanner.run(scan_id=SCAN_ID, target="127.0.0.1", options={"port": closed_port()})


async def test_fingerprints_are_stable_across_scans(make_context, dns_server, servers, ca, tmp_path):
    _, nameserver = await dns_server([(HOST, "A", a("127.0.0.1"))])
    port = await servers.http(HttpReply(), tls=server_context(leaf_files(ca.issue_cert(HOST), tmp_path)))
    scanner = TlsScanner(make_context(nameservers=(nameserver,)))
    runs = [await scanner.run(scan_id=SCAN_ID, target=HOST, options={"port": port}) for _ in range(2)]
    first, second = ({f["check_id"]: f["fingerprint"] for f in run["findings"]} for run in runs)
    assert first == second
    assert len(set(first.values())) == len(first)  # one per check on this asset
