"""Scanner settings are checked when a process starts: a bad one stops it with one line, before it serves anything.

``SCANQ_DEFAULT_SCANNER=nmap`` used to be accepted, and then every ``GET /``
answered 422; a bad name server or CA file surfaced only when a scan ran.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.conftest import Spawn, free_port

pytestmark = pytest.mark.slow

EXIT_TIMEOUT_S = 30.0
BAD_SETTING_EXIT_CODE = 2


def start_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """A throwaway store and free ports, so a process that did start would harm nothing."""
    return {
        "SCANQ_DATABASE_URL": f"sqlite:///{tmp_path / 'scanq.db'}",
        "SCANQ_INGEST_PORT": str(free_port()),
        "SCANQ_STATUS_PORT": str(free_port()),
        "SCANQ_WORKERS": "1",
        **settings,
    }


def assert_stops_with_one_line(spawn: Spawn, args: tuple[str, ...], env: dict[str, str], *expected: str) -> str:
    process = spawn(*args, env=env)
    code = process.wait(EXIT_TIMEOUT_S)
    output = process.output().strip()
    assert code == BAD_SETTING_EXIT_CODE, output
    assert len(output.splitlines()) == 1, output
    for text in expected:
        assert text in output, output
    return output


@pytest.mark.parametrize("command", ["up", "ingest", "status", "api", "worker"])
def test_an_unknown_default_scanner_stops_every_service_at_start(spawn: Spawn, tmp_path: Path, command: str) -> None:
    env = start_env(tmp_path, SCANQ_DEFAULT_SCANNER="nmap")

    line = assert_stops_with_one_line(spawn, (command,), env, "SCANQ_DEFAULT_SCANNER", "'nmap'")

    installed = line.split("installed: ", 1)[1]
    assert {"mock", "noop"} <= {name.strip(" )") for name in installed.split(",")}


def test_the_default_scanner_flag_is_checked_too(spawn: Spawn, tmp_path: Path) -> None:
    args = ("ingest", "--default-scanner", "nmap")

    assert_stops_with_one_line(spawn, args, start_env(tmp_path), "unknown scanner 'nmap'", "installed: ")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SCANQ_SCANNER_NAMESERVERS", "192.0.2.53,dns.example", "must be an IP address"),
        ("SCANQ_SCANNER_CA_FILE", "/nonexistent/ca.pem", "cannot be read as a PEM CA bundle"),
        ("SCANQ_SCANNER_HOSTS_FILE", "/nonexistent/hosts", "is not a readable file"),
    ],
)
def test_a_bad_network_scanner_setting_stops_the_worker_at_start(
    spawn: Spawn, tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    assert_stops_with_one_line(spawn, ("worker",), start_env(tmp_path, **{variable: value}), variable, expected)
