"""Settings: environment names, legacy names, precedence, typed parsing and one-line errors naming the setting."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from scanq.config import (
    DEFAULT_DATABASE_URL,
    ENV_PREFIX,
    Settings,
    plugin_sections,
    setting_specs,
    unknown_env_names,
)
from scanq.exceptions import ConfigError
from scanq.scanners.mock import MockSettings
from scanq.scanners.net.settings import NetSettings


def test_defaults_match_the_original_system() -> None:
    s = Settings.from_env({})
    assert (s.ingest_port, s.status_port) == (10550, 10551)
    mock = s.plugins[MockSettings]
    assert (mock.min_sleep, mock.max_sleep, mock.failure_rate) == (1.0, 5.0, 0.1)
    assert s.concurrency == 64
    assert s.host == "127.0.0.1"


def test_every_field_reads_its_scanq_variable() -> None:
    sections: list[type[Any]] = [Settings, *plugin_sections()]
    for section in sections:
        for f in fields(section):
            assert f.name == "plugins" or f.metadata.get("help"), f"{f.name} has no help text"
    s = Settings.from_env({"SCANQ_LEASE_SECONDS": "12.5", "SCANQ_CONCURRENCY": "7", "SCANQ_LOG_FORMAT": "json"})
    assert (s.lease_seconds, s.concurrency, s.log_format) == (12.5, 7, "json")


def test_legacy_names_are_honoured_and_floats_allowed() -> None:
    s = Settings.from_env(
        {
            "INGEST_PORT": "20550",
            "STATUS_PORT": "20551",
            "MIN_SLEEP": "0.1",
            "MAX_SLEEP": "0.5",
            "CHANCE_OF_FAILURE": "0.25",
        }
    )
    assert (s.ingest_port, s.status_port) == (20550, 20551)
    mock = s.plugins[MockSettings]
    assert (mock.min_sleep, mock.max_sleep, mock.failure_rate) == (0.1, 0.5, 0.25)
    original_names = {alias for spec in setting_specs() for alias in spec.aliases}
    assert original_names == {"INGEST_PORT", "STATUS_PORT", "MIN_SLEEP", "MAX_SLEEP", "CHANCE_OF_FAILURE"}


def test_flags_beat_scanq_variables_which_beat_legacy_names() -> None:
    env = {"INGEST_PORT": "1111", "SCANQ_INGEST_PORT": "2222", "STATUS_PORT": "3333"}
    assert Settings.from_env(env).ingest_port == 2222
    assert Settings.from_env(env).status_port == 3333
    assert Settings.from_env(env, ingest_port=4444).ingest_port == 4444
    assert Settings.from_env(env, ingest_port=None).ingest_port == 2222


def test_lists_are_comma_separated() -> None:
    s = Settings.from_env({"SCANQ_TARGET_ALLOWLIST": "10.0.0.0/8, 192.168.1.0/24,"})
    assert s.plugins[NetSettings].target_allowlist == ("10.0.0.0/8", "192.168.1.0/24")


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"SCANQ_CONCURRENCY": "many"}, "SCANQ_CONCURRENCY"),
        ({"CHANCE_OF_FAILURE": "often"}, "CHANCE_OF_FAILURE"),
        ({"SCANQ_MOCK_FAILURE_RATE": "1.5"}, "SCANQ_MOCK_FAILURE_RATE"),
        ({"SCANQ_INGEST_PORT": "70000"}, "SCANQ_INGEST_PORT"),
        ({"SCANQ_CONCURRENCY": "0"}, "SCANQ_CONCURRENCY"),
        ({"SCANQ_HEARTBEAT_SECONDS": "60"}, "SCANQ_HEARTBEAT_SECONDS"),
        ({"MIN_SLEEP": "3", "MAX_SLEEP": "1"}, "MAX_SLEEP"),
        ({"SCANQ_LOG_FORMAT": "xml"}, "SCANQ_LOG_FORMAT"),
        ({"SCANQ_LOG_LEVEL": "loud"}, "SCANQ_LOG_LEVEL"),
        ({"SCANQ_TARGET_ALLOWLIST": "not-a-cidr"}, "SCANQ_TARGET_ALLOWLIST"),
        ({"SCANQ_DATABASE_URL": "scanq.db"}, "SCANQ_DATABASE_URL"),
        ({"SCANQ_HOST": "999.1.1.1"}, "SCANQ_HOST"),
        ({"SCANQ_HOST": "bad host"}, "SCANQ_HOST"),
        ({"SCANQ_HEADER_TIMEOUT_SECONDS": "0"}, "SCANQ_HEADER_TIMEOUT_SECONDS"),
        ({"SCANQ_BODY_TIMEOUT_SECONDS": "-1"}, "SCANQ_BODY_TIMEOUT_SECONDS"),
        ({"SCANQ_MAX_CONNECTIONS": "0"}, "SCANQ_MAX_CONNECTIONS"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_setting(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environ)
    message = str(caught.value)
    assert named in message
    assert "\n" not in message


def test_replace_ignores_none() -> None:
    s = Settings.from_env({}).replace(concurrency=5, workers=None)
    assert (s.concurrency, s.workers) == (5, 2)


def test_unknown_scanq_variables_do_not_leak_into_settings() -> None:
    assert Settings.from_env({ENV_PREFIX + "SUPERVISOR_PID": "123"}) == Settings()


def test_a_bad_original_variable_is_named_in_the_message() -> None:
    with pytest.raises(ConfigError, match=r"^CHANCE_OF_FAILURE: must be a probability"):
        Settings.from_env({"CHANCE_OF_FAILURE": "2"})
    with pytest.raises(ConfigError, match=r"^SCANQ_MOCK_FAILURE_RATE: must be a probability"):
        Settings.from_env({"CHANCE_OF_FAILURE": "0.5", "SCANQ_MOCK_FAILURE_RATE": "2"})


def test_unknown_scanq_variables_are_reported_as_likely_typos() -> None:
    environ = {
        "SCANQ_LEASE_SECOND": "5",
        "SCANQ_LEASE_SECONDS": "5",
        "SCANQ_TEST_POSTGRES_URL": "x",
        "SCANQ_SUPERVISOR_PID": "1",
        "HOME": "/root",
    }
    assert unknown_env_names(environ) == ["SCANQ_LEASE_SECOND"]


def test_plugin_settings_are_known_variables_and_typos_next_to_them_are_not() -> None:
    environ = {"SCANQ_MOCK_MIN_SLEEP": "0", "SCANQ_SCANNER_CA_FILE": "/x.pem", "SCANQ_MOCK_MIN_SLEPE": "0"}
    assert unknown_env_names(environ) == ["SCANQ_MOCK_MIN_SLEPE"]


def test_flags_override_plugin_settings_by_key_and_unknown_keys_are_refused() -> None:
    s = Settings.from_env({"MIN_SLEEP": "0.5", "SCANQ_MOCK_MAX_SLEEP": "2"}, mock_max_sleep=3.0, target_allowlist=None)
    assert (s.plugins[MockSettings].min_sleep, s.plugins[MockSettings].max_sleep) == (0.5, 3.0)
    with pytest.raises(TypeError, match="mock_max_slep"):
        Settings.from_env({}, mock_max_slep=3.0)


def test_core_settings_alone_leave_the_plugins_at_their_defaults() -> None:
    s = Settings.from_env({"SCANQ_MOCK_MIN_SLEEP": "0", "SCANQ_CONCURRENCY": "3"}, read_plugins=False)
    assert (s.concurrency, s.plugins) == (3, Settings().plugins)


def test_to_environ_reproduces_every_setting_core_and_plugin() -> None:
    s = Settings.from_env({"INGEST_PORT": "1", "MIN_SLEEP": "0.5", "SCANQ_TARGET_ALLOWLIST": "10.0.0.0/8"})
    environ = s.to_environ()
    assert {spec.env for spec in setting_specs()} == set(environ)
    assert (environ["SCANQ_MOCK_MIN_SLEEP"], environ["SCANQ_TARGET_ALLOWLIST"]) == ("0.5", "10.0.0.0/8")
    assert Settings.from_env(environ) == s


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::", "::1", "localhost", "scanq.internal.example", "h-1."])
def test_addresses_and_host_names_are_hosts(host: str) -> None:
    assert Settings(host=host).host == host


def test_scanq_and_run_share_one_default_database() -> None:
    # `./run` leaves the SQLite default to Settings, so `scanq worker --check` or `scanq stats` run by hand
    # from the project directory look at the store `./run` writes.
    run_script = (Path(__file__).resolve().parents[2] / "run").read_text()
    code = [line for line in run_script.splitlines() if not line.lstrip().startswith("#")]
    assert Settings().database_url == DEFAULT_DATABASE_URL == "sqlite:///data/scanq.db"
    assert not [line for line in code if "sqlite:" in line]
    assert 'cd "$(dirname "$0")"' in run_script  # relative to the project directory, wherever it is called
