"""The hosts-file reader: hosts(5) lines to addresses by name, read again when the file changes."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Any

import pytest

from scanq.exceptions import ConfigError
from scanq.scanners.net.addresses import AddressPolicy
from scanq.scanners.net.hostsfile import HostsFile, parse_hosts
from scanq.scanners.net.settings import SYSTEM_HOSTS_FILE, NetSettings
from scanq.scanners.net.targets import parse_target, resolve_target

TEXT = """
# a comment line
127.0.0.1	localhost
10.0.0.5  App.Corp.Example.  app   # trailing comment
10.0.0.6  app.corp.example
fe80::1%eth0  link.corp.example
not-an-address  junk.corp.example
10.0.0.7
"""


def ip(text: str) -> Any:
    return ipaddress.ip_address(text)


def test_lines_become_addresses_by_name() -> None:
    entries = parse_hosts(TEXT)

    assert entries["app.corp.example"] == (ip("10.0.0.5"), ip("10.0.0.6"))  # every line adds, in file order
    assert entries["app"] == (ip("10.0.0.5"),)
    assert entries["link.corp.example"] == (ip("fe80::1"),)
    assert entries["localhost"] == (ip("127.0.0.1"),)
    assert "junk.corp.example" not in entries


def test_lookup_ignores_case_and_a_trailing_dot_and_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text(TEXT)
    hosts = HostsFile(str(path))

    assert hosts.lookup("APP.corp.example.") == (ip("10.0.0.5"), ip("10.0.0.6"))
    assert hosts.lookup("other.corp.example") == ()
    path.write_text("10.1.1.1 other.corp.example\n")
    assert hosts.lookup("other.corp.example") == (ip("10.1.1.1"),)
    assert hosts.lookup("app.corp.example") == ()
    path.unlink()
    assert hosts.lookup("other.corp.example") == ()


async def test_a_listed_name_never_reaches_a_resolver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hosts"
    path.write_text("10.0.0.5 app.corp.example intranet\n")
    asked: list[object] = []

    async def getaddrinfo(*args: object, **kwargs: object) -> list[Any]:
        asked.append(args[0])
        return []

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    policy = AddressPolicy.from_cidrs(("10.0.0.0/8",))
    hosts = HostsFile(str(path))

    for name in ("app.corp.example", "intranet"):
        target = parse_target(name, policy=policy, hosts=hosts)
        assert await resolve_target(target, policy=policy, hosts=hosts) == (ip("10.0.0.5"),)
    assert asked == []


def test_the_hosts_file_setting_is_checked_at_start(tmp_path: Path) -> None:
    assert NetSettings().hosts_file == SYSTEM_HOSTS_FILE
    assert NetSettings(hosts_file="").hosts_file == ""
    listed = tmp_path / "hosts"
    listed.write_text("10.0.0.5 app.corp.example\n")
    assert NetSettings(hosts_file=str(listed)).hosts_file == str(listed)
    for unreadable in (tmp_path / "absent", tmp_path):
        with pytest.raises(ConfigError, match="hosts_file: is not a readable file"):
            NetSettings(hosts_file=str(unreadable))
