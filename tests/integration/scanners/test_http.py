"""The http scanner against local HTTP and HTTPS servers."""

from __future__ import annotations

import json
import ssl
from typing import Any

import pytest
import trustme

from scanq.exceptions import ScannerError
from scanq.scanners.net.web import HttpScanner
from tests.integration.scanners.servers import HttpReply, a, closed_port

HOST = "www.shop.test"
SCAN_ID = "0190c0de-0000-7000-8000-000000000002"
SECRET = "s3cr3t-session-value"

GOOD_HEADERS = [
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Set-Cookie", f"sid={SECRET}; Path=/; Secure; HttpOnly; SameSite=Lax"),
    ("Server", "nginx"),
]
BAD_HEADERS = [
    ("Set-Cookie", f"sid={SECRET}; Path=/"),
    ("Set-Cookie", "theme=dark; Secure; HttpOnly"),
    ("Server", "Apache/2.4.41 (Ubuntu)"),
    ("X-Powered-By", "PHP/7.4.3"),
]


@pytest.fixture
def tls_context(ca: trustme.CA):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(HOST, "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture
async def scan(make_context, dns_server):
    """``await scan(target, http_port=…, https_port=…, records=[...])`` -> (result, findings by check_id)."""

    async def run(target: str = HOST, *, records: tuple[Any, ...] = (), allowlist=("127.0.0.0/8",), **options: Any):
        _, nameserver = await dns_server([(HOST, "A", a("127.0.0.1")), *records])
        scanner = HttpScanner(make_context(nameservers=(nameserver,), target_allowlist=allowlist))
        result = dict(await scanner.run(scan_id=SCAN_ID, target=target, options=options))
        return result, {f["check_id"]: f for f in result["findings"]}

    return run


def redirect_to(location: str) -> HttpReply:
    return HttpReply(status=301, headers=[("Location", location)], body=b"")


def failed(findings: dict[str, Any]) -> set[str]:
    return {check for check, f in findings.items() if f["status"] == "fail"}


async def test_well_configured_site_passes(scan, servers, tls_context):
    https_port = await servers.http(HttpReply(headers=GOOD_HEADERS), tls=tls_context)
    http_port = await servers.http(redirect_to(f"https://{HOST}:{https_port}/"))
    result, findings = await scan(http_port=http_port, https_port=https_port)
    assert result["plugins"] == {"http": "ok"}
    assert failed(findings) == set()
    assert set(findings) == {
        "http.https.offered",
        "http.https.redirect",
        "http.header.hsts",
        "http.header.csp",
        "http.header.frame_options",
        "http.header.content_type_options",
        "http.cookie.secure",
        "http.cookie.httponly",
        "http.cookie.samesite",
        "http.server.version_banner",
    }
    assert findings["http.https.redirect"]["evidence"]["actual"] == f"ends at https://{HOST}:{https_port}/"
    assert findings["http.header.frame_options"]["evidence"]["actual"] == "CSP frame-ancestors 'none'"
    # Every request went to the checked address with the target name in Host.
    assert all(f"host={HOST}:" in line for line in servers.requests)


async def test_badly_configured_site_fails_and_never_shows_cookie_values(scan, servers, tls_context):
    https_port = await servers.http(HttpReply(headers=BAD_HEADERS), tls=tls_context)
    http_port = await servers.http(HttpReply(headers=[("Server", "Apache/2.4.41 (Ubuntu)")]))
    result, findings = await scan(http_port=http_port, https_port=https_port)
    assert failed(findings) == {
        "http.https.redirect",
        "http.header.hsts",
        "http.header.csp",
        "http.header.frame_options",
        "http.header.content_type_options",
        "http.cookie.secure",
        "http.cookie.samesite",
        "http.cookie.httponly",
        "http.server.version_banner",
    }
    assert findings["http.cookie.secure"]["evidence"]["actual"] == "missing on: sid"
    # theme is not a session or anti-CSRF cookie: SameSite is not asked of it (docs/scanners.md).
    assert findings["http.cookie.samesite"]["evidence"]["actual"] == "missing on: sid"
    assert "Apache/2.4.41" in findings["http.server.version_banner"]["evidence"]["actual"]
    assert "PHP/7.4.3" in findings["http.server.version_banner"]["evidence"]["actual"]
    assert findings["http.https.redirect"]["evidence"]["actual"].startswith("HTTP 200 at http://")
    assert SECRET not in json.dumps(result)


async def test_x_frame_options_alone_passes_the_frame_check(scan, servers, tls_context):
    https_port = await servers.http(HttpReply(headers=[("X-Frame-Options", "SAMEORIGIN")]), tls=tls_context)
    _, findings = await scan(http_port=closed_port(), https_port=https_port)
    assert findings["http.header.frame_options"]["status"] == "pass"
    assert findings["http.header.hsts"]["evidence"]["actual"] == "missing"
    # Plain HTTP not served at all: nothing to redirect, nothing insecure.
    assert findings["http.https.redirect"]["status"] == "pass"
    assert findings["http.https.redirect"]["evidence"]["actual"] == "plain HTTP not served"


async def test_short_hsts_fails(scan, servers, tls_context):
    https_port = await servers.http(HttpReply(headers=[("Strict-Transport-Security", "max-age=300")]), tls=tls_context)
    _, findings = await scan(http_port=closed_port(), https_port=https_port)
    assert findings["http.header.hsts"]["status"] == "fail"
    assert findings["http.header.hsts"]["evidence"]["actual"] == "max-age=300"


async def test_no_https_judges_the_plain_page(scan, servers):
    http_port = await servers.http(HttpReply(headers=GOOD_HEADERS))
    result, findings = await scan(http_port=http_port, https_port=closed_port())
    assert findings["http.https.offered"]["status"] == "fail"
    assert "refused" in findings["http.https.offered"]["evidence"]["actual"]
    assert findings["http.header.hsts"]["status"] == "fail"
    assert findings["http.header.hsts"]["evidence"]["actual"] == "no HTTPS page to send it on"
    assert findings["http.header.csp"]["status"] == "pass"
    assert result["details"]["http"]["judged"].startswith("http://")


async def test_url_target_sets_the_https_port_and_path(scan, servers, tls_context):
    https_port = await servers.http(HttpReply(headers=GOOD_HEADERS), tls=tls_context)
    result, findings = await scan(f"https://{HOST.upper()}:{https_port}/login?next=1", http_port=closed_port())
    assert result["target"] == f"https://{HOST}:{https_port}/login?next=1"
    assert findings["http.https.offered"]["status"] == "pass"
    assert any(line.startswith("GET /login?next=1 HTTP/1.1") for line in servers.requests)


@pytest.mark.parametrize(
    ("location", "allowlist", "why"),
    [
        ("http://10.0.0.1/admin", ("127.0.0.0/8",), "private"),
        ("http://169.254.169.254/latest/meta-data/", ("127.0.0.0/8", "169.254.0.0/16"), "metadata"),
        ("http://[::ffff:10.0.0.1]/", ("127.0.0.0/8",), "IPv4-mapped"),
        ("http://intranet.shop.test/", ("127.0.0.0/8",), "private"),
        ("http://db.corp.internal/", ("127.0.0.0/8",), "internal"),
    ],
)
async def test_redirect_to_a_refused_address_is_not_followed(scan, servers, tls_context, location, allowlist, why):
    https_port = await servers.http(HttpReply(headers=GOOD_HEADERS), tls=tls_context)
    http_port = await servers.http(redirect_to(location))
    result, findings = await scan(
        http_port=http_port,
        https_port=https_port,
        records=(("intranet.shop.test", "A", a("10.20.30.40")),),
        allowlist=allowlist,
    )
    chain = result["details"]["http"]["http"]
    assert chain[0]["status"] == 301
    assert "refused" in chain[-1]["stopped"] and why in chain[-1]["stopped"]
    redirect = findings["http.https.redirect"]
    assert redirect["status"] == "fail"
    assert "refused" in redirect["evidence"]["actual"]
    # Only the two local servers saw requests: the redirect was never followed.
    assert len(servers.requests) == 2


async def test_redirect_loop_is_bounded(scan, servers, tls_context):
    https_port = await servers.http(HttpReply(headers=GOOD_HEADERS), tls=tls_context)
    http_port = await servers.http(redirect_to("/again"))
    result, findings = await scan(http_port=http_port, https_port=https_port)
    assert result["details"]["http"]["http"][-1] == {"stopped": "more than 5 redirects"}
    assert findings["http.https.redirect"]["status"] == "fail"


async def test_nothing_answering_is_a_plugin_error(scan):
    with pytest.raises(ScannerError, match="no HTTP answer"):
        await scan(http_port=closed_port(), https_port=closed_port())
