"""The command line: flags generated from Settings, precedence with the environment, one-line errors, exit codes."""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner

import scanq.config
from scanq import client
from scanq.cli import ALL_SETTINGS, ScanqGroup, cli
from scanq.client import parse_options
from scanq.config import Settings, section_specs, setting_specs
from scanq.flags import flag_name, with_settings
from scanq.scanners.mock import MockSettings
from scanq.scanners.net.settings import NetSettings
from scanq.sdk import AsyncClient
from scanq.tables import text_table as _table


def probe_command() -> click.Command:
    """A command built with the real helper that prints the settings it received."""

    @click.command()
    @with_settings(["ingest_port", "lease_seconds", "heartbeat_seconds", "target_allowlist", "log_level"])
    def probe(settings: Settings) -> None:
        click.echo(
            json.dumps(
                {
                    "ingest_port": settings.ingest_port,
                    "lease_seconds": settings.lease_seconds,
                    "target_allowlist": list(settings.plugins[NetSettings].target_allowlist),
                    "mock_failure_rate": settings.plugins[MockSettings].failure_rate,
                }
            )
        )

    return probe


def run(args: list[str], env: dict[str, str] | None = None, command: click.Command | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(command or cli, args, env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_every_setting_is_a_flag_of_up_with_its_environment_variable() -> None:
    code, out = run(["up", "--help"])
    assert code == 0
    assert set(ALL_SETTINGS) == {spec.key for spec in section_specs(Settings)}
    flat = " ".join(out.split())
    for spec in setting_specs():
        assert flag_name(spec.key) in out
        assert f"SCANQ_{spec.key.upper()}" in flat
    assert "How long a claim is held without a heartbeat" in flat
    assert "default: 30.0" in flat


@pytest.mark.parametrize(
    "command", ["up", "ingest", "status", "api", "worker", "submit", "get", "list", "stats", "cancel"]
)
def test_every_command_has_help(command: str) -> None:
    code, out = run([command, "--help"])
    assert code == 0
    assert "--log-level" in out


def test_a_flag_beats_the_environment_which_beats_legacy_names() -> None:
    env = {"INGEST_PORT": "1111", "SCANQ_LEASE_SECONDS": "40", "CHANCE_OF_FAILURE": "0.3"}
    code, out = run([], env=env, command=probe_command())
    assert code == 0, out
    assert json.loads(out) == {
        "ingest_port": 1111,
        "lease_seconds": 40.0,
        "target_allowlist": [],
        "mock_failure_rate": 0.3,
    }

    env["SCANQ_INGEST_PORT"] = "2222"
    code, out = run(
        ["--lease-seconds", "50", "--target-allowlist", "10.0.0.0/8,127.0.0.0/8"], env=env, command=probe_command()
    )
    assert code == 0, out
    assert json.loads(out) == {
        "ingest_port": 2222,
        "lease_seconds": 50.0,
        "target_allowlist": ["10.0.0.0/8", "127.0.0.0/8"],
        "mock_failure_rate": 0.3,
    }


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--lease-seconds", "soon"], {}, "--lease-seconds"),
        ([], {"SCANQ_LEASE_SECONDS": "soon"}, "SCANQ_LEASE_SECONDS"),
        ([], {"INGEST_PORT": "http"}, "INGEST_PORT"),
        (["--heartbeat-seconds", "90"], {}, "SCANQ_HEARTBEAT_SECONDS"),
        (["--log-level", "chatty"], {}, "SCANQ_LOG_LEVEL"),
        (["--mock-failure-rate", "often"], {}, "--mock-failure-rate"),
        (["--mock-min-sleep", "-1"], {}, "SCANQ_MOCK_MIN_SLEEP"),
        ([], {"CHANCE_OF_FAILURE": "2"}, "CHANCE_OF_FAILURE"),
        (["--scanner-sockets-per-target", "0"], {}, "SCANQ_SCANNER_SOCKETS_PER_TARGET"),
        (["--target-allowlist", "10.0.0.0/33"], {}, "SCANQ_TARGET_ALLOWLIST"),
    ],
)
def test_a_bad_setting_exits_2_with_one_line_naming_it(args: list[str], env: dict[str, str], named: str) -> None:
    code, out = run(["worker", "--check", *args], env=env)
    assert code == 2
    assert named in out
    assert len(out.strip().splitlines()) == 1


def test_plugin_flags_reach_the_settings_and_client_commands_import_no_plugin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @click.group(cls=ScanqGroup)
    def group() -> None:
        pass

    @group.command()
    @with_settings(["log_level"], plugins=True)
    def serve(settings: Settings) -> None:
        click.echo(json.dumps(settings.plugins[MockSettings].max_sleep))

    code, out = run(["serve", "--mock-max-sleep", "7"], env={"MAX_SLEEP": "6"}, command=group)
    assert (code, json.loads(out)) == (0, 7.0)
    code, out = run(["serve", "--help"], command=group)
    assert "--mock-max-sleep" in out
    assert "--scanner-ca-file" in out

    def no_plugins() -> None:
        raise AssertionError("a client command imported the plugins")

    monkeypatch.setattr(scanq.config, "installed_scanner_classes", no_plugins)
    assert run(["stats", "--help"])[0] == 0
    assert run(["stats", "--status-url", "http://127.0.0.1:1"])[0] == 1


def test_worker_check_exits_0_when_the_store_answers() -> None:
    code, _ = run(["worker", "--check", "--database-url", "memory://check"])
    assert code == 0


def test_worker_check_exits_1_when_the_store_is_unreachable() -> None:
    # Nothing listens on port 1; the PostgreSQL store (or its missing driver) must report unreachable, not crash.
    code, _ = run(["worker", "--check", "--database-url", "postgresql://nobody@127.0.0.1:1/none"])
    assert code == 1


@pytest.mark.parametrize(
    "args", [["up"], ["ingest", "--processes", "2"], ["status", "--processes", "2"]], ids=lambda args: args[0]
)
def test_several_processes_refuse_an_in_process_store(args: list[str]) -> None:
    code, out = run([*args, "--database-url", "memory://x"])
    assert code == 2
    assert "SCANQ_DATABASE_URL: memory:// cannot be shared between processes" in out


@pytest.mark.parametrize("service", ["ingest", "status"])
def test_a_service_runs_in_processes_from_its_flag_or_its_variable(service: str) -> None:
    code, out = run([service, "--help"])
    flat = " ".join(out.split())
    assert code == 0
    assert f"--processes INTEGER RANGE Processes sharing --{service}-port" in flat
    assert f"SCANQ_{service.upper()}_PROCESSES" in flat
    code, out = run(["up", "--help"])
    assert f"--{service}-processes" in out
    # The variable alone is enough: `scanq status` with SCANQ_STATUS_PROCESSES=2 supervises two processes.
    code, out = run([service], env={f"SCANQ_{service.upper()}_PROCESSES": "2", "SCANQ_DATABASE_URL": "memory://x"})
    assert code == 2
    assert "memory:// cannot be shared between processes" in out


def test_a_client_command_reports_an_unreachable_service_in_one_line() -> None:
    code, out = run(["stats", "--status-url", "http://127.0.0.1:1"])
    assert code == 1
    assert out.startswith("Error: GET http://127.0.0.1:1/stats failed")
    assert "is the scanq service running at http://127.0.0.1:1?" in out
    assert "./run or scanq up" in out
    assert len(out.strip().splitlines()) == 1


def test_scanq_help_lists_every_command_without_cutting_its_summary() -> None:
    code, out = run(["--help"])
    commands = out.split("Commands:", 1)[1].strip().splitlines()
    assert code == 0
    assert [line.split()[0] for line in commands] == sorted(
        [
            "api",
            "cancel",
            "export",
            "get",
            "ingest",
            "list",
            "prune",
            "stats",
            "status",
            "submit",
            "tenants",
            "tokens",
            "up",
            "webhooks",
            "worker",
        ]
    )
    assert [line for line in commands if line.rstrip().endswith("...")] == []


class FakeService:
    """Answers the client's requests in process (httpx.MockTransport under the Python client) and records them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: dict[str, Any]) -> None:
        self.requests: list[httpx.Request] = []
        self.answers = answers
        transport = httpx.MockTransport(self.handle)
        monkeypatch.setattr(
            client,
            "_client",
            lambda settings: AsyncClient(settings.ingest_url, settings.status_url, retries=0, transport=transport),
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=self.answers[request.url.path])


def test_list_accepts_a_status_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    service = FakeService(monkeypatch, {"/scans": {"scans": [], "next_cursor": None}})

    code, out = run(["list", "--status", "error", "--status-url", "http://scanq.test"])

    assert code == 0, out
    assert [r.url.params.get("status") for r in service.requests] == ["Error"]


def test_stats_says_when_no_scan_is_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {"Accepted": 0, "Running": 0, "Complete": 3, "Error": 0, "Cancelled": 0}
    FakeService(monkeypatch, {"/stats": {"counts": counts, "total": 3, "oldest_accepted_age_s": None}})

    code, out = run(["stats", "--status-url", "http://scanq.test"])

    assert code == 0, out
    assert "oldest_accepted_age_s: none (no scan is waiting)" in out.splitlines()
    assert "total: 3" in out.splitlines()


def test_submit_rejects_a_malformed_option() -> None:
    code, out = run(["submit", "--option", "novalue", "--ingest-url", "http://127.0.0.1:1"])
    assert code == 2
    assert "key=value" in out


def test_options_are_json_when_they_parse_as_json() -> None:
    assert parse_options(["min_sleep=0.1", "name=web", "deep=true", "ports=[80,443]", "empty="]) == {
        "min_sleep": 0.1,
        "name": "web",
        "deep": True,
        "ports": [80, 443],
        "empty": "",
    }


def test_tables_align_columns() -> None:
    assert _table(["status", "scans"], [("Complete", 12), ("Error", None)]).splitlines() == [
        "status    scans",
        "--------  -----",
        "Complete  12",
        "Error",
    ]


def test_version_comes_from_the_package_metadata() -> None:
    code, out = run(["--version"])
    assert (code, out) == (0, f"scanq {importlib.metadata.version('scanq')}\n")
