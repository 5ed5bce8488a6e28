"""The ``http`` scanner: HTTPS offered and enforced, security headers, cookie flags, version banners.

Two fetches, each following checked redirects (``redirects.py``): one over
HTTPS (``https_port``, default 443) and one over plain HTTP (``http_port``,
default 80). The headers are judged on the final HTTPS answer, or on the final
HTTP answer when there is no HTTPS. Cookies are judged on every response seen,
and reported by name only: their values never leave the scanner.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from scanq.exceptions import ScannerError, ValidationError
from scanq.scanners.net import csp
from scanq.scanners.net.connect import Session
from scanq.scanners.net.cookies import Cookie, CookieKind, parse_set_cookie
from scanq.scanners.net.findings import Asset, Check, Finding, PluginReport, Severity
from scanq.scanners.net.plugin import TargetScanner, port_option, reject_unknown
from scanq.scanners.net.redirects import Chain, Hop, fetch
from scanq.scanners.net.targets import ParsedTarget

PLUGIN = "http"
DEFAULT_HTTP_PORT = 80
DEFAULT_HTTPS_PORT = 443
HSTS_MIN_MAX_AGE_S = 15_552_000  # 180 days
MAX_PATH_CHARS = 1024
_VERSION_IN_BANNER = re.compile(r"\d+\.\d+|/\s*\d")
_MAX_AGE = re.compile(r"max-age\s*=\s*(\d+|\"\d+\")", re.IGNORECASE)


def _check(check_id: str, severity: Severity, title: str, remediation: str) -> Check:
    return Check(check_id=check_id, plugin=PLUGIN, severity=severity, title=title, remediation=remediation)


HTTPS_OFFERED = _check(
    "http.https.offered", Severity.HIGH, "HTTPS is not offered", "Serve the site over HTTPS (TLS) on port 443."
)
HTTPS_REDIRECT = _check(
    "http.https.redirect",
    Severity.MEDIUM,
    "Plain HTTP does not redirect to HTTPS",
    "Answer every plain-HTTP request with a 301/308 redirect to the https:// URL.",
)
HSTS = _check(
    "http.header.hsts",
    Severity.MEDIUM,
    "Strict-Transport-Security missing or short",
    f"Send 'Strict-Transport-Security: max-age={31_536_000}; includeSubDomains' on HTTPS responses.",
)
CSP = _check(
    "http.header.csp",
    Severity.LOW,
    "Content-Security-Policy missing or does not restrict scripts",
    "Send a Content-Security-Policy whose script-src (or default-src) and object-src allow neither "
    "'unsafe-inline', 'unsafe-eval', data: nor any host (*, https:); use nonces or hashes for inline scripts.",
)
FRAME_OPTIONS = _check(
    "http.header.frame_options",
    Severity.LOW,
    "Page can be framed by any site (clickjacking)",
    "Send 'X-Frame-Options: DENY' (or SAMEORIGIN) or a CSP 'frame-ancestors' directive (not ALLOW-FROM: "
    "browsers ignore it).",
)
CONTENT_TYPE_OPTIONS = _check(
    "http.header.content_type_options",
    Severity.LOW,
    "X-Content-Type-Options: nosniff missing",
    "Send 'X-Content-Type-Options: nosniff'.",
)
COOKIE_SECURE = _check(
    "http.cookie.secure",
    Severity.MEDIUM,
    "Cookies without the Secure flag",
    "Set the Secure attribute on every cookie.",
)
COOKIE_HTTPONLY = _check(
    "http.cookie.httponly",
    Severity.LOW,
    "Session cookies without the HttpOnly flag",
    "Set HttpOnly on session cookies (and on every cookie scripts do not need).",
)
COOKIE_SAMESITE = _check(
    "http.cookie.samesite",
    Severity.LOW,
    "Session or anti-CSRF cookies without a valid SameSite attribute",
    "Set SameSite=Lax (or Strict) on session and anti-CSRF cookies; SameSite=None needs Secure.",
)
VERSION_BANNER = _check(
    "http.server.version_banner",
    Severity.LOW,
    "Server banner reveals a software version",
    "Remove version numbers from Server and X-Powered-By headers.",
)
CHECKS = (
    HTTPS_OFFERED,
    HTTPS_REDIRECT,
    HSTS,
    CSP,
    FRAME_OPTIONS,
    CONTENT_TYPE_OPTIONS,
    COOKIE_SECURE,
    COOKIE_HTTPONLY,
    COOKIE_SAMESITE,
    VERSION_BANNER,
)


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpOptions:
    """``http_port`` / ``https_port`` (default 80 / 443; a URL target's port wins for its scheme), ``path``."""

    http_port: int = DEFAULT_HTTP_PORT
    https_port: int = DEFAULT_HTTPS_PORT
    path: str | None = None


class HttpScanner(TargetScanner[HttpOptions]):
    """Checks how a web site uses HTTPS, security headers and cookies."""

    name = PLUGIN
    allow_url = True

    def parse_options(self, options: Mapping[str, Any]) -> HttpOptions:
        reject_unknown(options, {"http_port", "https_port", "path"}, plugin=PLUGIN)
        path = options.get("path")
        if path is not None and (
            not isinstance(path, str)
            or not path.startswith("/")
            or len(path) > MAX_PATH_CHARS
            or not path.isprintable()
        ):
            raise ValidationError(f"option 'path' must be a printable path starting with / (max {MAX_PATH_CHARS})")
        if isinstance(path, str) and any(ch.isspace() for ch in path):
            raise ValidationError("option 'path' must not contain whitespace")
        return HttpOptions(
            http_port=port_option(options, "http_port", DEFAULT_HTTP_PORT),
            https_port=port_option(options, "https_port", DEFAULT_HTTPS_PORT),
            path=path,
        )

    async def check(self, *, target: ParsedTarget, session: Session | None, options: HttpOptions) -> PluginReport:
        assert session is not None
        http_port, https_port = options.http_port, options.https_port
        if target.port is not None:
            if target.scheme == "https":
                https_port = target.port
            else:
                http_port = target.port
        if options.path is not None:
            target = replace(target, path=options.path)
        secure, plain = await asyncio.gather(
            fetch(session, target=target, scheme="https", port=https_port, settings=self.settings, policy=self.policy),
            fetch(session, target=target, scheme="http", port=http_port, settings=self.settings, policy=self.policy),
        )
        report = PluginReport(details={"https": secure.describe(), "http": plain.describe()})
        https_asset = Asset(host=session.host, ip=str(session.address), port=https_port)
        http_asset = Asset(host=session.host, ip=str(session.address), port=http_port)
        report.findings.append(
            HTTPS_OFFERED.finding(
                passed=bool(secure.hops),
                asset=https_asset,
                expected="an HTTP response over TLS",
                actual=f"HTTP {secure.hops[0].response.status} over TLS" if secure.hops else str(secure.stopped),
            )
        )
        redirect = _redirect_finding(plain, http_asset)
        if redirect is not None:
            report.findings.append(redirect)
        page = secure.final or plain.final
        if page is None:
            raise ScannerError(f"no HTTP answer from {target.host}: {secure.stopped}; {plain.stopped}")
        report.details["judged"] = page.url
        report.findings += header_findings(page)
        report.findings += cookie_findings(secure.hops + plain.hops, _asset(page))
        report.findings.append(banner_finding(secure.hops + plain.hops, _asset(page)))
        return report


def _asset(hop: Hop) -> Asset:
    return Asset(host=hop.session.host, ip=str(hop.session.address), port=hop.port)


def _redirect_finding(plain: Chain, asset: Asset) -> Finding | None:
    """The Observatory's ``redirection`` rules on the plain-HTTP chain (docs/scanners.md)."""
    expected = "a redirect to https:// on the same host first"
    if plain.closed:
        return HTTPS_REDIRECT.finding(passed=True, asset=asset, expected=expected, actual="plain HTTP not served")
    if not plain.hops:
        return None  # plain HTTP failed in a way that says nothing (timeout, garbage): see details
    first, last = plain.hops[0], plain.hops[-1]
    if not last.is_https:  # never reached HTTPS: served in plain text, or the chain stopped (refused, loop)
        actual = plain.stopped or f"HTTP {last.response.status} at {last.url}"
        return HTTPS_REDIRECT.finding(passed=False, asset=asset, expected=expected, actual=actual)
    second = plain.hops[1]  # the first is plain http, so there is a second
    # It ends on HTTPS, but a first hop to plain http, or to another host, leaves the first
    # request's host without HSTS: every later visit starts in plain text again.
    if not second.is_https:
        actual = f"first redirect goes to plain {second.url}, HTTPS only later"
        return HTTPS_REDIRECT.finding(
            passed=False, asset=asset, expected=expected, actual=actual, severity=Severity.LOW
        )
    if urlsplit(first.url).hostname != urlsplit(second.url).hostname:
        actual = f"first redirect leaves the host: {first.url} -> {second.url}"
        return HTTPS_REDIRECT.finding(
            passed=False, asset=asset, expected=expected, actual=actual, severity=Severity.LOW
        )
    return HTTPS_REDIRECT.finding(passed=True, asset=asset, expected=expected, actual=f"ends at {last.url}")


def hsts_max_age(header: str | None) -> int | None:
    """The ``max-age`` of a Strict-Transport-Security value, or None when it is missing or malformed.

    Malformed, as browsers (RFC 6797 section 6.1) and the Observatory see it: a value carrying
    a comma (the header was set twice and joined), or ``max-age`` missing or given twice.
    """
    if header is None or "," in header:
        return None
    ages = [_MAX_AGE.fullmatch(d.strip()) for d in header.split(";") if d.strip().lower().startswith("max-age")]
    if len(ages) != 1 or ages[0] is None:
        return None
    return int(ages[0].group(1).strip('"'))


def header_findings(page: Hop) -> list[Finding]:
    """The security-header checks on the page judged."""
    asset, headers = _asset(page), page.response
    hsts = headers.header("strict-transport-security")
    age = hsts_max_age(hsts)
    if not page.is_https:
        hsts_actual = "no HTTPS page to send it on"
    elif hsts is None:
        hsts_actual = "missing"
    else:
        hsts_actual = f"max-age={age}" if age is not None else f"invalid: {hsts}"
    policies = headers.header_list("content-security-policy")
    verdict = csp.judge(
        policies,
        report_only=headers.header("content-security-policy-report-only") is not None,
        https=page.is_https,
    )
    return [
        HSTS.finding(
            passed=page.is_https and age is not None and age >= HSTS_MIN_MAX_AGE_S,
            asset=asset,
            expected=f"max-age >= {HSTS_MIN_MAX_AGE_S}",
            actual=hsts_actual,
        ),
        CSP.finding(
            passed=verdict.passed,
            asset=asset,
            expected="a policy that restricts scripts (Observatory rules)",
            actual=verdict.reason,
        ),
        frame_finding(headers.header("x-frame-options"), policies, asset),
        content_type_finding(headers.header("x-content-type-options"), asset),
    ]


def frame_finding(xfo_header: str | None, policies: list[str], asset: Asset) -> Finding:
    """Clickjacking: CSP ``frame-ancestors`` (not a broad one) or X-Frame-Options DENY/SAMEORIGIN.

    ``ALLOW-FROM`` fails, unlike in the Observatory: browsers ignore the whole header when they
    see it (MDN, X-Frame-Options), so the page can be framed by anyone.
    """
    expected = "CSP frame-ancestors, or X-Frame-Options DENY/SAMEORIGIN"
    ancestors = csp.frame_ancestors(policies)
    if ancestors is not None:
        broad = ancestors & csp.DANGEROUSLY_BROAD
        actual = f"CSP frame-ancestors {' '.join(sorted(ancestors))}"
        return FRAME_OPTIONS.finding(passed=not broad, asset=asset, expected=expected, actual=actual)
    xfo = (xfo_header or "").strip()
    if xfo.upper() in ("DENY", "SAMEORIGIN"):
        return FRAME_OPTIONS.finding(passed=True, asset=asset, expected=expected, actual=f"X-Frame-Options: {xfo}")
    if xfo.upper().startswith("ALLOW-FROM"):
        actual = f"X-Frame-Options: {xfo} (obsolete: browsers ignore it)"
    else:
        actual = f"X-Frame-Options: {xfo} (invalid)" if xfo else "missing"
    return FRAME_OPTIONS.finding(passed=False, asset=asset, expected=expected, actual=actual)


def content_type_finding(value: str | None, asset: Asset) -> Finding:
    """``X-Content-Type-Options: nosniff``, exactly (case-insensitive), as the Observatory requires."""
    nosniff = (value or "").strip().lower()
    return CONTENT_TYPE_OPTIONS.finding(
        passed=nosniff == "nosniff", asset=asset, expected="nosniff", actual=nosniff or "missing"
    )


def cookie_findings(hops: list[Hop], asset: Asset) -> list[Finding]:
    """Secure on every cookie, HttpOnly on session cookies, SameSite on session and anti-CSRF cookies.

    The Observatory's ``cookies`` rules, but for SameSite, which it asks of anti-CSRF cookies only:
    a session cookie without it goes with cross-site requests in Firefox and Safari.
    """
    cookies: dict[str, Cookie] = {}
    for hop in hops:
        for header in hop.response.header_list("set-cookie"):
            cookie = parse_set_cookie(header)
            if cookie is not None:
                cookies[cookie.name] = cookie
    if not cookies:
        return [
            check.finding(passed=True, asset=asset, expected=expected, actual="no cookies set")
            for check, expected in _COOKIE_EXPECTED.items()
        ]
    sessions = [c for c in cookies.values() if c.kind == CookieKind.SESSION]
    no_secure = sorted(c.name for c in cookies.values() if not c.secure)
    no_httponly = sorted(c.name for c in sessions if not c.httponly)
    samesite: dict[str, list[str]] = {}
    for c in sorted(cookies.values(), key=lambda c: c.name):
        problem = c.samesite_problem
        # Missing matters on session and anti-CSRF cookies; an unusable value on any cookie.
        if problem is not None and (problem != "missing" or c.kind != CookieKind.OTHER):
            samesite.setdefault(problem, []).append(c.name)
    total = f"{len(cookies)} cookie(s)"
    return [
        COOKIE_SECURE.finding(
            passed=not no_secure,
            asset=asset,
            expected=_COOKIE_EXPECTED[COOKIE_SECURE],
            actual="missing on: " + ", ".join(no_secure) if no_secure else f"set on all {total}",
        ),
        COOKIE_HTTPONLY.finding(
            passed=not no_httponly,
            asset=asset,
            expected=_COOKIE_EXPECTED[COOKIE_HTTPONLY],
            actual="missing on: " + ", ".join(no_httponly)
            if no_httponly
            else f"set on all {len(sessions)} session cookie(s) of {total}",
        ),
        COOKIE_SAMESITE.finding(
            passed=not samesite,
            asset=asset,
            expected=_COOKIE_EXPECTED[COOKIE_SAMESITE],
            actual="; ".join(f"{problem} on: {', '.join(names)}" for problem, names in samesite.items())
            if samesite
            else f"valid where needed, {total}",
        ),
    ]


_COOKIE_EXPECTED = {
    COOKIE_SECURE: "Secure on every cookie",
    COOKIE_HTTPONLY: "HttpOnly on session cookies",
    COOKIE_SAMESITE: "SameSite on session and anti-CSRF cookies (None only with Secure)",
}


def banner_finding(hops: list[Hop], asset: Asset) -> Finding:
    """Fails when a Server or X-Powered-By header carries a version number."""
    revealing = []
    for hop in hops:
        for header in ("server", "x-powered-by"):
            value = hop.response.header(header)
            if value and _VERSION_IN_BANNER.search(value):
                revealing.append(f"{header}: {value}")
    unique = list(dict.fromkeys(revealing))
    return VERSION_BANNER.finding(
        passed=not unique,
        asset=asset,
        expected="no version in Server / X-Powered-By",
        actual="; ".join(unique) if unique else "no version shown",
    )
