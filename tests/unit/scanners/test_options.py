"""Each plugin checks its options at submit time."""

from __future__ import annotations

import pytest
import trustme

from scanq.config import Settings
from scanq.exceptions import ConfigError, ScannerError, ValidationError
from scanq.scanners.mock import MockScanner, MockSettings
from scanq.scanners.net.ports import DEFAULT_PORTS, MAX_PORTS_PER_SCAN, RISKY_PORTS, PortsScanner
from scanq.scanners.net.settings import NetSettings
from scanq.scanners.net.tls import TlsScanner
from scanq.scanners.net.web import HttpScanner
from scanq.scanners.noop import NoopScanner
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


def test_scanner_settings_are_validated(tmp_path):
    with pytest.raises(ConfigError):
        NetSettings(sockets_per_target=0)
    with pytest.raises(ConfigError):
        NetSettings(connect_timeout_seconds=0)
    with pytest.raises(ConfigError):
        NetSettings(target_allowlist=("nope",))
    # The CA file is read at start (a missing or non-PEM file is refused then), so the test gives a real one.
    ca_file = tmp_path / "x.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    settings = Settings.from_env(
        {"SCANQ_SCANNER_NAMESERVERS": "127.0.0.1:5353, 10.0.0.2", "SCANQ_SCANNER_CA_FILE": str(ca_file)}
    ).plugins[NetSettings]
    assert settings.nameservers == ("127.0.0.1:5353", "10.0.0.2")
    assert settings.ca_file == str(ca_file)


MOCK = MockScanner(ScannerContext(MockSettings(min_sleep=0.0, max_sleep=0.0, failure_rate=0.0)))


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"min_sleep": "abc"}, "'min_sleep' must be a number"),
        ({"max_sleep": None}, "'max_sleep' must be a number"),
        ({"failure_rate": True}, "'failure_rate' must be a number"),
        ({"min_sleep": [1]}, "'min_sleep' must be a number"),
        ({"min_sleep": float("nan")}, "'min_sleep' must be a number"),
        ({"min_slep": 1}, "unknown mock option(s): min_slep"),
        ({"min_sleep": 0, "colour": "red"}, "unknown mock option(s): colour"),
        ({"min_sleep": -1}, "'min_sleep' must not be negative"),
        ({"max_sleep": -0.5}, "'max_sleep' must not be negative"),
        ({"failure_rate": -0.1}, "'failure_rate' must not be negative"),
        ({"failure_rate": 1.5}, "'failure_rate' must be a probability"),
        ({"min_sleep": 2, "max_sleep": 1}, "'max_sleep' must be at least min_sleep (2)"),
    ],
)
async def test_bad_mock_options_are_refused_naming_the_option(options, named):
    with pytest.raises(ValidationError) as raised:
        await MOCK.validate(target=None, options=options)
    assert named in raised.value.message


@pytest.mark.parametrize(
    "options",
    [{}, {"min_sleep": 0}, {"min_sleep": 0.0, "max_sleep": 0, "failure_rate": 0}, {"failure_rate": 1}],
)
async def test_good_mock_options_are_accepted_and_used(options):
    assert await MOCK.validate(target="t", options=options) == "t"
    if options.get("failure_rate") == 1:
        with pytest.raises(ScannerError, match=r"failure rate 1\.0"):
            await MOCK.run(scan_id="s", target="t", options=options)
    else:
        assert (await MOCK.run(scan_id="s", target="t", options=options))["slept_s"] == 0.0


async def test_a_stored_scan_with_bad_mock_options_fails_cleanly_at_run_time():
    # Stored before options were checked (or written to the store directly): an Error naming
    # the option, not a traceback in the worker.
    with pytest.raises(ScannerError, match="'min_sleep' must be a number"):
        await MOCK.run(scan_id="s", target=None, options={"min_sleep": "abc"})


async def test_noop_reads_no_option_and_carries_any():
    noop = NoopScanner(ScannerContext())
    assert await noop.validate(target=None, options={"anything": [1, {"deep": True}]}) is None
