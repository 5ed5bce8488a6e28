"""Each plugin checks its options at submit time."""

from __future__ import annotations

import pytest

from scanq.config import Settings
from scanq.exceptions import ConfigError, ValidationError
from scanq.scanners.net.ports import DEFAULT_PORTS, MAX_PORTS_PER_SCAN, RISKY_PORTS, PortsScanner
from scanq.scanners.net.settings import NetSettings
from scanq.scanners.net.tls import TlsScanner
from scanq.scanners.net.web import HttpScanner
from scanq.scanners.settings import ScannerContext

CONTEXT = ScannerContext(NetSettings())


def test_default_risky_ports_and_their_severities():
    assert set(DEFAULT_PORTS) == {
        3389,
        5900,
        445,
        139,
        23,
        21,
        1433,
        3306,
        5432,
        1521,
        27017,
        6379,
        9200,
        11211,
        22,
        4443,
        8443,
        10443,
    }
    assert RISKY_PORTS[3389].severity == "critical"
    assert RISKY_PORTS[22].severity == "low"
    assert PortsScanner(CONTEXT).parse_options({}).ports == DEFAULT_PORTS


@pytest.mark.parametrize(
    "options",
    [
        {"ports": []},
        {"ports": "22"},
        {"ports": [0]},
        {"ports": [65536]},
        {"ports": [True]},
        {"ports": ["22"]},
        {"ports": list(range(1, MAX_PORTS_PER_SCAN + 2))},
        {"port": [22]},
    ],
)
async def test_bad_ports_options(options):
    with pytest.raises(ValidationError):
        await PortsScanner(CONTEXT).validate(target="example.com", options=options)


def test_ports_option_deduplicates():
    assert PortsScanner(CONTEXT).parse_options({"ports": [22, 22, 80]}).ports == (22, 80)


@pytest.mark.parametrize("options", [{"port": 0}, {"port": "443"}, {"port": 443.0}, {"sni": "x"}])
async def test_bad_tls_options(options):
    with pytest.raises(ValidationError):
        await TlsScanner(CONTEXT).validate(target="example.com", options=options)


@pytest.mark.parametrize("options", [{"path": "no-slash"}, {"path": "/a b"}, {"path": "/\n"}, {"https_port": -1}])
async def test_bad_http_options(options):
    with pytest.raises(ValidationError):
        await HttpScanner(CONTEXT).validate(target="example.com", options=options)


async def test_http_takes_urls_tls_does_not():
    # parse() is validate() without the DNS lookup (no network in unit tests).
    assert str(HttpScanner(CONTEXT).parse("https://Example.com/x")) == "https://example.com/x"
    with pytest.raises(ValidationError, match="not a URL"):
        await TlsScanner(CONTEXT).validate(target="https://example.com/", options={})


def test_scanner_settings_are_validated():
    with pytest.raises(ConfigError):
        NetSettings(sockets_per_target=0)
    with pytest.raises(ConfigError):
        NetSettings(connect_timeout_seconds=0)
    with pytest.raises(ConfigError):
        NetSettings(target_allowlist=("nope",))
    settings = Settings.from_env(
        {"SCANQ_SCANNER_NAMESERVERS": "127.0.0.1:5353, 10.0.0.2", "SCANQ_SCANNER_CA_FILE": "/x.pem"}
    ).plugins[NetSettings]
    assert settings.nameservers == ("127.0.0.1:5353", "10.0.0.2")
    assert settings.ca_file == "/x.pem"
