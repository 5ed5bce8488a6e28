"""The surface scanner: the four plugins on one local target, each with its own status, plus a grade."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
import trustme

from scanq.config import Settings
from scanq.exceptions import ScannerError, TransientScanError, ValidationError
from scanq.scanners import ScannerRegistry
from scanq.scanners.net.findings import format_findings_table
from scanq.scanners.net.surface import SurfaceScanner
from tests.integration.scanners.servers import HttpReply, closed_port
from tests.reference.dns_lab import txt

HOST = "www.shop.test"
SCAN_ID = "0190c0de-0000-7000-8000-000000000006"
RECORDS = [
    (HOST, "A", "127.0.0.1"),
    (HOST, "SOA", f"ns.{HOST}. hostmaster.{HOST}. 1 3600 600 86400 60"),
    (HOST, "TXT", txt("v=spf1 mx -all")),
    (HOST, "MX", f"10 mx.{HOST}."),
    (f"_dmarc.{HOST}", "TXT", txt("v=DMARC1; p=none")),
]
GOOD_HEADERS = [
    ("Strict-Transport-Security", "max-age=31536000"),
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
]


@pytest.fixture
async def site(ca: trustme.CA, servers, lab_server, make_context):
    """A local web site on www.shop.test; returns (the scanner's context, options for surface)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(HOST).configure_cert(ctx)
    https_port = await servers.http(HttpReply(headers=GOOD_HEADERS), tls=ctx)
    http_port = await servers.http(HttpReply(status=308, headers=[("Location", f"https://{HOST}:{https_port}/")]))
    redis = await servers.banner(b"-NOAUTH Authentication required.\r\n")
    nameserver = lab_server(RECORDS, sign=(HOST,)).address  # a validly signed zone
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
    # DMARC p=none (medium) and the open port, graded by what answered there: a Redis asking for a password (high).
    assert failed == ["dns.dmarc.policy", "ports.exposed"]
    ports = next(f for f in result["findings"] if f["check_id"] == "ports.exposed" and f["status"] == "fail")
    assert (ports["severity"], ports["evidence"]["actual"]) == ("high", "open (Redis, authentication required)")
    assert result["score"] == 100 - 8 - 20
    assert result["grade"] == "C"  # 72: B starts at 75
    assert result["scoring_version"] == 1
    assert result["score_complete"] is True
    assert result["findings"][0]["status"] == "fail"  # failures first
    table = format_findings_table(result)
    assert "dns.dmarc.policy" in table and "FAIL" in table and "grade: C" in table
    assert "plugins: dns=ok, http=ok, ports=ok, tls=ok" in table


async def test_a_failing_plugin_does_not_hide_the_others_but_nothing_is_graded(site):
    context, options = site
    options["tls"] = {"port": closed_port()}
    result = await SurfaceScanner(context).run(scan_id=SCAN_ID, target=HOST, options=options)
    assert result["plugins"]["tls"].startswith("error: no TLS service")
    assert result["plugins"]["http"] == "ok"
    assert result["score_complete"] is False
    assert not any(f["plugin"] == "tls" for f in result["findings"])
    # A grade of what could be scanned would look better than the target may be.
    assert "score" not in result and "grade" not in result
    assert result["not_graded"] == ["tls"]
    assert "score: not graded: tls could not run" in format_findings_table(result)


async def test_a_domain_that_does_not_exist_is_an_error_not_a_grade(site):
    context, options = site
    with pytest.raises(ScannerError, match="no scanner could run") as raised:
        await SurfaceScanner(context).run(scan_id=SCAN_ID, target="nowhere.shop.test", options=options)
    assert not isinstance(raised.value, TransientScanError)  # permanent: nothing will appear on a retry
    message = raised.value.message
    assert "dns: error: nowhere.shop.test does not exist (NXDOMAIN)" in message
    assert "tls: error: nowhere.shop.test does not exist" in message


async def test_a_mail_only_domain_reports_its_dns_and_names_what_could_not_run(site, lab_server, make_context):
    _, options = site
    nameserver = lab_server(
        [("mail.shop.test", "MX", "10 mx.elsewhere.test."), ("mail.shop.test", "TXT", txt("v=spf1 -all"))]
    ).address
    result = await SurfaceScanner(make_context(nameservers=(nameserver,))).run(
        scan_id=SCAN_ID, target="mail.shop.test", options=options
    )
    assert result["plugins"]["dns"] == "ok"
    assert {f["plugin"] for f in result["findings"]} == {"dns"}
    assert result["not_graded"] == ["tls", "ports", "http"]
    assert "score" not in result and "grade" not in result


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
