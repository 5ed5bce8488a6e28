"""Plugin settings: each plugin declares a section, read from its own flags and variables, and receives only it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

import scanq.config
from scanq.config import PluginSettings, Settings, plugin_sections, setting_specs, unknown_env_names
from scanq.exceptions import ConfigError
from scanq.scanners import ScannerRegistry
from scanq.scanners.base import Scanner
from scanq.scanners.mock import MockScanner, MockSettings
from scanq.scanners.net.settings import NetSettings
from scanq.scanners.settings import ScannerContext, setting, setting_error


@dataclass(frozen=True, kw_only=True)
class ShodanSettings:
    api_key: str = setting("", "Shodan: API key")
    max_results: int = setting(100, "Shodan: results read per target")

    def __post_init__(self) -> None:
        if self.max_results < 1:
            raise setting_error("max_results", "must be at least 1", self.max_results)


class ShodanScanner(Scanner):
    """A third-party plugin with options of its own."""

    name = "shodan"
    settings_class = ShodanSettings
    settings: ShodanSettings

    async def run(self, *, scan_id: str, target: str | None, options: Mapping[str, Any]) -> Mapping[str, Any]:
        return {"key": self.settings.api_key}


@pytest.fixture
def with_shodan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Install the third-party plugin next to the real ones."""
    installed = {**scanq.config.installed_scanner_classes(), "shodan": ShodanScanner}
    monkeypatch.setattr(scanq.config, "installed_scanner_classes", lambda: installed)


def test_each_plugin_receives_only_its_own_section_and_the_scan_timeout() -> None:
    mock = MockSettings(min_sleep=0.5, max_sleep=0.5)
    registry = ScannerRegistry(Settings(scan_timeout_seconds=7.0, plugins=PluginSettings(mock)))
    assert registry.get("mock").settings == mock
    assert registry.get("mock").context == ScannerContext(mock, scan_timeout_seconds=7.0)
    assert registry.get("tls").settings == NetSettings()
    assert registry.get("noop").settings is None


def test_a_plugin_built_without_settings_gets_the_defaults() -> None:
    assert MockScanner(ScannerContext()).settings == MockSettings()


def test_a_sections_defaults_are_not_held_so_equal_settings_compare_equal() -> None:
    assert PluginSettings(MockSettings(), NetSettings()) == PluginSettings()
    assert PluginSettings(MockSettings(min_sleep=0.0)) != PluginSettings()
    assert PluginSettings()[MockSettings] == MockSettings()
    with pytest.raises(TypeError):
        PluginSettings(MockSettings(), MockSettings(min_sleep=0.0))


@pytest.mark.usefixtures("with_shodan")
def test_a_third_party_plugin_has_options_of_its_own() -> None:
    settings = Settings.from_env({"SCANQ_SHODAN_API_KEY": "k"}, shodan_max_results=5)
    assert settings.plugins[ShodanSettings] == ShodanSettings(api_key="k", max_results=5)
    assert {"--shodan-api-key", "--shodan-max-results"} <= {spec.flag for spec in setting_specs()}
    assert unknown_env_names({"SCANQ_SHODAN_API_KEY": "k", "SCANQ_SHODAN_KEY": "k"}) == ["SCANQ_SHODAN_KEY"]
    scanner = ScannerRegistry(settings, extra={"shodan": ShodanScanner}).get("shodan")
    assert scanner.settings == ShodanSettings(api_key="k", max_results=5)
    with pytest.raises(ConfigError, match=r"^SCANQ_SHODAN_MAX_RESULTS: must be at least 1 \(got 0\)$"):
        Settings.from_env({"SCANQ_SHODAN_MAX_RESULTS": "0"})
    with pytest.raises(ConfigError, match=r"^SCANQ_SHODAN_MAX_RESULTS: invalid value 'many'"):
        Settings.from_env({"SCANQ_SHODAN_MAX_RESULTS": "many"})


def test_plugins_sharing_a_section_share_its_namespace_and_clashes_are_refused() -> None:
    @dataclass(frozen=True)
    class Other:
        timeout_seconds: float = setting(1.0, "Other: a timeout")

    class Sharing(Scanner):
        name = "sharing"
        settings_class = MockSettings
        settings_namespace = "mock"

    class Clashing(Scanner):
        name = "clashing"
        settings_class = Other
        settings_namespace = "mock"

    class Shadowing(Scanner):
        name = "scan"  # the namespace: its key scan_timeout_seconds is a core setting's
        settings_class = Other

    assert plugin_sections([MockScanner, Sharing]) == {MockSettings: "mock"}
    with pytest.raises(TypeError, match="namespace 'mock'"):
        plugin_sections([MockScanner, Clashing])
    with pytest.raises(TypeError, match="scan_timeout_seconds"):
        setting_specs(plugin_sections([Shadowing]))
