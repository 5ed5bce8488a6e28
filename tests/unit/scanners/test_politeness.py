"""Which host a scan loads (``Scanner.politeness_key``), as stored on the scan for the per-target cap."""

from __future__ import annotations

import pytest

from scanq.config import PluginSettings, Settings
from scanq.models import Caller, Scope
from scanq.scanners import ScannerRegistry
from scanq.scanners.mock import MockSettings
from scanq.scans import ScanService, SubmitRequest
from scanq.store.memory import MemoryStore


def registry(*, polite_mock: bool = False) -> ScannerRegistry:
    return ScannerRegistry(Settings(plugins=PluginSettings(MockSettings(polite=polite_mock))))


@pytest.mark.parametrize(
    ("scanner", "target", "key"),
    [
        ("tls", "Example.COM", "example.com"),
        ("http", "https://www.example.com:8443/login?next=/", "www.example.com"),
        ("ports", "93.184.216.34", "93.184.216.34"),
        ("mock", "example.com", None),
        ("noop", "example.com", None),
    ],
)
def test_network_scanners_name_their_host_and_mock_and_noop_none(scanner: str, target: str, key: str | None) -> None:
    assert registry().get(scanner).politeness_key(target=target) == key


def test_the_mock_names_its_target_when_asked_to_be_polite() -> None:
    polite = registry(polite_mock=True).get("mock")

    assert polite.politeness_key(target="a.example") == "a.example"
    assert polite.politeness_key(target=None) is None


async def test_a_submission_stores_the_plugins_host() -> None:
    store = MemoryStore("memory://politeness")
    settings = Settings(plugins=PluginSettings(MockSettings(polite=True)))
    service = ScanService(store, ScannerRegistry(settings), settings)
    caller = Caller(tenant="acme", scopes=frozenset({Scope.SUBMIT}))

    created = await service.submit(SubmitRequest(target="a.example"), caller=caller)

    assert created.scan.target_key == "a.example"
    assert (await store.get(scan_id=created.scan.scan_id)).target_key == "a.example"
