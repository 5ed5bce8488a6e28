"""scanq's ``http`` scanner against the MDN HTTP Observatory's rules, case by case, on lab sites.

Each case of ``http_lab.CASES`` is served on 127.0.0.1 (HTTPS with a certificate of a lab CA,
which the cases take as trusted, as a public CA would be; plain HTTP redirecting as the case
says) and scanned by the http scanner. For each of the six Observatory tests with a counterpart
(``http_lab.COUNTERPARTS``), scanq's checks must all pass exactly when the Observatory's test
passes, unless the case names a deliberate difference, which docs/scanners.md lists with its reason.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme

from scanq.scanners.net.web import CHECKS, HttpScanner
from tests.integration.scanners.servers import HttpReply, Servers, closed_port
from tests.reference.dns_lab import LabServer, serve
from tests.reference.http_lab import APEX, CASES, COUNTERPARTS, HOST, NAMES, OTHER, HttpCase

SCAN_ID = "0190c0de-0000-7000-8000-00000000bb01"
DOCS = Path(__file__).parents[2] / "docs" / "scanners.md"


@pytest.fixture(scope="module")
def lab_dns() -> Iterator[LabServer]:
    """The lab's names, all at 127.0.0.1."""
    with serve([(name, "A", "127.0.0.1") for name in NAMES]) as server:
        yield server


@pytest.fixture(scope="module")
def tls_contexts() -> dict[bool, ssl.SSLContext]:
    """Server contexts: the lab CA's certificate (trusted: False key), or a stranger's (True key)."""
    contexts = {}
    for untrusted in (False, True):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        trustme.CA().issue_cert(*NAMES).configure_cert(ctx)
        contexts[untrusted] = ctx
    return contexts


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    running = Servers()
    yield running
    await running.close()


def redirect(location: str) -> HttpReply:
    return HttpReply(status=301, headers=[("Location", location)], body=b"")


async def build_site(case: HttpCase, servers: Servers, tls: ssl.SSLContext) -> dict[str, int]:
    """Start the case's servers; the http scanner's port options."""
    headers = [*case.headers.items(), *(("Set-Cookie", cookie) for cookie in case.cookies)]
    page = HttpReply(headers=headers, body=case.body.encode())
    https_port = await servers.http(page, tls=tls) if case.https else closed_port()
    if case.plain == "closed":
        http_port = closed_port()
    elif case.plain == "serve":
        http_port = await servers.http(page)
    elif case.plain == "same-host":
        http_port = await servers.http(redirect(f"https://{case.target}:{https_port}/"))
    elif case.plain == "off-host":
        http_port = await servers.http(redirect(f"https://{HOST}:{https_port}/"))
    elif case.plain == "via-plain":
        second = await servers.http(redirect(f"https://{HOST}:{https_port}/"))
        http_port = await servers.http(redirect(f"http://{HOST}:{second}/"))
    elif case.plain == "to-plain":
        second = await servers.http(page)
        http_port = await servers.http(redirect(f"http://{OTHER}:{second}/"))
    else:
        raise AssertionError(f"unknown plain-HTTP behaviour {case.plain!r}")
    return {"http_port": http_port, "https_port": https_port}


def compare(case: HttpCase, statuses: dict[str, str]) -> list[str]:
    """Every disagreement of scanq with the Observatory (beyond the case's deliberate differences)."""
    problems = []
    for test, checks in COUNTERPARTS.items():
        observatory = case.observatory_passes(test)
        expected = not observatory if test in case.differences else observatory
        ours = all(statuses[check] == "pass" for check in checks)
        if ours != expected:
            theirs = f"{case.results[test]} ({'pass' if observatory else 'fail'})"
            mine = ", ".join(f"{check}={statuses[check]}" for check in checks)
            problems.append(f"{test}: Observatory {theirs}; scanq {mine}; difference: {case.differences.get(test)}")
    return problems


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_http_agrees_with_the_observatory(case, servers, tls_contexts, lab_dns, loopback_context):
    options = await build_site(case, servers, tls_contexts[case.untrusted])
    scanner = HttpScanner(loopback_context(nameservers=(lab_dns.address,)))
    result = await scanner.run(scan_id=SCAN_ID, target=case.target, options=options)
    statuses = {f["check_id"]: f["status"] for f in result["findings"]}
    assert set(statuses) == {check.check_id for check in CHECKS}, result["plugins"]
    assert compare(case, statuses) == [], f"{case.id} ({case.rule})"


def test_every_deliberate_difference_is_documented():
    docs = DOCS.read_text()
    differences = {difference for case in CASES for difference in case.differences.values()}
    assert differences, "the lab shows the differences it documents"
    for difference in sorted(differences):
        assert f"`{difference}`" in docs, f"{difference} is not in docs/scanners.md"
    comparisons = len(CASES) * len(COUNTERPARTS)
    different = sum(len(case.differences) for case in CASES)
    summary = (
        f"{len(CASES)} cases, {comparisons} comparisons with the Observatory's verdicts: "
        f"{comparisons - different} agree, deliberate differences: {different}"
    )
    assert summary in " ".join(docs.split()), f"docs/scanners.md should say: {summary}"


def test_the_lab_covers_each_observatory_test_both_ways():
    seen: dict[str, set[bool]] = {}
    for case in CASES:
        for test in COUNTERPARTS:
            seen.setdefault(test, set()).add(case.observatory_passes(test))
    assert seen == {test: {True, False} for test in COUNTERPARTS}
    assert {case.target for case in CASES} == {HOST, APEX}
