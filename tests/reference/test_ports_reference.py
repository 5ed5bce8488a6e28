"""scanq's ``ports`` scanner against ``nmap -sV``, case by case, on real and faithful protocol servers.

Every case is one port of the lab (``ports_lab``): scanq must name the
service nmap names (in nmap's own words, ``NMAP_NAMES`` maps the few that
differ), agree on TLS, agree on the version where both read one, and grade
the port by what answered. A deliberate difference is written in the case,
with its reason, and listed in docs/scanners.md ("Agreement with reference tools").
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scanq.scanners.net.ports import PortsScanner
from tests.reference import ports_lab as lab
from tests.reference.conftest import reference_unavailable
from tests.reference.nmap_runner import NmapRun, NmapService, nmap_path

pytestmark = pytest.mark.timeout(300)

MACHINE = "127.0.0.1"
SCAN_ID = "0190c0de-0000-7000-8000-00000000bb01"
# scanq's service name -> nmap's, where they differ (nmap names Elasticsearch's REST API "http").
NMAP_NAMES = {"elasticsearch": {"http"}, "mqtt": {"mqtt", "mosquitto"}}


@dataclass(frozen=True)
class Case:
    """One port and what scanq must find there: its service and how bad it is to expose it."""

    id: str
    host: str
    port: int
    service: str | None
    severity: str
    state: str = "open"
    tls: bool = False
    product: str | None = None  # a word nmap's product (or name) must contain
    difference: str = ""  # a deliberate difference from nmap, and why
    versions_differ: str = ""  # why the versions the two read may differ


CASES = [
    # Real servers on this machine (127.0.0.1) and started by the lab (127.0.0.2-3).
    Case("redis-no-auth", MACHINE, 6379, "redis", "critical"),
    Case("redis-requirepass", lab.AUTH, 6379, "redis", "high"),
    Case("mariadb", MACHINE, 3306, "mysql", "high", product="MySQL"),
    Case("postgresql", MACHINE, 5432, "postgresql", "by-access", product="PostgreSQL"),
    Case("rabbitmq-amqp", MACHINE, 5672, "amqp", "medium", product="RabbitMQ"),
    Case("mosquitto-anonymous", MACHINE, 1883, "mqtt", "high", product="mosquitto"),
    Case("mosquitto-no-anonymous", lab.AUTH, 1883, "mqtt", "medium"),
    Case(
        "mongodb-secantusdb",
        lab.FAKES,
        27017,
        "mongodb",
        "critical",
        product="MongoDB",
        versions_differ="SecantusDB answers nmap's serverStatus with its own version and buildInfo (scanq's "
        "probe) with the MongoDB version it emulates",
    ),
    Case(
        "nats",
        MACHINE,
        4222,
        "nats",
        "high",
        difference="nmap 7.93 has no NATS signature: it prints the port table's guess (vrml-multi-use); scanq reads "
        "NATS's INFO greeting",
    ),
    # Faithful speakers (127.0.0.2, 127.0.0.4).
    Case("elasticsearch-no-auth", lab.FAKES, 9200, "elasticsearch", "critical", product="Elasticsearch"),
    Case("memcached", lab.FAKES, 11211, "memcached", "critical", product="Memcached"),
    Case("telnet", lab.FAKES, 23, "telnet", "critical", product="telnetd"),
    Case("ssh", lab.FAKES, 22, "ssh", "low", product="OpenSSH"),
    Case("ftp", lab.FAKES, 21, "ftp", "high", product="vsftpd"),
    Case("smtp", lab.FAKES, 25, "smtp", "low", product="Postfix"),
    Case("vnc", lab.FAKES, 5900, "vnc", "critical", product="VNC"),
    Case("http-nginx", lab.FAKES, 80, "http", "low", product="nginx"),
    Case("https-appliance-port", lab.TLS_ONLY, 8443, "http", "medium", tls=True),
    Case("closed", lab.FAKES, 9, None, "low", state="closed"),
]


@dataclass
class Lab:
    """The running lab: which cases could not be set up here (and why), and the nmap runs."""

    missing: dict[str, str] = field(default_factory=dict)
    nmap: dict[str, NmapRun] = field(default_factory=dict)
    nmap_missing: str = ""


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


FAKE_SPEAKERS: list[tuple[str, Callable[[Path], Any], str, int]] = [
    ("telnet", lambda _: lab.telnet, lab.FAKES, 23),
    ("ssh", lambda _: lab.ssh, lab.FAKES, 22),
    ("ftp", lambda _: lab.ftp, lab.FAKES, 21),
    ("smtp", lambda _: lab.smtp, lab.FAKES, 25),
    ("vnc", lambda _: lab.vnc, lab.FAKES, 5900),
    ("memcached", lambda _: lab.memcached, lab.FAKES, 11211),
    ("elasticsearch-no-auth", lambda _: lab.elasticsearch, lab.FAKES, 9200),
    ("http-nginx", lambda _: lab.web, lab.FAKES, 80),
]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    directory = tmp_path_factory.mktemp("ports-lab")
    state = Lab()
    speakers = lab.FakeSpeakers()
    speakers.start()
    with contextlib.ExitStack() as stack:
        stack.callback(speakers.close)
        for case_id, handler, host, port in FAKE_SPEAKERS:
            try:
                speakers.serve(handler(directory), host, port)
            except OSError as exc:  # ports below 1024 need root
                state.missing[case_id] = f"cannot listen on {host}:{port}: {exc}"
        try:
            speakers.serve(lab.web, lab.TLS_ONLY, 8443, tls=lab.tls_server(directory))
        except OSError as exc:
            state.missing["https-appliance-port"] = str(exc)
        _start_real(stack, state, directory)
        for case in CASES:
            if case.id in state.missing:
                continue
            if case.host == MACHINE and not _listening(case.host, case.port):
                state.missing[case.id] = f"this machine has no service on {case.host}:{case.port}"
        nmap = nmap_path()
        if nmap is None:
            state.nmap_missing = "nmap is not installed (scripts/ensure-nmap.sh installs it)"
        else:
            # Every nmap run starts now, in parallel: version detection waits on silent services.
            state.nmap = {c.id: NmapRun(nmap, c.host, c.port) for c in CASES if c.id not in state.missing}
            for run in state.nmap.values():
                stack.callback(run.stop)
        yield state


def _start_real(stack: contextlib.ExitStack, state: Lab, directory: Path) -> None:
    starts: list[tuple[str, str | None, Callable[[], list[str]], str, int]] = [
        ("redis-requirepass", shutil.which("redis-server"), lambda: lab.redis_with_password(directory), lab.AUTH, 6379),
        (
            "mosquitto-no-anonymous",
            shutil.which("mosquitto") or (shutil.which("/usr/sbin/mosquitto")),
            lambda: lab.mosquitto_with_password(directory),
            lab.AUTH,
            1883,
        ),
    ]
    secantus_dir = directory / "secantus"
    secantus_dir.mkdir()
    has_secantus = importlib.util.find_spec("secantus") is not None
    starts.append(
        (
            "mongodb-secantusdb",
            "secantus" if has_secantus else None,
            lambda: lab.secantus(secantus_dir),
            lab.FAKES,
            27017,
        )
    )
    for case_id, binary, command, host, port in starts:
        if binary is None:
            state.missing[case_id] = f"{case_id}: its server is not installed"
            continue
        try:
            stack.enter_context(lab.real_server(command(), host, port, directory, case_id))
        except (OSError, RuntimeError) as exc:
            state.missing[case_id] = str(exc)


def _agree_on_name(ours: str | None, theirs: NmapService) -> bool:
    names = NMAP_NAMES.get(ours or "", {ours})
    name = (theirs.name or "").split(" ", 1)[0]  # nmap 7.93 names Mosquitto "mosquitto version 2.0.11"
    if theirs.tunnel == "ssl" and name in ("https", "https-alt"):
        name = "http"  # nmap's name for HTTP inside TLS on these ports
    return name in names


def _versions_agree(ours: str | None, theirs: NmapService) -> bool:
    """Where both read a version, one holds the other's (nmap: "9.2p1 Debian 2+deb12u3", scanq: "9.2p1")."""
    theirs_text = " ".join(t for t in (theirs.version, theirs.name) if t)
    if not ours or not theirs.version:
        return True
    return ours in theirs_text


def test_every_case_is_distinct():
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({(c.host, c.port) for c in CASES}) == len(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
async def test_ports_agree_with_nmap(case: Case, running: Lab, loopback_context):
    if case.id in running.missing:
        reference_unavailable(running.missing[case.id])
    if running.nmap_missing:
        reference_unavailable(running.nmap_missing)
    scanner = PortsScanner(loopback_context())
    result = await scanner.run(scan_id=SCAN_ID, target=case.host, options={"ports": [case.port]})
    (finding,) = result["findings"]
    details = result["details"]["ports"]
    service = details["services"].get(str(case.port), {})
    theirs = running.nmap[case.id].result()

    assert theirs.state == case.state
    assert case.port in details[case.state]
    if case.state != "open":
        assert finding["status"] == "pass"
        return
    # What scanq found, and how it graded it.
    assert service.get("service") == case.service, (service, details["banners"])
    assert service["tls"] is case.tls
    expected = case.severity
    if expected == "by-access":  # PostgreSQL's grade depends on this machine's pg_hba.conf
        assert service["access"] != "unknown"
        expected = "critical" if service["access"] == "no authentication" else "high"
    assert (finding["status"], finding["severity"]) == ("fail", expected)
    assert "\ufffd" not in finding["evidence"]["actual"]  # no binary garbage
    # Agreement with nmap.
    if case.difference:
        assert not theirs.is_identified, f"nmap now identifies {case.id}: {theirs}; update the case and the docs"
        return
    assert theirs.is_identified, theirs
    assert _agree_on_name(case.service, theirs), (case.service, theirs)
    assert (theirs.tunnel == "ssl") is case.tls
    if case.product:
        assert case.product.lower() in f"{theirs.product} {theirs.name}".lower(), theirs
    if not case.versions_differ:
        assert _versions_agree(service.get("version"), theirs), (service, theirs)
