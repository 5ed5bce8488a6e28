"""The HTTP lab: header variants on local servers, each with what the MDN HTTP Observatory says of it.

The reference is the MDN HTTP Observatory's published scoring (the "Tests & Scoring" page of
developer.mozilla.org/en-US/observatory, whose rules are the code in mdn/mdn-http-observatory,
``src/analyzer/tests/<test>.js``, and whose modifiers are ``src/grader/charts.js``). It is a Node
service, not installable from PyPI or Debian, so each case states the Observatory's result for
each of its six header tests, the rule that gives it (``rule``), and whether the test passes.

A case is one site: an HTTPS server answering ``headers`` (or no HTTPS at all), a plain-HTTP
server that redirects in some way (``plain``), on the names of the lab zone, all on 127.0.0.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HOST = "www.lab.test"
APEX = "lab.test"
OTHER = "other.lab.test"
NAMES = (HOST, APEX, OTHER)

# The six Observatory tests that have a counterpart in the http scanner, and that counterpart.
COUNTERPARTS: dict[str, tuple[str, ...]] = {
    "redirection": ("http.https.redirect",),
    "strict-transport-security": ("http.header.hsts",),
    "content-security-policy": ("http.header.csp",),
    "x-frame-options": ("http.header.frame_options",),
    "x-content-type-options": ("http.header.content_type_options",),
    "cookies": ("http.cookie.secure", "http.cookie.httponly", "http.cookie.samesite"),
}
# Observatory results that pass (the ``pass`` of each test: its expectation, or the listed extras).
PASSING = frozenset(
    {
        "redirection-to-https",
        "redirection-not-needed-no-http",
        "hsts-implemented-max-age-at-least-six-months",
        "csp-implemented-with-no-unsafe",
        "csp-implemented-with-no-unsafe-default-src-none",
        "csp-implemented-with-unsafe-inline-in-style-src-only",
        "csp-implemented-with-insecure-scheme-in-passive-content-only",
        "x-frame-options-sameorigin-or-deny",
        "x-frame-options-allow-from-origin",
        "x-frame-options-implemented-via-csp",
        "x-content-type-options-nosniff",
        "cookies-not-found",
        "cookies-secure-with-httponly-sessions",
        "cookies-secure-with-httponly-sessions-and-samesite",
    }
)

GOOD_HEADERS: dict[str, str] = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Content-Security-Policy": "default-src 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}
GOOD_RESULTS: dict[str, str] = {
    "redirection": "redirection-to-https",
    "strict-transport-security": "hsts-implemented-max-age-at-least-six-months",
    "content-security-policy": "csp-implemented-with-no-unsafe",
    "x-frame-options": "x-frame-options-sameorigin-or-deny",
    "x-content-type-options": "x-content-type-options-nosniff",
    "cookies": "cookies-not-found",
}


@dataclass(frozen=True)
class HttpCase:
    """One lab site and the Observatory's verdict on it.

    Attributes:
        headers: the page's headers (on HTTPS; on plain HTTP too when it serves the page).
        https: there is an HTTPS server (False: the port is closed).
        cookies: Set-Cookie values on the HTTPS page.
        plain: how plain HTTP answers: ``same-host`` (301 to https on the same name), ``off-host``
            (301 from the apex to https on www), ``via-plain`` (301 to http on www, then https),
            ``to-plain`` (301 to http on another name, which serves the page), ``serve`` (no
            redirect) or ``closed`` (no plain HTTP).
        body: the page body (the Observatory reads ``<meta http-equiv>`` in it; scanq never reads bodies).
        results: the Observatory result of each test (``GOOD_RESULTS`` with overrides).
        rule: where the Observatory rules say so.
        differences: test -> id of a deliberate difference (docs/scanners.md): scanq's verdict is the opposite.
        untrusted: the HTTPS certificate is not trusted (the Observatory only trusts verified chains).
    """

    id: str
    rule: str
    headers: dict[str, str] = field(default_factory=lambda: dict(GOOD_HEADERS))
    https: bool = True
    cookies: tuple[str, ...] = ()
    plain: str = "same-host"
    target: str = HOST
    body: str = "hello"
    results: dict[str, str] = field(default_factory=lambda: dict(GOOD_RESULTS))
    differences: dict[str, str] = field(default_factory=dict)
    untrusted: bool = False

    def observatory_passes(self, test: str) -> bool:
        return self.results[test] in PASSING


def _case(
    case_id: str,
    rule: str,
    *,
    header: dict[str, str | None] | None = None,
    results: dict[str, str] | None = None,
    **kwargs: Any,
) -> HttpCase:
    """A case from the good site: ``header`` sets (or, with None, removes) headers; ``results`` overrides."""
    headers = dict(GOOD_HEADERS)
    for name, value in (header or {}).items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return HttpCase(case_id, rule, headers=headers, results={**GOOD_RESULTS, **(results or {})}, **kwargs)


CSP = "Content-Security-Policy"
XFO = "X-Frame-Options"
HSTS = "Strict-Transport-Security"
XCTO = "X-Content-Type-Options"

CASES: list[HttpCase] = [
    _case("good", "every test at its expectation (charts.js: modifiers 0 or more)"),
    # --- redirection (redirection.js) ---------------------------------------------------------------
    _case(
        "no-plain-http",
        "redirection.js: no HTTP response -> redirection-not-needed-no-http (0, pass)",
        plain="closed",
        results={"redirection": "redirection-not-needed-no-http"},
    ),
    _case(
        "plain-serves-the-page",
        "redirection.js: route of one response -> redirection-missing (-20, fail)",
        plain="serve",
        results={"redirection": "redirection-missing"},
    ),
    _case(
        "first-hop-to-plain-http",
        "redirection.js: route[1] is http: -> redirection-not-to-https-on-initial-redirection (-10, fail)",
        plain="via-plain",
        target=APEX,
        results={"redirection": "redirection-not-to-https-on-initial-redirection"},
    ),
    _case(
        "first-hop-off-host",
        "redirection.js: http://a -> https://b, other hostname -> redirection-off-host-from-http (-5, fail)",
        plain="off-host",
        target=APEX,
        results={"redirection": "redirection-off-host-from-http"},
    ),
    _case(
        "redirects-but-never-to-https",
        "redirection.js: last route entry not https: -> redirection-not-to-https (-20, fail)",
        plain="to-plain",
        results={"redirection": "redirection-not-to-https"},
    ),
    # --- strict-transport-security (strict-transport-security.js, SIX_MONTHS = 15552000) ---------------
    _case(
        "hsts-exactly-six-months",
        "hsts: max-age 15552000 is not < SIX_MONTHS -> at-least-six-months (0, pass)",
        header={HSTS: "max-age=15552000"},
    ),
    _case(
        "hsts-a-second-short",
        "hsts: max-age < 15552000 -> hsts-implemented-max-age-less-than-six-months (-10, fail)",
        header={HSTS: "max-age=15551999; includeSubDomains"},
        results={"strict-transport-security": "hsts-implemented-max-age-less-than-six-months"},
    ),
    _case(
        "hsts-five-minutes",
        "hsts: max-age < 15552000 -> hsts-implemented-max-age-less-than-six-months (-10, fail)",
        header={HSTS: "max-age=300"},
        results={"strict-transport-security": "hsts-implemented-max-age-less-than-six-months"},
    ),
    _case(
        "hsts-without-max-age",
        "hsts: no max-age -> 'MaxAge missing' -> hsts-header-invalid (-20, fail)",
        header={HSTS: "includeSubDomains; preload"},
        results={"strict-transport-security": "hsts-header-invalid"},
    ),
    _case(
        "hsts-set-twice",
        "hsts: a ',' in the value -> 'Header set multiple times' -> hsts-header-invalid (-20, fail)",
        header={HSTS: "max-age=31536000, max-age=31536000"},
        results={"strict-transport-security": "hsts-header-invalid"},
    ),
    _case(
        "hsts-missing",
        "hsts: no header -> hsts-not-implemented (-20, fail)",
        header={HSTS: None},
        results={"strict-transport-security": "hsts-not-implemented"},
    ),
    HttpCase(
        "no-https-at-all",
        "hsts: no HTTPS response -> hsts-not-implemented-no-https (-20, fail); redirection-missing (-20, fail)",
        https=False,
        plain="serve",
        results={
            **GOOD_RESULTS,
            "redirection": "redirection-missing",
            "strict-transport-security": "hsts-not-implemented-no-https",
        },
    ),
    # --- content-security-policy (csp.js) ---------------------------------------------------------
    _case(
        "csp-default-src-none",
        "csp: default-src 'none' alone -> csp-implemented-with-no-unsafe-default-src-none (+10, pass)",
        header={CSP: "default-src 'none'"},
        results={"content-security-policy": "csp-implemented-with-no-unsafe-default-src-none"},
    ),
    _case(
        "csp-missing",
        "csp: no policy -> csp-not-implemented (-25, fail)",
        header={CSP: None},
        results={"content-security-policy": "csp-not-implemented"},
    ),
    _case(
        "csp-report-only",
        "csp: only Report-Only -> csp-not-implemented-but-reporting-enabled (-25, fail)",
        header={CSP: None, "Content-Security-Policy-Report-Only": "default-src 'self'"},
        results={"content-security-policy": "csp-not-implemented-but-reporting-enabled"},
    ),
    _case(
        "csp-unsafe-inline",
        "csp: 'unsafe-inline' in script-src -> csp-implemented-with-unsafe-inline (-20, fail)",
        header={CSP: "default-src 'self'; script-src 'self' 'unsafe-inline'"},
        results={"content-security-policy": "csp-implemented-with-unsafe-inline"},
    ),
    _case(
        "csp-unsafe-eval",
        "csp: 'unsafe-eval' in script-src -> csp-implemented-with-unsafe-eval (-10, fail)",
        header={CSP: "default-src 'self'; script-src 'self' 'unsafe-eval'"},
        results={"content-security-policy": "csp-implemented-with-unsafe-eval"},
    ),
    _case(
        "csp-script-src-star",
        "csp: '*' (DANGEROUSLY_BROAD) in script-src -> csp-implemented-with-unsafe-inline (-20, fail)",
        header={CSP: "default-src 'self'; script-src *"},
        results={"content-security-policy": "csp-implemented-with-unsafe-inline"},
    ),
    _case(
        "csp-script-src-https-scheme",
        "csp: 'https:' (DANGEROUSLY_BROAD) in script-src -> csp-implemented-with-unsafe-inline (-20, fail)",
        header={CSP: "default-src 'self'; script-src https:"},
        results={"content-security-policy": "csp-implemented-with-unsafe-inline"},
    ),
    _case(
        "csp-script-src-data",
        "csp: data: (UNSAFE_INLINE) in script-src -> csp-implemented-with-unsafe-inline (-20, fail)",
        header={CSP: "default-src 'self'; script-src 'self' data:"},
        results={"content-security-policy": "csp-implemented-with-unsafe-inline"},
    ),
    _case(
        "csp-nonce-disables-unsafe-inline",
        "csp: a nonce removes 'unsafe-inline' from script-src -> csp-implemented-with-no-unsafe (+5, pass)",
        header={CSP: "default-src 'self'; script-src 'nonce-r4nd0m' 'unsafe-inline'"},
    ),
    _case(
        "csp-strict-dynamic-with-nonce",
        "csp: 'strict-dynamic' with a nonce drops https: and 'unsafe-inline' -> csp-implemented-with-no-unsafe (pass)",
        header={CSP: "default-src 'self'; script-src 'strict-dynamic' 'nonce-r4nd0m' https: 'unsafe-inline'"},
    ),
    _case(
        "csp-strict-dynamic-without-nonce",
        "csp: 'strict-dynamic' without nonce or hash -> csp-header-invalid (-25, fail)",
        header={CSP: "default-src 'self'; script-src 'strict-dynamic'"},
        results={"content-security-policy": "csp-header-invalid"},
    ),
    _case(
        "csp-unsafe-inline-styles-only",
        "csp: unsafe sources in style-src only -> csp-implemented-with-unsafe-inline-in-style-src-only (0, pass)",
        header={CSP: "default-src 'self'; style-src 'self' 'unsafe-inline'"},
        results={"content-security-policy": "csp-implemented-with-unsafe-inline-in-style-src-only"},
    ),
    _case(
        "csp-no-object-src",
        "csp: no object-src nor default-src -> object-src is '*' -> csp-implemented-with-unsafe-inline (fail)",
        header={CSP: "script-src 'self'"},
        results={"content-security-policy": "csp-implemented-with-unsafe-inline"},
    ),
    _case(
        "csp-http-images-only",
        "csp: http: in img-src only -> csp-implemented-with-insecure-scheme-in-passive-content-only (-10, pass)",
        header={CSP: "default-src 'self'; img-src 'self' http:"},
        results={"content-security-policy": "csp-implemented-with-insecure-scheme-in-passive-content-only"},
    ),
    _case(
        "csp-http-script-host",
        "csp: an http: source for scripts on an https page -> csp-implemented-with-insecure-scheme (-20, fail)",
        header={CSP: "default-src 'self'; script-src 'self' http://cdn.lab.test"},
        results={"content-security-policy": "csp-implemented-with-insecure-scheme"},
    ),
    _case(
        "csp-repeated-directive",
        "cspParser.js: a repeated directive (not report-uri/report-to) -> csp-header-invalid (-25, fail)",
        header={CSP: "default-src 'self'; script-src 'self'; script-src 'none'"},
        results={"content-security-policy": "csp-header-invalid"},
    ),
    _case(
        "csp-only-in-meta",
        "csp: a policy in <meta http-equiv> counts -> csp-implemented-with-no-unsafe (+5, pass)",
        header={CSP: None},
        body='<html><head><meta http-equiv="Content-Security-Policy" content="default-src \'self\'"></head></html>',
        differences={"content-security-policy": "http-csp-meta"},
    ),
    # --- x-frame-options (x-frame-options.js) -----------------------------------------------------
    _case(
        "xfo-sameorigin-lowercase",
        "xfo: 'sameorigin' (trimmed, lowercased) -> x-frame-options-sameorigin-or-deny (+5, pass)",
        header={XFO: " sameorigin "},
    ),
    _case(
        "xfo-missing",
        "xfo: no header and no frame-ancestors -> x-frame-options-not-implemented (-20, fail)",
        header={XFO: None},
        results={"x-frame-options": "x-frame-options-not-implemented"},
    ),
    _case(
        "xfo-allow-from",
        "xfo: ALLOW-FROM -> x-frame-options-allow-from-origin (0, pass)",
        header={XFO: "ALLOW-FROM https://partner.lab.test/"},
        results={"x-frame-options": "x-frame-options-allow-from-origin"},
        differences={"x-frame-options": "http-xfo-allow-from"},
    ),
    _case(
        "xfo-invalid",
        "xfo: any other value -> x-frame-options-header-invalid (-20, fail)",
        header={XFO: "ALLOWALL"},
        results={"x-frame-options": "x-frame-options-header-invalid"},
    ),
    _case(
        "frame-ancestors-self",
        "xfo: CSP frame-ancestors set -> x-frame-options-implemented-via-csp (+5, pass)",
        header={XFO: None, CSP: "default-src 'self'; frame-ancestors 'self'"},
        results={"x-frame-options": "x-frame-options-implemented-via-csp"},
    ),
    _case(
        "frame-ancestors-star",
        "xfo: any CSP frame-ancestors, even '*' -> x-frame-options-implemented-via-csp (+5, pass)",
        header={XFO: None, CSP: "default-src 'self'; frame-ancestors *"},
        results={"x-frame-options": "x-frame-options-implemented-via-csp"},
        differences={"x-frame-options": "http-frame-ancestors-broad"},
    ),
    # --- x-content-type-options (x-content-type-options.js) ---------------------------------------
    _case(
        "xcto-missing",
        "xcto: no header -> x-content-type-options-not-implemented (-5, fail)",
        header={XCTO: None},
        results={"x-content-type-options": "x-content-type-options-not-implemented"},
    ),
    _case(
        "xcto-invalid",
        "xcto: not exactly 'nosniff' -> x-content-type-options-header-invalid (-5, fail)",
        header={XCTO: "nosniff; mode=block"},
        results={"x-content-type-options": "x-content-type-options-header-invalid"},
    ),
    # --- cookies (cookies.js: session = name holds 'login'/'sess', anti-CSRF = holds 'csrf') ---------
    _case(
        "cookie-session-all-flags",
        "cookies: all Secure, session HttpOnly, SameSite everywhere -> ...-sessions-and-samesite (+5, pass)",
        cookies=("sessionid=s3cr3t; Path=/; Secure; HttpOnly; SameSite=Lax",),
        results={"cookies": "cookies-secure-with-httponly-sessions-and-samesite"},
    ),
    _case(
        "cookie-without-secure",
        "cookies: a cookie without Secure (HSTS set) -> cookies-without-secure-flag-but-protected-by-hsts (-5, fail)",
        cookies=("theme=dark; Path=/; SameSite=Lax",),
        results={"cookies": "cookies-without-secure-flag-but-protected-by-hsts"},
    ),
    _case(
        "cookie-session-without-secure",
        "cookies: session cookie without Secure (HSTS set) -> cookies-session-without-secure-flag-but-protected-"
        "by-hsts (-10, fail)",
        cookies=("PHPSESSID=s3cr3t; HttpOnly; SameSite=Lax",),
        results={"cookies": "cookies-session-without-secure-flag-but-protected-by-hsts"},
    ),
    _case(
        "cookie-session-without-httponly",
        "cookies: session cookie without HttpOnly -> cookies-session-without-httponly-flag (-30, fail)",
        cookies=("login_token=s3cr3t; Secure; SameSite=Lax",),
        results={"cookies": "cookies-session-without-httponly-flag"},
    ),
    _case(
        "cookie-other-without-samesite",
        "cookies: SameSite missing on a cookie that is neither session nor anti-CSRF -> "
        "cookies-secure-with-httponly-sessions (0, pass)",
        cookies=("theme=dark; Secure",),
        results={"cookies": "cookies-secure-with-httponly-sessions"},
    ),
    _case(
        "cookie-session-without-samesite",
        "cookies: SameSite missing on a session cookie is no failure -> cookies-secure-with-httponly-sessions "
        "(0, pass)",
        cookies=("sessionid=s3cr3t; Secure; HttpOnly",),
        results={"cookies": "cookies-secure-with-httponly-sessions"},
        differences={"cookies": "http-samesite-session"},
    ),
    _case(
        "cookie-csrf-without-samesite",
        "cookies: anti-CSRF cookie without SameSite -> cookies-anticsrf-without-samesite-flag (-20, fail)",
        cookies=("csrftoken=t0k3n; Secure",),
        results={"cookies": "cookies-anticsrf-without-samesite-flag"},
    ),
    _case(
        "cookie-samesite-invalid",
        "cookies: SameSite not lax/strict/none -> cookies-samesite-flag-invalid (-20, fail)",
        cookies=("prefs=1; Secure; SameSite=Sometimes",),
        results={"cookies": "cookies-samesite-flag-invalid"},
    ),
    _case(
        "cookie-samesite-none-without-secure",
        "cookies: SameSite=None without Secure -> cookies-samesite-flag-invalid (-20, fail)",
        cookies=("prefs=1; SameSite=None",),
        results={"cookies": "cookies-samesite-flag-invalid"},
    ),
    _case(
        "cookie-connect-sid-without-httponly",
        "cookies: 'connect.sid' holds neither 'login' nor 'sess': not a session cookie -> "
        "cookies-secure-with-httponly-sessions-and-samesite (+5, pass)",
        cookies=("connect.sid=s3cr3t; Secure; SameSite=Lax",),
        results={"cookies": "cookies-secure-with-httponly-sessions-and-samesite"},
        differences={"cookies": "http-session-cookie-names"},
    ),
    _case(
        "cookie-xsrf-token-without-samesite",
        "cookies: 'XSRF-TOKEN' does not hold 'csrf': not an anti-CSRF cookie -> "
        "cookies-secure-with-httponly-sessions (0, pass)",
        cookies=("XSRF-TOKEN=t0k3n; Secure",),
        results={"cookies": "cookies-secure-with-httponly-sessions"},
        differences={"cookies": "http-csrf-cookie-names"},
    ),
    # --- certificate trust (strict-transport-security.js, redirection.js: response.verified) ------
    _case(
        "untrusted-certificate",
        "hsts: unverified chain -> hsts-invalid-cert (-20, fail); redirection: -> redirection-invalid-cert (-20, fail)",
        untrusted=True,
        results={
            "strict-transport-security": "hsts-invalid-cert",
            "redirection": "redirection-invalid-cert",
        },
        differences={
            "strict-transport-security": "http-certificate-trust",
            "redirection": "http-certificate-trust",
        },
    ),
]
