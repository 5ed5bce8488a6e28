"""Content-Security-Policy judged by the MDN HTTP Observatory's rules (net/csp.py)."""

from __future__ import annotations

import pytest

from scanq.scanners.net.csp import CspInvalid, frame_ancestors, judge, parse_policies


@pytest.mark.parametrize(
    ("policy", "passed"),
    [
        ("default-src 'self'", True),
        ("default-src 'none'", True),
        ("default-src 'self'; script-src 'self' 'unsafe-inline'", False),
        ("default-src 'self'; script-src 'sha256-abc=' 'unsafe-inline'", True),  # a hash voids 'unsafe-inline'
        ("default-src 'self'; script-src 'self' 'unsafe-eval'", False),
        ("default-src 'self'; style-src 'self' 'unsafe-eval'", False),
        ("default-src 'self'; style-src 'self' 'unsafe-inline'", True),
        ("script-src 'self'", False),  # object-src falls back to '*'
        ("script-src 'self'; object-src 'none'", True),
        ("default-src 'self'; object-src *", False),
        ("default-src *", False),
        ("default-src 'self'; img-src http:", True),
        ("default-src 'self'; connect-src http://api.example.com", False),
    ],
)
def test_policies_on_an_https_page(policy, passed):
    assert judge([policy], report_only=False, https=True).passed is passed


def test_http_sources_are_no_downgrade_on_a_plain_page():
    assert judge(["default-src 'self'; connect-src http://api.example.com"], report_only=False, https=False).passed


def test_several_policies_are_all_enforced_so_the_strictest_counts():
    verdict = judge(["default-src *", "default-src 'self'"], report_only=False, https=True)
    assert verdict.passed


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([], "missing"),
        (["default-src 'self'; default-src 'none'"], "invalid: directive default-src is repeated"),
        (["script-src 'strict-dynamic'; object-src 'none'"], "invalid: 'strict-dynamic' without a nonce or hash"),
        ([""], "invalid: policy '' is empty or too short"),
    ],
)
def test_failures_say_why(headers, reason):
    verdict = judge(headers, report_only=False, https=True)
    assert (verdict.passed, verdict.reason) == (False, reason)


def test_report_only_enforces_nothing():
    verdict = judge([], report_only=True, https=True)
    assert (verdict.passed, verdict.reason) == (False, "only Content-Security-Policy-Report-Only (enforces nothing)")


def test_repeated_report_directives_are_allowed_and_empty_source_lists_mean_none():
    [policy] = parse_policies(["report-uri /a; report-uri /b; img-src"])
    assert policy == {"report-uri": {"/a"}, "img-src": {"'none'"}}
    with pytest.raises(CspInvalid):
        parse_policies(["img-src 'self'; IMG-SRC 'none'"])


def test_frame_ancestors():
    assert frame_ancestors(["default-src 'self'"]) is None
    assert frame_ancestors(["frame-ancestors 'none'"]) == {"'none'"}
    assert frame_ancestors(["frame-ancestors *", "frame-ancestors 'self'"]) == {"'self'"}
    assert frame_ancestors(["frame-ancestors 'self'; frame-ancestors *"]) is None  # invalid policy
