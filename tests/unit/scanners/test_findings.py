"""The findings schema, fingerprints and the terminal table."""

from __future__ import annotations

import hashlib

from scanq.scanners.net.findings import (
    Asset,
    Check,
    ScanReport,
    Severity,
    fingerprint,
    format_findings_table,
    shorten,
)

CHECK = Check(
    check_id="tls.cert.expired",
    plugin="tls",
    severity=Severity.HIGH,
    title="Certificate has expired",
    remediation="Renew.",
)
ASSET = Asset(host="example.com", ip="93.184.215.14", port=443)


def test_finding_json_shape():
    finding = CHECK.finding(passed=False, asset=ASSET, expected="not expired", actual="expired 2024-01-01")
    assert finding.to_dict() == {
        "check_id": "tls.cert.expired",
        "plugin": "tls",
        "status": "fail",
        "severity": "high",
        "title": "Certificate has expired",
        "asset": {"host": "example.com", "ip": "93.184.215.14", "port": 443},
        "evidence": {"expected": "not expired", "actual": "expired 2024-01-01"},
        "remediation": "Renew.",
        "fingerprint": finding.fingerprint,
    }


def test_fingerprint_is_stable_and_names_check_and_asset():
    same = fingerprint(check_id="tls.cert.expired", asset=ASSET)
    assert same == fingerprint(
        check_id="tls.cert.expired", asset=Asset(host="example.com", ip="93.184.215.14", port=443)
    )
    assert len(same) == 32 and int(same, 16) >= 0
    # The address that answered does not change the asset; the port and the check do.
    assert same == fingerprint(
        check_id="tls.cert.expired", asset=Asset(host="example.com", ip="93.184.215.15", port=443)
    )
    assert same != fingerprint(check_id="tls.cert.expired", asset=Asset(host="example.com", port=8443))
    assert same != fingerprint(check_id="tls.cert.untrusted", asset=ASSET)
    assert same != fingerprint(check_id="tls.cert.expired", asset=Asset(host="www.example.com", port=443))


def test_fingerprint_is_pinned():
    """A change here breaks deduplication across scans: bump FINGERPRINT_VERSION deliberately instead."""
    assert fingerprint(check_id="x", asset=Asset(host="h", port=1)) == fingerprint(
        check_id="x", asset=Asset(host="h", port=1)
    )
    assert fingerprint(check_id="x", asset=Asset(host="h", port=1)) == hashlib.sha256(b"1|x|h|1").hexdigest()[:32]


def test_evidence_is_shortened_to_one_printable_line():
    assert shorten("a\nb\tc   d") == "a b c d"
    long = shorten("x" * 500)
    assert len(long) == 200 and long.endswith("…")


def test_report_sorts_failures_first_and_summarises():
    findings = (
        CHECK.finding(passed=True, asset=ASSET, expected="e", actual="a"),
        CHECK.finding(passed=False, asset=ASSET, expected="e", actual="a", severity=Severity.LOW),
        CHECK.finding(passed=False, asset=ASSET, expected="e", actual="a", severity=Severity.CRITICAL),
    )
    result = ScanReport(
        scanner="tls", target="example.com", addresses=("93.184.215.14",), plugins={"tls": "ok"}, findings=findings
    ).to_dict()
    assert [(f["status"], f["severity"]) for f in result["findings"]] == [
        ("fail", "critical"),
        ("fail", "low"),
        ("pass", "high"),
    ]
    assert result["summary"] == {"pass": 1, "fail": 2, "fail_by_severity": {"low": 1, "critical": 1}}
    assert result["schema_version"] == 1


def test_table_is_readable():
    findings = (CHECK.finding(passed=False, asset=ASSET, expected="e", actual="expired 2024-01-01"),)
    result = ScanReport(
        scanner="tls",
        target="example.com",
        addresses=(),
        plugins={"tls": "ok", "dns": "error: timed out"},
        findings=findings,
    ).to_dict()
    lines = format_findings_table(result).splitlines()
    assert lines[0].split() == ["STATUS", "SEVERITY", "CHECK", "ASSET", "ACTUAL"]
    assert lines[2].split()[:4] == ["FAIL", "high", "tls.cert.expired", "example.com:443"]
    assert "plugins: dns=error: timed out, tls=ok" in lines
    assert "checks: 0 passed, 1 failed (1 high)" in lines


def test_table_of_a_result_without_findings():
    assert format_findings_table({"scanner": "mock", "slept_s": 1.0}) == "(this result has no findings)"
