"""scanq's ``tls`` scanner against sslyze, case by case, on lab servers with certificates made at test time.

Each case is a server built to show one thing (a good chain, one defect, or a
protocol range). Both tools scan it at the same time; their verdicts
(``tls_verdicts.Verdict``) must be equal, and equal to what the case was
built to show. A deliberate difference is written in the case, with its
reason, and listed in docs/scanners.md ("Agreement with reference tools").
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scanq.scanners.net.tls import TlsScanner
from tests.integration.scanners.servers import a, start_dns
from tests.reference.conftest import reference_unavailable
from tests.reference.tls_lab import ServerConfig, TlsLab, make_ca, make_leaf, tls_lab
from tests.reference.tls_verdicts import (
    DATES,
    HOSTNAME,
    NO_PATH,
    PROFILE_LINT,
    SIGNATURE,
    VERSIONS,
    Verdict,
    scanq_verdict,
    sslyze_verdict,
)

pytestmark = [
    # sslyze reads its bundled trust stores, where a few roots make cryptography warn.
    pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning"),
    pytest.mark.timeout(120),
]

HOST = "www.shop.test"
DEEP = "deep.www.shop.test"
SCAN_ID = "0190c0de-0000-7000-8000-00000000aa01"
V10, V11, V12, V13 = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
ALL = frozenset(VERSIONS)
MODERN = frozenset({"TLSv1.2", "TLSv1.3"})


@dataclass(frozen=True)
class Case:
    """One lab server and what it is built to show.

    ``failures`` is what both tools must report; ``sslyze_failures`` differs from it only for a
    deliberate difference, whose reason is ``difference`` (and docs/scanners.md).
    """

    id: str
    config: Callable[[TlsLab], ServerConfig]
    failures: frozenset[str] = frozenset()
    accepted: frozenset[str] = ALL
    target: str = HOST
    weak_key: bool = False
    weak_signature: bool = False
    sslyze_failures: frozenset[str] | None = None
    difference: str = ""


def chain(lab: TlsLab, **leaf: object) -> ServerConfig:
    """A leaf from the lab intermediate, sent with the intermediate."""
    return ServerConfig(make_leaf(lab.intermediate, [HOST], **leaf), (lab.intermediate.cert,))  # type: ignore[arg-type]


def pinned(lab: TlsLab, low: ssl.TLSVersion, high: ssl.TLSVersion, *, self_signed: bool = False) -> ServerConfig:
    leaf = make_leaf(None, [HOST]) if self_signed else make_leaf(lab.intermediate, [HOST])
    extra = () if self_signed else (lab.intermediate.cert,)
    return ServerConfig(leaf, extra, min_version=low, max_version=high)


def stranger_chain(lab: TlsLab) -> ServerConfig:
    root = make_ca("stranger root")
    intermediate = make_ca("stranger intermediate", issuer=root)
    return ServerConfig(make_leaf(intermediate, [HOST]), (intermediate.cert,))


def sha1_intermediate(lab: TlsLab) -> ServerConfig:
    intermediate = make_ca("scanq lab sha1 intermediate", issuer=lab.root, sha1=True)
    return ServerConfig(make_leaf(intermediate, [HOST]), (intermediate.cert,))


CASES = [
    Case("good-ecdsa-with-intermediate", lambda lab: chain(lab)),
    Case("good-rsa2048-with-intermediate", lambda lab: chain(lab, rsa_bits=2048)),
    Case("good-leaf-from-root", lambda lab: ServerConfig(make_leaf(lab.root, [HOST]))),
    Case(
        "good-wildcard",
        lambda lab: ServerConfig(make_leaf(lab.intermediate, ["*.shop.test"]), (lab.intermediate.cert,)),
    ),
    Case(
        "wildcard-one-label-only",
        lambda lab: ServerConfig(make_leaf(lab.intermediate, ["*.shop.test"]), (lab.intermediate.cert,)),
        failures=frozenset({HOSTNAME}),
        target=DEEP,
    ),
    Case("expiring-in-10-days", lambda lab: chain(lab, valid_days=(-80, 10))),
    Case("expired", lambda lab: chain(lab, valid_days=(-90, -1)), failures=frozenset({DATES})),
    Case("not-yet-valid", lambda lab: chain(lab, valid_days=(5, 400)), failures=frozenset({DATES})),
    Case("self-signed", lambda lab: ServerConfig(make_leaf(None, [HOST])), failures=frozenset({NO_PATH})),
    Case(
        "wrong-name",
        lambda lab: ServerConfig(make_leaf(lab.intermediate, ["other.example"]), (lab.intermediate.cert,)),
        failures=frozenset({HOSTNAME}),
    ),
    Case(
        "missing-intermediate",
        lambda lab: ServerConfig(make_leaf(lab.intermediate, [HOST])),
        failures=frozenset({NO_PATH}),
    ),
    Case("unknown-root", stranger_chain, failures=frozenset({NO_PATH})),
    Case(
        "sha1-leaf-from-trusted-ca",
        lambda lab: chain(lab, rsa_bits=2048, sha1=True),
        failures=frozenset({SIGNATURE}),
        weak_signature=True,
    ),
    Case("sha1-intermediate", sha1_intermediate, failures=frozenset({SIGNATURE})),
    Case("rsa1024-leaf", lambda lab: chain(lab, rsa_bits=1024), weak_key=True),
    Case("tls10-only", lambda lab: pinned(lab, V10, V10), accepted=frozenset({"TLSv1"})),
    Case("tls11-only", lambda lab: pinned(lab, V11, V11), accepted=frozenset({"TLSv1.1"})),
    Case(
        "tls11-only-self-signed",
        lambda lab: pinned(lab, V11, V11, self_signed=True),
        failures=frozenset({NO_PATH}),
        accepted=frozenset({"TLSv1.1"}),
    ),
    Case("tls12-only", lambda lab: pinned(lab, V12, V12), accepted=frozenset({"TLSv1.2"})),
    Case("tls13-only", lambda lab: pinned(lab, V13, V13), accepted=frozenset({"TLSv1.3"})),
    Case("modern-only", lambda lab: pinned(lab, V12, V13), accepted=MODERN),
    Case(
        "ca-b-forum-lints-only",
        lambda lab: lab.trustme_chain(HOST),
        sslyze_failures=frozenset({PROFILE_LINT}),
        difference="trustme marks the SAN and the intermediate's EKU critical; CA/B Forum lints that browsers "
        "do not enforce, so scanq (browser rules) trusts the chain and sslyze (cryptography's CA/B profile) does not",
    ),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsLab]:
    with tls_lab(tmp_path_factory.mktemp("tls-lab")) as running:
        yield running


@pytest.fixture
async def nameserver() -> object:
    _, transport, address = await start_dns([(HOST, "A", a("127.0.0.1")), (DEEP, "A", a("127.0.0.1"))])
    yield address
    transport.close()


def test_every_case_is_distinct_and_differences_are_explained():
    assert len({c.id for c in CASES}) == len(CASES)
    for case in CASES:
        assert (case.sslyze_failures is not None) == bool(case.difference), case.id


@pytest.mark.slow  # sslyze runs every plugin on each case: about a second of handshakes a case
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_tls_agrees_with_sslyze(case: Case, lab: TlsLab, nameserver: str, loopback_context, tmp_path: Path):
    if importlib.util.find_spec("sslyze") is None:
        reference_unavailable("sslyze is not installed (it is in the dev extra)")
    port = lab.serve(case.config(lab), case.id)
    scanner = TlsScanner(loopback_context(nameservers=(nameserver,), ca_file=str(lab.ca_file)))
    result, reference = await asyncio.gather(
        scanner.run(scan_id=SCAN_ID, target=case.target, options={"port": port}),
        asyncio.to_thread(sslyze_verdict, case.target, port, lab.ca_file),
    )
    ours = scanq_verdict(dict(result))
    built = Verdict(
        accepted=case.accepted,
        chain=reference.chain,
        failures=case.failures,
        weak_key=case.weak_key,
        weak_signature=case.weak_signature,
    )
    assert ours == built
    expected_reference = dataclasses.replace(built, failures=case.sslyze_failures or case.failures)
    assert reference == expected_reference
