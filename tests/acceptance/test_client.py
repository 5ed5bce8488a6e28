"""The CLI client commands against a real ``scanq api`` process and a real worker."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest
from click.testing import CliRunner, Result

from scanq.cli import cli
from tests.acceptance.conftest import Spawn, free_port, wait_http_ready

pytestmark = pytest.mark.slow

SCANS = 12
DEADLINE_S = 30.0
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")
UUID_LINE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$", re.MULTILINE)


@pytest.fixture
def api_url(database_url: str, spawn: Spawn) -> str:
    port = free_port()
    env = {
        "SCANQ_DATABASE_URL": database_url,
        "SCANQ_INGEST_PORT": str(port),
        "SCANQ_MOCK_MIN_SLEEP": "0.01",
        "SCANQ_MOCK_MAX_SLEEP": "0.05",
        "SCANQ_MOCK_FAILURE_RATE": "0",
        "SCANQ_POLL_SECONDS": "0.5",
        "SCANQ_HEARTBEAT_SECONDS": "0.2",
        "SCANQ_SHUTDOWN_SECONDS": "0.5",
    }
    api, worker = spawn("api", env=env), spawn("worker", env=env)
    url = f"http://127.0.0.1:{port}"
    wait_http_ready(f"{url}/healthz", process=api)
    worker.wait_for_output("started")
    return url


def scanq(api_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--ingest-url", api_url, "--status-url", api_url])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_submit_wait_get_list_stats_and_cancel(api_url: str) -> None:
    # --max-batch 5: the 12 scans go in three POST /scans/batch requests.
    submitted = scanq(api_url, "submit", "--count", str(SCANS), "--target", "example.com", "--max-batch", "5", "--wait")
    assert submitted.exit_code == 0, submitted.output
    ids = submitted.stdout.split()
    assert len(ids) == SCANS and all(UUID.match(scan_id) for scan_id in ids)
    assert re.search(rf"Complete\s+{SCANS}", submitted.stderr), submitted.stderr

    got = scanq(api_url, "get", ids[0])
    assert got.exit_code == 0, got.output
    scan = json.loads(got.stdout)
    assert (scan["scan_id"], scan["status"], scan["target"]) == (ids[0], "Complete", "example.com")

    listed = scanq(api_url, "list", "--limit", "5", "--status", "Complete")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["scan_id", "status", "scanner", "target", "attempt", "created_at"]
    assert [line.split()[0] for line in lines[2:7]] == sorted(ids, reverse=True)[:5]
    assert lines[7].startswith("next page: --cursor ")

    stats = scanq(api_url, "stats")
    assert stats.exit_code == 0, stats.output
    assert re.search(rf"^Complete\s+{SCANS}$", stats.stdout, re.MULTILINE), stats.stdout

    slow = scanq(api_url, "submit", "--option", "min_sleep=30", "--option", "max_sleep=30")
    assert slow.exit_code == 0, slow.output
    [slow_id] = slow.stdout.split()
    deadline = time.monotonic() + DEADLINE_S
    while json.loads(scanq(api_url, "get", slow_id).stdout)["status"] != "Running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelled = scanq(api_url, "cancel", slow_id)
    assert cancelled.exit_code == 0, cancelled.output
    assert cancelled.stdout.startswith(f"{slow_id} ")
    deadline = time.monotonic() + DEADLINE_S
    while json.loads(scanq(api_url, "get", slow_id).stdout)["status"] != "Cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.05)

    finished = scanq(api_url, "cancel", ids[0])
    assert finished.exit_code == 1
    assert "409" in finished.output

    unknown = scanq(api_url, "get", "00000000-0000-7000-8000-000000000000")
    assert unknown.exit_code == 1
    assert "404" in unknown.output


def test_ctrl_c_while_waiting_says_the_scans_keep_running(spawn: Spawn, sqlite_url: str) -> None:
    # No worker: the scans stay Accepted, so `submit --wait` waits until it is interrupted.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = spawn("api", env={"SCANQ_DATABASE_URL": sqlite_url, "SCANQ_INGEST_PORT": str(port)})
    wait_http_ready(f"{url}/healthz", process=api)
    submit = spawn("submit", "--count", "3", "--wait", "--ingest-url", url, "--status-url", url)
    deadline = time.monotonic() + 20
    while len(UUID_LINE.findall(submit.output())) < 3:
        assert time.monotonic() < deadline, submit.output()
        time.sleep(0.05)

    submit.signal(signal.SIGINT)

    # A generous deadline (an exit writes coverage data); SIGINT is the terminal's even in a background run.
    assert submit.wait(120) != 0
    output = submit.output()
    assert "stopped waiting: the 3 scan(s) keep running; follow them with `scanq list`" in output, output
    assert "Traceback" not in output
