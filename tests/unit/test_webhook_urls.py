"""Webhook URLs under the SSRF rules: refused at registration, and at delivery when DNS changed in between.

Names resolve through a hosts file the test writes (the network library's
``--scanner-hosts-file``), so no test asks a real resolver.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from scanq.config import PluginSettings, Settings
from scanq.exceptions import ValidationError
from scanq.scanners.net.settings import NetSettings
from scanq.webhooks.sender import Sender
from scanq.webhooks.urls import EndpointRefused, EndpointRules, check_endpoint_url, pin_endpoint

NAME = "hooks.example.com"
PUBLIC = "93.184.215.14"


def write_hosts(path: Path, text: str) -> None:
    """Replace the file (a new inode), as an operator's tool would: the next lookup reads it again."""
    fresh = path.with_suffix(".new")
    fresh.write_text(text)
    os.replace(fresh, path)


@pytest.fixture
def hosts(tmp_path: Path) -> Path:
    path = tmp_path / "hosts"
    write_hosts(path, f"{PUBLIC} {NAME}\n")
    return path


def make_settings(hosts: Path, *allowlist: str) -> Settings:
    return Settings(
        webhook_allowlist=allowlist,
        webhook_connect_timeout_seconds=1.0,
        plugins=PluginSettings(NetSettings(hosts_file=str(hosts))),
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://127.1/hook", "non-canonical IP"),
        ("https://2130706433/hook", "non-canonical IP"),
        ("https://localhost/hook", "loopback"),
        ("https://api.localhost/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://172.16.0.1/hook", "private"),
        ("https://192.168.1.10:8443/hook", "private"),
        ("https://100.64.0.1/hook", "carrier-grade NAT"),
        ("https://169.254.1.1/hook", "link-local"),
        ("https://[fe80::1]/hook", "link-local"),
        ("https://[fd12:3456::1]/hook", "unique local"),
        ("https://169.254.169.254/latest/meta-data/", "metadata"),
        ("https://[fd00:ec2::254]/", "metadata"),
        ("https://[::ffff:127.0.0.1]/hook", "IPv4-mapped"),
        ("https://[::ffff:10.0.0.1]/hook", "IPv4-mapped"),
        ("https://[::ffff:169.254.169.254]/hook", "metadata"),
        ("https://[64:ff9b::a9fe:a9fe]/hook", "metadata"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://metadata.google.internal/computeMetadata/v1/", ".internal"),
        ("https://printer.local/hook", ".local"),
        ("https://intranet/hook", "single-label"),
        ("ftp://hooks.example.com/", "https://"),
        ("hooks.example.com/hook", "https://"),
        ("", "required"),
        ("https://user:secret@hooks.example.com/", "credentials"),
        ("https://hooks.example.com/#top", "fragment"),
        (f"http://{PUBLIC}/hook", "must use https"),
        (f"http://{NAME}/hook", "must use https"),
    ],
)
async def test_refused_at_registration_with_the_reason(hosts: Path, url: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        await check_endpoint_url(url, make_settings(hosts))


async def test_a_public_https_url_is_accepted_and_normalised(hosts: Path) -> None:
    cfg = make_settings(hosts)

    assert (
        await check_endpoint_url(f"https://{NAME.upper()}./scanq?tenant=acme", cfg)
        == f"https://{NAME}/scanq?tenant=acme"
    )
    assert await check_endpoint_url(f"https://{PUBLIC}:8443/hook", cfg) == f"https://{PUBLIC}:8443/hook"


async def test_a_name_that_resolves_to_a_private_address_is_refused(hosts: Path) -> None:
    write_hosts(hosts, f"{PUBLIC} {NAME}\n10.20.30.40 {NAME}\n")

    with pytest.raises(ValidationError, match=r"resolves to a refused address: 10\.20\.30\.40 is private"):
        await check_endpoint_url(f"https://{NAME}/hook", make_settings(hosts))


async def test_the_allowlist_opens_private_addresses_and_only_there_plain_http(hosts: Path) -> None:
    write_hosts(hosts, f"127.0.0.1 {NAME}\n")
    cfg = make_settings(hosts, "127.0.0.0/8", "10.0.0.0/8")

    assert await check_endpoint_url(f"http://{NAME}:8080/hook", cfg) == f"http://{NAME}:8080/hook"
    assert await check_endpoint_url("http://10.9.8.7/hook", cfg) == "http://10.9.8.7/hook"
    assert await check_endpoint_url("https://127.0.0.1:9443/hook", cfg) == "https://127.0.0.1:9443/hook"
    with pytest.raises(ValidationError, match="must use https"):
        await check_endpoint_url(f"http://{PUBLIC}/hook", cfg)  # public, but not allow-listed: https only
    with pytest.raises(ValidationError, match="private"):
        await check_endpoint_url("https://192.168.0.1/hook", cfg)


async def test_metadata_addresses_stay_refused_whatever_the_allowlist(hosts: Path) -> None:
    cfg = make_settings(hosts, "169.254.0.0/16", "::/0", "0.0.0.0/0")

    for url in ("http://169.254.169.254/", "https://[::ffff:169.254.169.254]/", "https://[fd00:ec2::254]/"):
        with pytest.raises(ValidationError, match="metadata"):
            await check_endpoint_url(url, cfg)


def test_an_ipv6_form_of_an_allowlisted_ipv4_address_counts_as_allowlisted(hosts: Path) -> None:
    rules = EndpointRules.from_settings(make_settings(hosts, "127.0.0.0/8"))

    assert rules.is_allowlisted(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert not rules.is_allowlisted(ipaddress.ip_address("::ffff:10.0.0.1"))
    assert not rules.is_allowlisted(ipaddress.ip_address(PUBLIC))


async def test_delivery_resolves_again_and_refuses_a_name_that_now_points_inside(hosts: Path) -> None:
    cfg = make_settings(hosts)
    url = await check_endpoint_url(f"https://{NAME}/hook", cfg)  # registration: public, accepted
    rules = EndpointRules.from_settings(cfg)
    assert (await pin_endpoint(url, rules)).addresses == (ipaddress.ip_address(PUBLIC),)

    write_hosts(hosts, f"10.0.0.5 {NAME}\n")  # DNS rebinding: the name now points into the network

    with pytest.raises(EndpointRefused, match=r"refused at delivery: .*10\.0\.0\.5 is private"):
        await pin_endpoint(url, rules)
    sender = Sender(rules, connect_timeout_s=1.0, read_timeout_s=1.0)
    sent = await sender.send(url, headers={"webhook-id": "1"}, body=b"{}")
    assert sent.status_code is None
    assert sent.error is not None and "10.0.0.5 is private" in sent.error
    assert not sent.is_delivered


async def test_the_session_is_pinned_to_the_addresses_checked_at_delivery(hosts: Path) -> None:
    write_hosts(hosts, f"127.0.0.1 {NAME}\n")
    rules = EndpointRules.from_settings(make_settings(hosts, "127.0.0.1/32"))

    session = await pin_endpoint(f"http://{NAME}:1/hook", rules)
    write_hosts(hosts, f"127.0.0.2 {NAME}\n")  # a later answer changes nothing for this attempt

    assert session.addresses == (ipaddress.ip_address("127.0.0.1"),)
    assert session.host == NAME
    with pytest.raises(EndpointRefused, match=r"127\.0\.0\.2 is loopback"):
        await pin_endpoint(f"http://{NAME}:1/hook", rules)  # the next attempt resolves again, and is refused


async def test_an_allowlisted_http_url_that_now_resolves_to_a_public_address_is_refused_at_delivery(
    hosts: Path,
) -> None:
    write_hosts(hosts, f"127.0.0.1 {NAME}\n")
    cfg = make_settings(hosts, "127.0.0.1/32")
    url = await check_endpoint_url(f"http://{NAME}:8080/hook", cfg)
    write_hosts(hosts, f"{PUBLIC} {NAME}\n")

    with pytest.raises(EndpointRefused, match="must use https"):
        await pin_endpoint(url, EndpointRules.from_settings(cfg))
