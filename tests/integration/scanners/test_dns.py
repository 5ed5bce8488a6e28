"""The dns scanner with its resolver pointed at a local DNS server."""

from __future__ import annotations

from typing import Any

import pytest

from scanq.exceptions import ScannerError, TransientScanError
from scanq.scanners.net.dnscheck import DnsScanner
from tests.integration.scanners.servers import closed_port, ds, mx, soa, txt

SCAN_ID = "0190c0de-0000-7000-8000-000000000004"

GOOD = [
    ("good.test", "SOA", soa("good.test")),
    ("good.test", "TXT", txt("v=spf1 ip4:192.0.2.0/24 include:_spf.mailer.test -all")),
    ("good.test", "TXT", txt("google-site-verification=abc")),
    ("good.test", "MX", mx("mx1.good.test", 10)),
    ("good.test", "DS", ds()),
    ("_dmarc.good.test", "TXT", txt("v=DMARC1; p=reject; rua=mailto:d@good.test")),
    ("_spf.mailer.test", "TXT", txt("v=spf1 ip4:198.51.100.0/24 a mx ~all")),
]

# SPF with +all, DMARC p=none, no MX, no DS.
WEAK = [
    ("weak.test", "SOA", soa("weak.test")),
    ("weak.test", "TXT", txt("v=spf1 a mx +all")),
    ("_dmarc.weak.test", "TXT", txt("v=DMARC1; p=none")),
]

# Two SPF records.
DOUBLE = [
    ("double.test", "SOA", soa("double.test")),
    ("double.test", "TXT", txt("v=spf1 -all")),
    ("double.test", "TXT", txt("v=spf1 mx -all")),
    ("double.test", "MX", mx(".", 0)),
]


def chain(depth: int) -> list[Any]:
    """deep.test includes inc1, which includes inc2 …: 1 + 3 per level, less the last level's include."""
    records: list[Any] = [
        ("deep.test", "SOA", soa("deep.test")),
        ("deep.test", "TXT", txt("v=spf1 include:inc1.test -all")),
    ]
    for level in range(1, depth + 1):
        nxt = f" include:inc{level + 1}.test" if level < depth else ""
        records.append((f"inc{level}.test", "TXT", txt(f"v=spf1 a mx{nxt} ?all")))
    return records


@pytest.fixture
async def scan(make_context, dns_server):
    async def run(domain: str, records: list[Any]) -> tuple[dict[str, Any], dict[str, Any], Any]:
        server, nameserver = await dns_server(records)
        scanner = DnsScanner(make_context(nameservers=(nameserver,)))
        result = dict(await scanner.run(scan_id=SCAN_ID, target=domain, options={}))
        return result, {f["check_id"]: f for f in result["findings"]}, server

    return run


def statuses(findings: dict[str, Any]) -> dict[str, str]:
    return {check: f["status"] for check, f in findings.items()}


async def test_well_configured_domain_passes(scan):
    result, findings, server = await scan("Good.Test.", GOOD)
    assert result["target"] == "good.test"
    assert result["addresses"] == []
    assert statuses(findings) == {
        "dns.spf.present": "pass",
        "dns.spf.single": "pass",
        "dns.spf.all_mechanism": "pass",
        "dns.spf.lookup_limit": "pass",
        "dns.dmarc.present": "pass",
        "dns.dmarc.policy": "pass",
        "dns.mx.present": "pass",
        "dns.dnssec.signed": "pass",
    }
    assert result["details"]["dns"]["spf_lookups"] == 3  # include + a + mx inside it
    assert result["details"]["dns"]["zone"] == "good.test"
    assert findings["dns.spf.present"]["asset"] == {"host": "good.test", "ip": None, "port": None}
    # Nothing was asked about the domain's address: the dns scanner never connects to it.
    assert ("good.test", "A") not in server.queries


async def test_weak_domain_fails(scan):
    _, findings, _ = await scan("weak.test", WEAK)
    assert statuses(findings) == {
        "dns.spf.present": "pass",
        "dns.spf.single": "pass",
        "dns.spf.all_mechanism": "fail",
        "dns.spf.lookup_limit": "pass",
        "dns.dmarc.present": "pass",
        "dns.dmarc.policy": "fail",
        "dns.mx.present": "fail",
        "dns.dnssec.signed": "fail",
    }
    assert findings["dns.spf.all_mechanism"]["severity"] == "high"
    assert findings["dns.spf.all_mechanism"]["evidence"]["actual"] == "+all"
    assert findings["dns.dmarc.policy"]["evidence"]["actual"] == "p=none"


async def test_missing_records(scan):
    _, findings, _ = await scan("bare.test", [("bare.test", "SOA", soa("bare.test"))])
    assert statuses(findings) == {
        "dns.spf.present": "fail",
        "dns.dmarc.present": "fail",
        "dns.mx.present": "fail",
        "dns.dnssec.signed": "fail",
    }


async def test_two_spf_records_and_null_mx(scan):
    _, findings, _ = await scan("double.test", DOUBLE)
    assert findings["dns.spf.single"]["status"] == "fail"
    assert findings["dns.spf.single"]["evidence"]["actual"] == "2 SPF records"
    assert "dns.spf.all_mechanism" not in findings
    assert findings["dns.mx.present"]["status"] == "pass"
    assert findings["dns.mx.present"]["evidence"]["actual"] == "null MX (receives no mail)"


async def test_spf_lookup_limit_counts_nested_includes(scan):
    _, ok, _ = await scan("deep.test", chain(3))  # 1 + 3 + 3 + 2 = 9
    assert ok["dns.spf.lookup_limit"]["status"] == "pass"
    assert ok["dns.spf.lookup_limit"]["evidence"]["actual"] == "9 lookups"
    result, over, _ = await scan("deep.test", chain(4))  # 12
    assert over["dns.spf.lookup_limit"]["status"] == "fail"
    assert result["details"]["dns"]["spf_lookups"] > 10
    assert over["dns.spf.all_mechanism"]["status"] == "pass"  # -all at the top is what counts


async def test_spf_include_loop_is_bounded(scan):
    records = [
        ("loop.test", "TXT", txt("v=spf1 include:a.loop.test -all")),
        ("a.loop.test", "TXT", txt("v=spf1 include:b.loop.test -all")),
        ("b.loop.test", "TXT", txt("v=spf1 include:a.loop.test -all")),
    ]
    result, findings, server = await scan("loop.test", records)
    assert findings["dns.spf.lookup_limit"]["status"] == "pass"
    assert result["details"]["dns"]["spf_lookups"] == 3
    assert sum(1 for q in server.queries if q == ("a.loop.test", "TXT")) == 1


async def test_ip_target_is_refused(make_context):
    scanner = DnsScanner(make_context())
    with pytest.raises(Exception, match="needs a domain name"):
        await scanner.validate(target="127.0.0.1", options={})
    with pytest.raises(ScannerError, match="needs a domain name"):
        await scanner.run(scan_id=SCAN_ID, target="127.0.0.1", options={})


async def test_unreachable_resolver_is_transient(make_context):
    scanner = DnsScanner(make_context(nameservers=(f"127.0.0.1:{closed_port()}",), connect_timeout_seconds=0.3))
    with pytest.raises(TransientScanError):
        await scanner.run(scan_id=SCAN_ID, target="good.test", options={})
