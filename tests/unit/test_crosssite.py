"""Which hosts and origins the cross-site guard allows by default, and how it reads ``Host``."""

from __future__ import annotations

import pytest

from scanq.api.crosssite import allowed_hosts, allowed_origins, host_name, is_loopback
from scanq.config import Settings
from scanq.exceptions import ConfigError


@pytest.mark.parametrize(
    ("host", "name"),
    [("127.0.0.1:10550", "127.0.0.1"), ("LocalHost", "localhost"), ("[::1]:10551", "::1"), ("[::1]", "::1")],
)
def test_the_host_header_is_read_without_its_port(host: str, name: str) -> None:
    assert host_name(host) == name


def test_on_loopback_only_the_loopback_names_and_the_service_urls_are_served() -> None:
    settings = Settings(ingest_url="http://scanq.internal:10550")
    assert allowed_hosts(settings) == frozenset({"localhost", "127.0.0.1", "::1", "scanq.internal"})


def test_on_another_address_any_host_is_served_unless_names_are_configured() -> None:
    assert allowed_hosts(Settings(host="0.0.0.0")) is None
    assert allowed_hosts(Settings(host="0.0.0.0", allowed_hosts=("scanq.example",))) == frozenset(
        {"scanq.example", "127.0.0.1"}
    )
    assert allowed_hosts(Settings(allowed_hosts=("*",))) is None


def test_the_dashboard_and_configured_origins_are_allowed() -> None:
    origins = allowed_origins(Settings(allowed_origins=("https://Console.example/",)))
    assert {"http://127.0.0.1:10551", "http://localhost:10551", "https://console.example"} <= origins
    assert "http://evil.example" not in origins


def test_loopback_addresses_and_localhost_are_loopback() -> None:
    assert [is_loopback(h) for h in ("127.0.0.2", "::1", "localhost", "0.0.0.0", "10.0.0.1")] == [
        True,
        True,
        True,
        False,
        False,
    ]


@pytest.mark.parametrize(
    "environ",
    [{"SCANQ_ALLOWED_ORIGINS": "console.example"}, {"SCANQ_ALLOWED_ORIGINS": "https://a.example/path"}],
)
def test_an_origin_must_be_scheme_and_host(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="SCANQ_ALLOWED_ORIGINS"):
        Settings.from_env(environ)
