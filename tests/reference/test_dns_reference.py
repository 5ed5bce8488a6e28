"""scanq's ``dns`` scanner against checkdmarc, case by case, on a local DNS zone made at test time.

The lab (``dns_lab``) serves every case of ``dns_cases.CASES`` on one name server of 127.0.0.1,
UDP and TCP, zones signed with keys made here. checkdmarc 6 runs in its own virtualenv
(``scripts/ensure-checkdmarc.sh``; it cannot share one with sslyze) through
``checkdmarc_probe.py``, asked of that name server alone; scanq's dns scanner asks the same. On
each verdict both must give what the case was built to show, but where the case names a
deliberate difference, which docs/scanners.md lists with its reason.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scanq.exceptions import ScannerError, TransientScanError
from scanq.scanners.net.dnscheck import DnsScanner
from tests.reference.conftest import reference_unavailable
from tests.reference.dns_cases import CASES, NONEXISTENT, VERDICTS, DnsCase, build_lab
from tests.reference.dns_lab import LabServer, serve

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).parents[2]
PROBE_PYTHON = ROOT / ".venv-checkdmarc" / "bin" / "python"
PROBE = Path(__file__).with_name("checkdmarc_probe.py")
DOCS = ROOT / "docs" / "scanners.md"
SCAN_ID = "0190c0de-0000-7000-8000-00000000cc01"
PROBE_TIMEOUT_S = 100


@pytest.fixture(scope="module")
def lab() -> Iterator[LabServer]:
    with serve(lab=build_lab(CASES)) as server:
        yield server


@pytest.fixture(scope="module")
def checkdmarc(lab: LabServer) -> dict[str, Any]:
    """checkdmarc's results for every case's domain (and the one that does not exist), asked once."""
    if not PROBE_PYTHON.exists():
        reference_unavailable("checkdmarc is not installed: run scripts/ensure-checkdmarc.sh")
    request = {"host": lab.host, "port": lab.port, "domains": [case.domain for case in CASES] + [NONEXISTENT]}
    done = subprocess.run(
        [str(PROBE_PYTHON), str(PROBE)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results: dict[str, Any] = json.loads(done.stdout)
    return results


def checkdmarc_verdicts(case: DnsCase, result: dict[str, Any]) -> dict[str, bool | None]:
    """checkdmarc's results read as the case's verdicts (None: does not apply)."""
    spf, dmarc = result["spf"], result["dmarc"]
    parsed_all = (spf.get("parsed") or {}).get("all")
    policy = None
    if dmarc.get("valid"):
        tags = dmarc["tags"]
        # checkdmarc fills sp= with p= when absent; sp is the policy of a subdomain (RFC 7489 section 6.3).
        policy = tags["sp" if dmarc["location"] != case.domain else "p"]["value"]
    return {
        "spf": bool(spf.get("valid")),
        "all": None if parsed_all is None else parsed_all in ("fail", "softfail"),
        "dmarc": bool(dmarc.get("valid")),
        "policy": policy in ("quarantine", "reject"),
        "dnssec": bool(result["dnssec"]),
    }


def scanq_verdicts(findings: dict[str, dict[str, Any]]) -> dict[str, bool | None]:
    def passed(*checks: str) -> bool:
        return all(check in findings and findings[check]["status"] == "pass" for check in checks)

    return {
        "spf": passed("dns.spf.present", "dns.spf.single", "dns.spf.lookup_limit", "dns.spf.valid"),
        "all": passed("dns.spf.all_mechanism") if "dns.spf.all_mechanism" in findings else None,
        "dmarc": passed("dns.dmarc.present"),
        "policy": passed("dns.dmarc.policy"),
        "dnssec": passed("dns.dnssec.signed"),
    }


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_dns_agrees_with_checkdmarc(case, lab, checkdmarc, loopback_context):
    scanner = DnsScanner(loopback_context(nameservers=(lab.address,)))
    result = await scanner.run(scan_id=SCAN_ID, target=case.domain, options={})
    ours = scanq_verdicts({f["check_id"]: f for f in result["findings"]})
    theirs = checkdmarc_verdicts(case, checkdmarc[case.domain])
    problems = []
    for verdict in VERDICTS:
        if verdict in case.na:
            # checkdmarc read no record to judge; scanq may still report the qualifier of the one it saw.
            if theirs[verdict] is not None:
                problems.append(f"{verdict}: checkdmarc judged it ({theirs[verdict]}), the case says n/a")
            continue
        expected = case.expected(verdict)
        reference = not expected if verdict in case.differs else expected
        if ours[verdict] != expected:
            problems.append(f"{verdict}: scanq {ours[verdict]}, the case shows {expected}")
        if theirs[verdict] != reference:
            problems.append(f"{verdict}: checkdmarc {theirs[verdict]}, expected {reference}")
    if checkdmarc[case.domain]["dmarc"].get("valid"):
        location = result["details"]["dns"].get("dmarc_location", case.domain)
        if location != checkdmarc[case.domain]["dmarc"]["location"]:
            problems.append(f"DMARC location: scanq {location}, checkdmarc {checkdmarc[case.domain]['dmarc']}")
    assert problems == [], f"{case.id} ({case.rule}): checkdmarc said {checkdmarc[case.domain]}"


async def test_a_domain_that_does_not_exist(lab, checkdmarc, loopback_context):
    # checkdmarc: SPF "The domain does not exist."; scanq: the scan ends in Error, nothing is graded.
    assert "does not exist" in checkdmarc[NONEXISTENT]["spf"]["error"]
    assert checkdmarc[NONEXISTENT]["dnssec"] is False
    scanner = DnsScanner(loopback_context(nameservers=(lab.address,)))
    with pytest.raises(ScannerError, match="does not exist") as raised:
        await scanner.run(scan_id=SCAN_ID, target=NONEXISTENT, options={})
    assert not isinstance(raised.value, TransientScanError)


def test_every_deliberate_difference_is_documented():
    docs = DOCS.read_text()
    differences = {difference for case in CASES for difference in case.differs.values()}
    for difference in sorted(differences):
        assert f"`{difference}`" in docs, f"{difference} is not in docs/scanners.md"
    cases = len(CASES) + 1  # and the domain that does not exist
    comparisons = sum(len(VERDICTS) - len(case.na) for case in CASES) + 1
    different = sum(len(case.differs) for case in CASES)
    summary = (
        f"{cases} cases, {comparisons} comparisons with checkdmarc's verdicts: "
        f"{comparisons - different} agree, deliberate differences: {different}"
    )
    assert summary in " ".join(docs.split()), f"docs/scanners.md should say: {summary}"
