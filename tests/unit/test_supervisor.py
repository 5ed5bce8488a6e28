"""The parts of ``scanq up`` that need no process: settings handed to children, output labels, redaction."""

from __future__ import annotations

import json

import pytest

from scanq.config import PluginSettings, Settings
from scanq.exceptions import ConfigError
from scanq.scanners.mock import MockSettings
from scanq.scanners.net.settings import NetSettings
from scanq.supervisor import (
    _ingest_children,
    _reason,
    _redact,
    _worker_env,
    inherited_environ,
    label_line,
    prepare_store,
    settings_environ,
)


def test_children_rebuild_exactly_the_settings_of_the_supervisor() -> None:
    settings = Settings(
        lease_seconds=12.5,
        workers=3,
        plugins=PluginSettings(
            MockSettings(failure_rate=0.25), NetSettings(target_allowlist=("10.0.0.0/8", "192.168.0.0/16"))
        ),
        database_url="sqlite:////tmp/x.db",
    )
    environ = settings_environ(settings)
    assert all(name.startswith("SCANQ_") for name in environ)
    assert Settings.from_env(environ) == settings
    # The child's own SCANQ_* win over the legacy names the user may also have exported.
    assert Settings.from_env({**environ, "INGEST_PORT": "1"}) == settings


def test_each_worker_gets_its_own_metrics_port() -> None:
    assert _worker_env(Settings(), 1) == {}
    settings = Settings(metrics_port=9100)
    assert [_worker_env(settings, n) for n in (1, 2)] == [
        {"SCANQ_METRICS_PORT": "9100"},
        {"SCANQ_METRICS_PORT": "9101"},
    ]


def test_text_lines_get_a_prefix_and_json_lines_a_process_key() -> None:
    assert label_line("worker-1", b"hello\n", is_json=False) == b"[worker-1] hello\n"
    assert label_line("ingest", b"no newline", is_json=False) == b"[ingest] no newline\n"
    labelled = label_line("worker-2", b'{"level": "INFO", "message": "x"}\n', is_json=True)
    assert json.loads(labelled) == {"process": "worker-2", "level": "INFO", "message": "x"}
    assert json.loads(label_line("status", b"{}\n", is_json=True)) == {"process": "status"}
    assert label_line("status", b"Traceback (most recent call last):\n", is_json=True).startswith(b"[status] ")


def test_printed_urls_hide_passwords() -> None:
    assert _redact("postgresql://scanq:secret@db:5432/scanq") == "postgresql://scanq:***@db:5432/scanq"
    assert _redact("postgresql://scanq@db/scanq") == "postgresql://scanq@db/scanq"
    assert _redact("sqlite:///data/scanq.db") == "sqlite:///data/scanq.db"


async def test_an_in_process_store_cannot_back_several_processes() -> None:
    with pytest.raises(ConfigError, match="SCANQ_DATABASE_URL"):
        await prepare_store(Settings(database_url="memory://x"))


def test_children_do_not_inherit_scanq_names_that_are_no_setting() -> None:
    environ = {"PATH": "/bin", "SCANQ_LEASE_SECONDS": "5", "SCANQ_LEASE_SECOND": "5", "SCANQ_TEST_POSTGRES_URL": "x"}
    assert inherited_environ(environ) == {"PATH": "/bin", "SCANQ_LEASE_SECONDS": "5", "SCANQ_TEST_POSTGRES_URL": "x"}


def test_the_reason_a_child_could_not_start_is_its_last_line() -> None:
    assert _reason(b"Error: cannot listen on http://127.0.0.1:1: Permission denied\n") == (
        "cannot listen on http://127.0.0.1:1: Permission denied"
    )
    assert _reason(b'{"level": "ERROR", "message": "cannot listen"}\n') == "cannot listen"
    assert _reason(b"") == "it exited at once"


def test_ingest_children_serve_alone_and_share_the_socket_only_when_several() -> None:
    [single] = _ingest_children(Settings())
    assert (single.name, single.shares_listeners) == ("ingest", False)
    several = _ingest_children(Settings(ingest_processes=3))
    assert [child.name for child in several] == ["ingest-1", "ingest-2", "ingest-3"]
    assert all(child.shares_listeners for child in several)
    # Each child gets SCANQ_INGEST_PROCESSES=1: only the supervisor starts several, a child never does.
    assert {child.env["SCANQ_INGEST_PROCESSES"] for child in [single, *several]} == {"1"}
