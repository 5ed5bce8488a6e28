"""Scoring and grading (scoring version 1)."""

from __future__ import annotations

import pytest

from scanq.scanners.net.findings import Asset, Check, Severity
from scanq.scanners.net.surface import SCORING_VERSION, grade, score_findings

ASSET = Asset(host="example.com", port=443)


def failing(*severities: Severity):
    check = Check(check_id="x.y", plugin="x", severity=Severity.LOW, title="t", remediation="r")
    return [check.finding(passed=False, asset=ASSET, expected="e", actual="a", severity=s) for s in severities]


def test_scoring_version_is_pinned():
    assert SCORING_VERSION == 1


@pytest.mark.parametrize(
    ("severities", "score", "grade"),
    [
        ((), 100, "A"),
        ((Severity.INFO,) * 5, 100, "A"),
        ((Severity.LOW, Severity.LOW, Severity.LOW), 91, "A"),
        ((Severity.MEDIUM, Severity.LOW), 89, "B"),
        ((Severity.HIGH, Severity.LOW), 77, "B"),
        ((Severity.HIGH, Severity.MEDIUM), 72, "C"),
        ((Severity.HIGH, Severity.HIGH), 60, "C"),
        ((Severity.HIGH, Severity.HIGH, Severity.MEDIUM), 52, "D"),
        ((Severity.CRITICAL,), 60, "D"),  # 60 would be C: a critical failure caps the grade at D
        ((Severity.CRITICAL, Severity.HIGH), 40, "D"),
        ((Severity.CRITICAL, Severity.CRITICAL, Severity.HIGH), 0, "F"),
        ((Severity.CRITICAL,) * 5, 0, "F"),
    ],
)
def test_score_and_grade(severities, score, grade):
    assert score_findings(failing(*severities)) == (score, grade)


def test_passing_findings_do_not_count():
    check = Check(check_id="x.y", plugin="x", severity=Severity.CRITICAL, title="t", remediation="r")
    assert score_findings([check.finding(passed=True, asset=ASSET, expected="e", actual="a")]) == (100, "A")


def test_a_scan_with_a_plugin_that_could_not_run_is_not_graded():
    findings = tuple(failing(Severity.LOW))
    assert grade(findings, not_run=[]) == {
        "score": 97,
        "grade": "A",
        "scoring_version": SCORING_VERSION,
        "score_complete": True,
    }
    assert grade(findings, not_run=["tls", "http"]) == {
        "scoring_version": SCORING_VERSION,
        "score_complete": False,
        "not_graded": ["tls", "http"],
    }
