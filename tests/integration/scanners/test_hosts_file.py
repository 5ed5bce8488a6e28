"""Names the operator listed in a hosts file resolve in the scanners, the same at submit time and at run time.

The scanners look names up as absolute names (no search domain), which glibc's
hosts-file lookup never matches, so a host known only through ``/etc/hosts``
could not be scanned. The real ``/etc/hosts`` is never touched: each test writes
its own file and points ``--scanner-hosts-file`` at it. Every lookup of a name
the file does not list goes to the local test DNS server, which has no address
for any of these names (so they cannot resolve by any other way); it only holds
the public-looking name's mail records, for the ``dns`` plugin.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from scanq.config import PluginSettings
from scanq.exceptions import ScannerError, TargetRefused, ValidationError
from scanq.scanners.net.ports import PortsScanner
from scanq.scanners.net.settings import NetSettings
from scanq.scanners.net.surface import SurfaceScanner
from scanq.scanners.net.tls import TlsScanner
from scanq.scanners.settings import ScannerContext
from tests.integration.apps import services
from tests.integration.scanners.servers import HttpReply, Servers, closed_port, mx, soa, txt

PUBLIC_NAME = "scanme.corp.example"  # a public-looking name that only the hosts file knows
INTERNAL_NAME = "intranet.internal"  # refused by the name rules unless the operator listed it
PRIVATE_NAME = "db.corp.example"  # listed at a private address nobody allow-listed
HOSTS = f"""
# written by the test; the real /etc/hosts is never read here
127.0.0.1   Scanme.Corp.Example  {INTERNAL_NAME}   # aliases and comments as in hosts(5)
10.9.9.9    {PRIVATE_NAME}
not-an-ip   broken.corp.example
"""
SCAN_ID = "0190c0de-0000-7000-8000-000000000013"

MakeContext = Callable[..., ScannerContext]


@pytest.fixture
def hosts_file(tmp_path: Path) -> Path:
    path = tmp_path / "hosts"
    path.write_text(HOSTS)
    return path


@pytest.fixture
async def context(make_context: MakeContext, dns_server: Callable[..., Any], hosts_file: Path) -> MakeContext:
    """Loopback allow-listed, the test CA trusted, the test hosts file, and a DNS server with no test address."""
    records = [
        (PUBLIC_NAME, "SOA", soa(PUBLIC_NAME)),
        (PUBLIC_NAME, "TXT", txt("v=spf1 -all")),
        (PUBLIC_NAME, "MX", mx(f"mx.{PUBLIC_NAME}")),
    ]
    _, nameserver = await dns_server(records)

    def make(**overrides: Any) -> ScannerContext:
        return make_context(**{"nameservers": (nameserver,), "hosts_file": str(hosts_file), **overrides})

    return make


@pytest.fixture
async def https_port(ca: trustme.CA, servers: Servers) -> int:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(PUBLIC_NAME, INTERNAL_NAME).configure_cert(ctx)
    return await servers.http(HttpReply(), tls=ctx)


async def test_a_name_only_in_the_hosts_file_is_checked_at_submit_and_scanned_at_run_time(
    context: MakeContext, https_port: int
) -> None:
    scanner = TlsScanner(context())

    target = await scanner.validate(target="Scanme.Corp.Example.", options={"port": https_port})
    result = await scanner.run(scan_id=SCAN_ID, target=target, options={"port": https_port})

    assert target == PUBLIC_NAME
    assert result["addresses"] == ["127.0.0.1"]
    assert result["plugins"] == {"tls": "ok"}


async def test_an_internal_name_the_operator_listed_passes_the_name_rules(context: MakeContext) -> None:
    port = closed_port()
    scanner = PortsScanner(context())

    assert await scanner.validate(target=INTERNAL_NAME, options={"ports": [port]}) == INTERNAL_NAME
    result = await scanner.run(scan_id=SCAN_ID, target=INTERNAL_NAME, options={"ports": [port]})
    assert result["addresses"] == ["127.0.0.1"]
    # Not listed: the name rules refuse it as before.
    with pytest.raises(TargetRefused, match="internal networks"):
        await scanner.validate(target="other.internal", options={"ports": [port]})
    # Without a hosts file, the listed name is refused too.
    with pytest.raises(TargetRefused, match="internal networks"):
        await PortsScanner(context(hosts_file="")).validate(target=INTERNAL_NAME, options={"ports": [port]})


async def test_addresses_from_the_hosts_file_still_pass_the_address_rules(context: MakeContext) -> None:
    scanner = PortsScanner(context())

    with pytest.raises(TargetRefused, match=r"10\.9\.9\.9"):
        await scanner.validate(target=PRIVATE_NAME, options={"ports": [443]})
    with pytest.raises(ScannerError, match="refused address"):
        await scanner.run(scan_id=SCAN_ID, target=PRIVATE_NAME, options={"ports": [443]})
    with pytest.raises(ValidationError, match="loopback"):
        await PortsScanner(context(target_allowlist=())).validate(target=PUBLIC_NAME, options={"ports": [443]})


async def test_a_change_to_the_hosts_file_applies_to_the_next_lookup(context: MakeContext, hosts_file: Path) -> None:
    scanner = PortsScanner(context())
    await scanner.validate(target=PUBLIC_NAME, options={"ports": [443]})

    hosts_file.write_text(f"10.9.9.9 {PUBLIC_NAME} also.listed.example\n")

    with pytest.raises(TargetRefused, match=r"10\.9\.9\.9"):
        await scanner.validate(target=PUBLIC_NAME, options={"ports": [443]})


async def test_surface_runs_its_network_plugins_on_a_hosts_file_name(context: MakeContext, https_port: int) -> None:
    options = {"plugins": ["tls", "http", "dns"], "tls": {"port": https_port}, "http": {"https_port": https_port}}
    scanner = SurfaceScanner(context())

    await scanner.validate(target=PUBLIC_NAME, options=options)
    public = await scanner.run(scan_id=SCAN_ID, target=PUBLIC_NAME, options=options)
    internal = await scanner.run(scan_id=SCAN_ID, target=INTERNAL_NAME, options=options)

    assert public["plugins"]["tls"] == "ok"
    assert public["plugins"]["http"] == "ok"
    assert public["addresses"] == ["127.0.0.1"]
    assert public["plugins"]["dns"] == "ok"  # a public-looking name: its DNS records are still checked
    assert internal["plugins"]["tls"] == "ok"
    assert internal["plugins"]["dns"].startswith("skipped: intranet.internal is an internal name from the hosts file")


async def test_surface_refuses_at_submit_a_target_none_of_its_chosen_plugins_can_take(context: MakeContext) -> None:
    scanner = SurfaceScanner(context())

    with pytest.raises(ValidationError, match="no chosen surface plugin can scan"):
        await scanner.validate(target=INTERNAL_NAME, options={"plugins": ["dns"]})
    with pytest.raises(ValidationError, match="no chosen surface plugin can scan"):
        await scanner.validate(target="127.0.0.1", options={"plugins": ["dns"]})


async def test_the_hosts_file_setting_reaches_the_scanners_through_ingest(
    sqlite_url: str, hosts_file: Path, dns_server: Callable[..., Any]
) -> None:
    _, nameserver = await dns_server([])
    net = NetSettings(target_allowlist=("127.0.0.0/8",), nameservers=(nameserver,), hosts_file=str(hosts_file))
    async with services(sqlite_url, plugins=PluginSettings(net)) as api:
        listed = await api.ingest.post("/scans", json={"target": PUBLIC_NAME, "scanner": "ports"})
        unlisted = await api.ingest.post("/scans", json={"target": "missing.corp.example", "scanner": "ports"})

    assert listed.status_code == 202, listed.text
    assert unlisted.status_code == 422, unlisted.text
