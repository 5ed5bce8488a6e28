"""The parts of ``scanq up`` that need no child process: what each child gets, output labels, the shared ports."""

from __future__ import annotations

import io
import json
import os
import socket

import pytest

from scanq.api.listeners import LISTEN_FDS_ENV, close
from scanq.config import PluginSettings, Settings
from scanq.exceptions import ConfigError, StartupError
from scanq.scanners.mock import MockSettings
from scanq.scanners.net.settings import NetSettings
from scanq.supervisor import INGEST, SERVICES, STATUS, Service, Supervisor, prepare_store
from scanq.supervisor.output import banner, label_line, reason, redact
from scanq.supervisor.plan import (
    inherited_environ,
    plan_children,
    service_children,
    settings_environ,
    worker_env,
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
    assert worker_env(Settings(), 1) == {}
    settings = Settings(metrics_port=9100)
    assert [worker_env(settings, n) for n in (1, 2)] == [
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
    assert redact("postgresql://scanq:secret@db:5432/scanq") == "postgresql://scanq:***@db:5432/scanq"
    assert redact("postgresql://scanq@db/scanq") == "postgresql://scanq@db/scanq"
    assert redact("sqlite:///data/scanq.db") == "sqlite:///data/scanq.db"


async def test_an_in_process_store_cannot_back_several_processes() -> None:
    with pytest.raises(ConfigError, match="SCANQ_DATABASE_URL"):
        await prepare_store(Settings(database_url="memory://x"))


def test_children_do_not_inherit_scanq_names_that_are_no_setting() -> None:
    environ = {"PATH": "/bin", "SCANQ_LEASE_SECONDS": "5", "SCANQ_LEASE_SECOND": "5", "SCANQ_TEST_POSTGRES_URL": "x"}
    assert inherited_environ(environ) == {"PATH": "/bin", "SCANQ_LEASE_SECONDS": "5", "SCANQ_TEST_POSTGRES_URL": "x"}


def test_the_reason_a_child_could_not_start_is_its_last_line() -> None:
    assert reason(b"Error: cannot listen on http://127.0.0.1:1: Permission denied\n") == (
        "cannot listen on http://127.0.0.1:1: Permission denied"
    )
    assert reason(b'{"level": "ERROR", "message": "cannot listen"}\n') == "cannot listen"
    assert reason(b"") == "it exited at once"


@pytest.mark.parametrize("service", SERVICES, ids=lambda service: service.name)
def test_a_service_runs_alone_or_shares_the_socket_only_when_several(service: Service) -> None:
    [single] = service_children(Settings(), service)
    assert (single.name, single.command, single.listeners) == (service.name, service.name, None)
    several = service_children(Settings().replace(**{service.processes_key: 3}), service)
    assert [child.name for child in several] == [f"{service.name}-{n}" for n in (1, 2, 3)]
    assert {child.command for child in several} == {service.name}
    assert all(child.listeners == service for child in several)
    # Each child gets SCANQ_<SERVICE>_PROCESSES=1: only the supervisor starts several, a child never does.
    variable = f"SCANQ_{service.name.upper()}_PROCESSES"
    assert {child.env[variable] for child in [single, *several]} == {"1"}


def test_up_runs_each_service_in_its_own_processes_then_the_workers() -> None:
    settings = Settings(ingest_processes=2, status_processes=3, workers=2)
    children = plan_children(settings)
    assert [child.name for child in children] == [
        "ingest-1",
        "ingest-2",
        "status-1",
        "status-2",
        "status-3",
        "worker-1",
        "worker-2",
    ]
    assert [child.listeners for child in children] == [INGEST] * 2 + [STATUS] * 3 + [None] * 2
    only = plan_children(settings, only=STATUS)
    assert [child.name for child in only] == ["status-1", "status-2", "status-3"]


def test_the_banner_says_which_services_share_a_socket() -> None:
    lines = banner(Settings(status_processes=2, ingest_port=1, status_port=2))
    assert lines[0] == "ingest  http://127.0.0.1:1   (GET / queues a scan)"
    assert lines[1] == "status  http://127.0.0.1:2   (GET /<id>, /scans, /stats; 2 processes, one socket)"
    assert banner(Settings(status_processes=2, status_port=2), only=STATUS) == [
        "http://127.0.0.1:2; 2 processes, one socket; Ctrl-C stops them all"
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_each_shared_port_is_bound_once_and_handed_to_its_own_children() -> None:
    ingest_port, status_port = free_port(), free_port()
    settings = Settings(ingest_processes=2, status_processes=2, ingest_port=ingest_port, status_port=status_port)
    supervisor = Supervisor(settings, out=io.BytesIO())
    bound = supervisor._listen()
    try:
        assert sorted(sock.getsockname()[1] for sock in bound) == sorted([ingest_port, status_port])
        for service, port in ((INGEST, ingest_port), (STATUS, status_port)):
            fds, environ = supervisor._handoffs[service]
            [fd] = fds
            with socket.socket(fileno=os.dup(fd)) as inherited:
                assert inherited.getsockname()[1] == port
            assert environ == {LISTEN_FDS_ENV: str(fd)}
    finally:
        close(bound)


async def test_a_taken_port_binds_no_other() -> None:
    ingest_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = Settings(
            ingest_processes=2, status_processes=2, ingest_port=ingest_port, status_port=taken.getsockname()[1]
        )
        with pytest.raises(StartupError, match="Address already in use"):
            Supervisor(settings, out=io.BytesIO())._listen()
    # The ingest port, bound before the status port failed, was closed again.
    with socket.socket() as again:
        again.bind(("127.0.0.1", ingest_port))
