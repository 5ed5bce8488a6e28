"""The dns scanner with its resolver pointed at a local DNS server (``tests/reference/dns_lab.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from scanq.exceptions import ScannerError, TransientScanError
from scanq.scanners.net.dnscheck import DnsScanner
from tests.integration.scanners.servers import closed_port
from tests.reference.dns_lab import Record, txt

SCAN_ID = "0190c0de-0000-7000-8000-000000000004"


def soa(zone: str) -> Record:
    return (zone, "SOA", f"ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60")


GOOD = [
    soa("good.test"),
    ("good.test", "TXT", txt("v=spf1 ip4:192.0.2.0/24 include:_spf.mailer.test -all")),
    ("good.test", "TXT", txt("google-site-verification=abc")),
    ("good.test", "MX", "10 mx1.good.test."),
    ("_dmarc.good.test", "TXT", txt("v=DMARC1; p=reject; rua=mailto:d@good.test")),
    ("_spf.mailer.test", "TXT", txt("v=spf1 ip4:198.51.100.0/24 a mx ~all")),
]

# SPF with +all, DMARC p=none, no MX, no DS.
WEAK = [
    soa("weak.test"),
    ("weak.test", "TXT", txt("v=spf1 a mx +all")),
    ("_dmarc.weak.test", "TXT", txt("v=DMARC1; p=none")),
]

# Two SPF records.
DOUBLE = [
    soa("double.test"),
    ("double.test", "TXT", txt("v=spf1 -all")),
    ("double.test", "TXT", txt("v=spf1 mx -all")),
    ("double.test", "MX", "0 ."),
]


def chain(depth: int) -> list[Record]:
    """deep.test includes inc1, which includes inc2 …: 1 + 3 per level, less the last level's include."""
    records: list[Record] = [soa("deep.test"), ("deep.test", "TXT", txt("v=spf1 include:inc1.test -all"))]
    for level in range(1, depth + 1):
        nxt = f" include:inc{level + 1}.test" if level < depth else ""
        records.append((f"inc{level}.test", "TXT", txt(f"v=spf1 a mx{nxt} ?all")))
        records.append((f"inc{level}.test", "A", "192.0.2.1"))  # a and mx are not void lookups here
        records.append((f"inc{level}.test", "MX", "10 mx.inc.test."))
    return records


@pytest.fixture
def scan(make_context, lab_server):
    async def run(domain: str, records: list[Record], *, sign: tuple[str, ...] = ()):
        server = lab_server(records, sign=sign)
        scanner = DnsScanner(make_context(nameservers=(server.address,)))
        result = dict(await scanner.run(scan_id=SCAN_ID, target=domain, options={}))
        return result, {f["check_id"]: f for f in result["findings"]}, server

    return run


def statuses(findings: dict[str, Any]) -> dict[str, str]:
    return {check: f["status"] for check, f in findings.items()}


async def test_well_configured_domain_passes(scan):
    result, findings, server = await scan("Good.Test.", GOOD, sign=("good.test",))
    assert result["target"] == "good.test"
    assert result["addresses"] == []
    assert statuses(findings) == {
        "dns.spf.present": "pass",
        "dns.spf.single": "pass",
        "dns.spf.all_mechanism": "pass",
        "dns.spf.lookup_limit": "pass",
        "dns.spf.valid": "pass",
        "dns.dmarc.present": "pass",
        "dns.dmarc.policy": "pass",
        "dns.mx.present": "pass",
        "dns.dnssec.signed": "pass",
    }
    assert result["details"]["dns"]["spf_lookups"] == 3  # include + a + mx inside it
    assert result["details"]["dns"]["spf_void_lookups"] == 2  # _spf.mailer.test has neither A nor MX
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
        "dns.spf.valid": "pass",
        "dns.dmarc.present": "pass",
        "dns.dmarc.policy": "fail",
        "dns.mx.present": "fail",
        "dns.dnssec.signed": "fail",
    }
    assert findings["dns.spf.all_mechanism"]["severity"] == "high"
    assert findings["dns.spf.all_mechanism"]["evidence"]["actual"] == "+all"
    assert findings["dns.dmarc.policy"]["evidence"]["actual"] == "p=none"
    assert findings["dns.dnssec.signed"]["severity"] == "low"  # unsigned, not broken


async def test_missing_records(scan):
    _, findings, _ = await scan("bare.test", [soa("bare.test")])
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
    # A receiver would go round until the lookup limit: a loop is a permerror.
    assert findings["dns.spf.valid"]["status"] == "fail"
    assert (
        "include loop: loop.test -> a.loop.test -> b.loop.test -> a.loop.test"
        in (findings["dns.spf.valid"]["evidence"]["actual"])
    )


async def test_more_than_two_void_lookups_is_a_permerror(scan):
    # RFC 7208 section 4.6.4: a:, mx: and include: names that do not exist or hold nothing.
    two = [soa("void.test"), ("void.test", "TXT", txt("v=spf1 a:nx1.void.test mx:nx2.void.test -all"))]
    _, ok, _ = await scan("void.test", two)
    assert ok["dns.spf.valid"]["status"] == "pass"
    three = [
        soa("void.test"),
        ("void.test", "TXT", txt("v=spf1 a:nx1.void.test mx:nx2.void.test a:nx3.void.test -all")),
    ]
    result, over, _ = await scan("void.test", three)
    assert over["dns.spf.valid"]["status"] == "fail"
    assert over["dns.spf.valid"]["evidence"]["actual"] == "3 void lookups (at most 2)"
    assert result["details"]["dns"]["spf_void_lookups"] == 3


@pytest.mark.parametrize(
    ("included", "why"),
    [
        (
            [("inc.test", "TXT", txt("some-verification=1"))],
            "inc.test has no SPF record (permerror, RFC 7208 section 5.2)",
        ),
        ([], "inc.test does not exist (permerror, RFC 7208 section 5.2)"),
    ],
)
async def test_an_include_without_spf_is_a_permerror(scan, included, why):
    records = [soa("inc-of.test"), ("inc-of.test", "TXT", txt("v=spf1 include:inc.test -all")), *included]
    _, findings, _ = await scan("inc-of.test", records)
    assert findings["dns.spf.valid"]["status"] == "fail"
    assert findings["dns.spf.valid"]["evidence"]["actual"] == f"include:inc.test: {why}"


async def test_dmarc_of_a_subdomain_falls_back_to_the_organisational_domain(scan):
    records = [
        soa("org.test"),
        ("_dmarc.org.test", "TXT", txt("v=DMARC1; p=reject; sp=quarantine")),
        ("mail.org.test", "MX", "10 mx.org.test."),
    ]
    result, findings, _ = await scan("mail.org.test", records)
    assert findings["dns.dmarc.present"]["status"] == "pass"
    assert findings["dns.dmarc.policy"]["status"] == "pass"
    # sp= is the policy for subdomains (RFC 7489 section 6.3).
    assert (
        findings["dns.dmarc.policy"]["evidence"]["actual"] == "sp=quarantine (at org.test, the organisational domain)"
    )
    assert result["details"]["dns"]["dmarc_location"] == "org.test"


async def test_a_ds_without_a_valid_dnskey_is_bogus_not_signed(scan):
    records = [soa("bogus.test"), ("bogus.test", "DS", "12345 13 2 " + "00" * 32)]
    _, findings, _ = await scan("bogus.test", records)
    dnssec = findings["dns.dnssec.signed"]
    assert dnssec["status"] == "fail"
    assert dnssec["severity"] == "high"
    assert dnssec["title"].startswith("Zone's DNSSEC is broken (bogus)")
    assert dnssec["evidence"]["actual"] == "bogus: 1 DS record(s) at the parent but no DNSKEY record"


async def test_a_domain_that_does_not_exist_is_an_error(scan):
    with pytest.raises(ScannerError, match=r"nowhere\.test does not exist \(NXDOMAIN\)") as raised:
        await scan("nowhere.test", [soa("elsewhere.test")])
    assert not isinstance(raised.value, TransientScanError)  # permanent: the scan ends in Error, no retry


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
