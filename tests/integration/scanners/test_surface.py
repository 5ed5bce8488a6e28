"""The surface scanner: the four plugins on one local target, each with its own status, plus a grade."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
import trustme

from scanq.config import Settings
from scanq.exceptions import ScannerError, ValidationError
from scanq.scanners import ScannerRegistry
from scanq.scanners.net.findings import format_findings_table
from scanq.scanners.net.surface import SurfaceScanner
from tests.integration.scanners.servers import HttpReply, a, closed_port, ds, mx, soa, txt

HOST = "www.shop.test"
SCAN_ID = "0190c0de-0000-7000-8000-000000000006"
RECORDS = [
    (HOST, "A", a("127.0.0.1")),
    (HOST, "SOA", soa(HOST)),
    (HOST, "TXT", txt("v=spf1 mx -all")),
    (HOST, "MX", mx(f"mx.{HOST}")),
    (HOST, "DS", ds()),
    (f"_dmarc.{HOST}", "TXT", txt("v=DMARC1; p=none")),
]
GOOD_HEADERS = [
    ("Strict-Transport-Security", "max-age=31536000"),
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
]


@pytest.fixture
async def site(ca: trustme.CA, servers, dns_server, make_context):
    """A local web site on www.shop.test; returns (the scanner's context, options for surface)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(HOST).configure_cert(ctx)
    https_port = await servers.http(HttpReply(headers=GOOD_HEADERS), tls=ctx)
    http_port = await servers.http(HttpReply(status=308, headers=[("Location", f"https://{HOST}:{https_port}/")]))
    redis = await servers.banner(b"-NOAUTH Authentication required.\r\n")
    _, nameserver = await dns_server(RECORDS)
    options: dict[str, Any] = {
        "tls": {"port": https_port},
        "http": {"http_port": http_port, "https_port": https_port},
        "ports": {"ports": [redis, closed_port()]},
    }
    return make_context(nameservers=(nameserver,)), options


async def test_surface_runs_every_plugin_and_grades(site):
    context, options = site
    result = await SurfaceScanner(context).run(scan_id=SCAN_ID, target=HOST, options=options)
    assert result["plugins"] == {"tls": "ok", "ports": "ok", "http": "ok", "dns": "ok"}
    assert {f["plugin"] for f in result["findings"]} == {"tls", "ports", "http", "dns"}
    failed = sorted(f["check_id"] for f in result["findings"] if f["status"] == "fail")
    # The open port outside the risky list (low) and DMARC p=none (medium).
    assert failed == ["dns.dmarc.policy", "ports.exposed"]
    assert result["score"] == 100 - 8 - 3
    assert result["grade"] == "B"  # 89: A starts at 90
    assert result["scoring_version"] == 1
    assert result["score_complete"] is True
    assert result["findings"][0]["status"] == "fail"  # failures first
    table = format_findings_table(result)
    assert "dns.dmarc.policy" in table and "FAIL" in table and "grade: B" in table
    assert "plugins: dns=ok, http=ok, ports=ok, tls=ok" in table


async def test_a_failing_plugin_does_not_hide_the_others(site):
    context, options = site
    options["tls"] = {"port": closed_port()}
    result = await SurfaceScanner(context).run(scan_id=SCAN_ID, target=HOST, options=options)
    assert result["plugins"]["tls"].startswith("error: no TLS service")
    assert result["plugins"]["http"] == "ok"
    assert result["score_complete"] is False
    assert not any(f["plugin"] == "tls" for f in result["findings"])


async def test_ip_target_skips_dns_and_subset_of_plugins(site):
    context, options = site
    options["plugins"] = ["ports", "dns"]
    result = await SurfaceScanner(context).run(scan_id=SCAN_ID, target="127.0.0.1", options=options)
    assert result["plugins"] == {"ports": "ok", "dns": "skipped: needs a domain name, the target is an IP address"}
    assert result["score_complete"] is True


async def test_refused_target_fails_the_whole_scan(make_context):
    scanner = SurfaceScanner(make_context(target_allowlist=()))
    with pytest.raises(ValidationError, match="loopback"):
        await scanner.validate(target="127.0.0.1", options={})
    with pytest.raises(ScannerError, match="loopback"):
        await scanner.run(scan_id=SCAN_ID, target="127.0.0.1", options={})


async def test_options_are_checked_at_submit_time(make_context):
    scanner = SurfaceScanner(make_context())
    assert str(scanner.parse("HTTPS://Www.Shop.Test./")) == "https://www.shop.test/"
    for bad in (
        {"plugins": ["nmap"]},
        {"ports": {"ports": [0]}},
        {"tls": {"port": "443"}},
        {"http": {"proxy": "x"}},
        {"colour": "red"},
    ):
        with pytest.raises(ValidationError):
            await scanner.validate(target=HOST, options=bad)


def test_plugins_are_registered_as_entry_points():
    registry = ScannerRegistry(Settings())
    assert {"tls", "ports", "http", "dns", "surface"} <= set(registry.names)
    assert isinstance(registry.get("surface"), SurfaceScanner)
