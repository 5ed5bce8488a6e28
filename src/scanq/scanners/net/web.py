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

from scanq.exceptions import ScannerError, ValidationError
from scanq.scanners.net.connect import Session
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
_MAX_AGE = re.compile(r"max-age\s*=\s*\"?(\d+)", re.IGNORECASE)


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
    "Content-Security-Policy missing",
    "Send a Content-Security-Policy that restricts script sources.",
)
FRAME_OPTIONS = _check(
    "http.header.frame_options",
    Severity.LOW,
    "Page can be framed by any site (clickjacking)",
    "Send 'X-Frame-Options: DENY' (or SAMEORIGIN) or a CSP 'frame-ancestors' directive.",
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
    "Cookies without the HttpOnly flag",
    "Set HttpOnly on every cookie scripts do not need (session cookies above all).",
)
COOKIE_SAMESITE = _check(
    "http.cookie.samesite",
    Severity.LOW,
    "Cookies without a SameSite attribute",
    "Set SameSite=Lax (or Strict) on cookies.",
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
_COOKIE_CHECKS = ((COOKIE_SECURE, "secure"), (COOKIE_HTTPONLY, "httponly"), (COOKIE_SAMESITE, "samesite"))


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
    expected = "a redirect to https://"
    if plain.closed:
        return HTTPS_REDIRECT.finding(passed=True, asset=asset, expected=expected, actual="plain HTTP not served")
    if plain.hops and plain.hops[-1].is_https:
        return HTTPS_REDIRECT.finding(
            passed=True, asset=asset, expected=expected, actual=f"ends at {plain.hops[-1].url}"
        )
    if plain.stopped is not None and plain.hops:
        return HTTPS_REDIRECT.finding(passed=False, asset=asset, expected=expected, actual=plain.stopped)
    if plain.hops:
        last = plain.hops[-1]
        return HTTPS_REDIRECT.finding(
            passed=False, asset=asset, expected=expected, actual=f"HTTP {last.response.status} at {last.url}"
        )
    return None  # plain HTTP failed in a way that says nothing (timeout, garbage): see details


def header_findings(page: Hop) -> list[Finding]:
    """The security-header checks on the page judged."""
    asset, headers = _asset(page), page.response
    hsts = headers.header("strict-transport-security")
    max_age = _MAX_AGE.search(hsts or "")
    age = int(max_age.group(1)) if max_age else 0
    if not page.is_https:
        hsts_actual = "no HTTPS page to send it on"
    else:
        hsts_actual = f"max-age={age}" if hsts else "missing"
    csp = headers.header("content-security-policy")
    xfo = (headers.header("x-frame-options") or "").strip().upper()
    frame_ancestors = csp is not None and "frame-ancestors" in csp.lower()
    nosniff = (headers.header("x-content-type-options") or "").strip().lower()
    return [
        HSTS.finding(
            passed=page.is_https and age >= HSTS_MIN_MAX_AGE_S,
            asset=asset,
            expected=f"max-age >= {HSTS_MIN_MAX_AGE_S}",
            actual=hsts_actual,
        ),
        CSP.finding(passed=bool(csp), asset=asset, expected="a Content-Security-Policy", actual=csp or "missing"),
        FRAME_OPTIONS.finding(
            passed=xfo in ("DENY", "SAMEORIGIN") or frame_ancestors,
            asset=asset,
            expected="X-Frame-Options DENY/SAMEORIGIN or CSP frame-ancestors",
            actual="CSP frame-ancestors" if frame_ancestors else (f"X-Frame-Options: {xfo}" if xfo else "missing"),
        ),
        CONTENT_TYPE_OPTIONS.finding(
            passed=nosniff == "nosniff", asset=asset, expected="nosniff", actual=nosniff or "missing"
        ),
    ]


def cookie_attributes(set_cookie: str) -> tuple[str, set[str]]:
    """A Set-Cookie header's cookie name and its attribute names (lowercase); the value is dropped."""
    first, *attributes = set_cookie.split(";")
    name = first.split("=", 1)[0].strip()
    return name, {a.split("=", 1)[0].strip().lower() for a in attributes if a.strip()}


def cookie_findings(hops: list[Hop], asset: Asset) -> list[Finding]:
    """One finding per cookie flag, naming the cookies that lack it."""
    cookies: dict[str, set[str]] = {}
    for hop in hops:
        for header in hop.response.header_list("set-cookie"):
            name, attributes = cookie_attributes(header)
            if name:
                cookies[name] = attributes
    findings = []
    for check, flag in _COOKIE_CHECKS:
        lacking = sorted(name for name, attrs in cookies.items() if flag not in attrs)
        if not cookies:
            actual = "no cookies set"
        elif lacking:
            actual = "missing on: " + ", ".join(lacking)
        else:
            actual = f"set on all {len(cookies)} cookie(s)"
        findings.append(
            check.finding(passed=not lacking, asset=asset, expected=f"{flag} on every cookie", actual=actual)
        )
    return findings


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
