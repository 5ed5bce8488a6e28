"""``scanq up`` as ``./run`` starts it: real processes on free ports, HTTP only, clean stop, no orphans."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import time
from typing import Any

import httpx
import pytest

from tests.acceptance.conftest import (
    EXIT_WITHIN_S,
    ScanqProcess,
    Spawn,
    child_pids,
    cmdline,
    free_port,
    is_alive,
    wait_http_ready,
)

pytestmark = pytest.mark.slow

FAILURE_RATE = 0.3
BY_GET = 20
BY_POST = 60
BY_BATCH = 220
TOTAL = BY_GET + BY_POST + BY_BATCH
# How far (in standard deviations) the observed failure count may stray from the expected one: a false alarm
# at 5 sigma happens about once in 1.7 million runs.
FAILURE_SIGMAS = 5.0
DEADLINE_S = 30.0
STOP_WITHIN_S = 20.0  # a generous ceiling on a clean stop (the grace period is 1 s), for loaded machines


def legacy_env(database_url: str, ingest_port: int, status_port: int) -> dict[str, str]:
    """The original system's variable names, as ./run passes them through."""
    return {
        "INGEST_PORT": str(ingest_port),
        "STATUS_PORT": str(status_port),
        "MIN_SLEEP": "0.01",
        "MAX_SLEEP": "0.1",
        "CHANCE_OF_FAILURE": str(FAILURE_RATE),
        "SCANQ_DATABASE_URL": database_url,
        "SCANQ_SHUTDOWN_SECONDS": "1",
        "SCANQ_POLL_SECONDS": "0.5",
    }


def start_up(
    spawn: Spawn, database_url: str, *args: str, env: dict[str, str] | None = None
) -> tuple[ScanqProcess, str, str]:
    ingest_port, status_port = free_port(), free_port()
    up = spawn("up", *args, env={**legacy_env(database_url, ingest_port, status_port), **(env or {})})
    ingest, status = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{status_port}"
    wait_http_ready(f"{ingest}/healthz", process=up)
    wait_http_ready(f"{status}/healthz", process=up)
    return up, ingest, status


def wait_until_workers_started(up: ScanqProcess, *, workers: int) -> None:
    """Wait until every worker's claim loop runs, so that each can take part (a loaded machine starts them late)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        lines = up.output().splitlines()
        waiting = [
            n
            for n in range(1, workers + 1)
            if not any(line.startswith(f"[worker-{n}] ") and " started: concurrency" in line for line in lines)
        ]
        if not waiting:
            return
        assert up.popen.poll() is None and time.monotonic() < deadline, (waiting, up.output())
        time.sleep(0.1)


def wait_until_all_finished(client: httpx.Client, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        stats = client.get(f"{status}/stats").json()
        counts = stats["counts"]
        if stats["total"] == TOTAL and counts["Accepted"] == 0 and counts["Running"] == 0:
            return dict(stats)
        assert time.monotonic() < deadline, stats
        time.sleep(0.2)


def children_of(up: ScanqProcess, *, workers: int) -> dict[int, str]:
    """The supervisor's live children (pid → command line), once all of them (ingest, status, workers) run."""
    deadline = time.monotonic() + DEADLINE_S
    expected = sorted(["ingest", "status"] + ["worker"] * workers)
    while True:
        children = {pid: cmdline(pid) for pid in child_pids(up.pid)}
        # A child just forked still shows the supervisor's command line until it execs.
        if sorted(line.rsplit(" ", 1)[-1] for line in children.values()) == expected:
            return children
        assert time.monotonic() < deadline, children
        time.sleep(0.1)


# Not on the SecantusDB test server: it takes ~25 s here; the crash test covers MongoDB with real processes.
@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_up_runs_the_pipeline_and_stops_cleanly(database_url: str, spawn: Spawn) -> None:
    up, ingest, status = start_up(spawn, database_url, "--workers", "2", env={"SCANQ_NOT_A_SETTING": "1"})
    wait_until_workers_started(up, workers=2)

    with httpx.Client(timeout=10.0) as client:
        ids: list[str] = []
        for _ in range(BY_GET):
            answer = client.get(f"{ingest}/")
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/plain")
            ids.append(answer.text.strip())
        for _ in range(BY_POST):
            answer = client.post(f"{ingest}/scans", json={"target": "example.com"})
            assert answer.status_code == 202
            assert answer.headers["location"].endswith(answer.json()["scan_id"])
            ids.append(answer.json()["scan_id"])
        answer = client.post(f"{ingest}/scans/batch", json={"scans": [{} for _ in range(BY_BATCH)]})
        assert answer.status_code == 202, answer.text
        ids.extend(scan["scan_id"] for scan in answer.json()["scans"])
        assert len(set(ids)) == TOTAL

        stats = wait_until_all_finished(client, status)
        statuses = {scan_id: client.get(f"{status}/{scan_id}").json() for scan_id in ids}

        missing = client.get(f"{status}/no-such-scan")
        unknown_uuid = client.get(f"{status}/scans/00000000-0000-7000-8000-000000000000")

        listed: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 70} | ({"cursor": cursor} if cursor else {})
            page = client.get(f"{status}/scans", params=params).json()
            assert len(page["scans"]) <= 70
            listed.extend(scan["scan_id"] for scan in page["scans"])
            cursor = page["next_cursor"]
            if cursor is None:
                break

    assert {scan["status"] for scan in statuses.values()} <= {"Complete", "Error"}
    errors = [scan for scan in statuses.values() if scan["status"] == "Error"]
    assert all(scan["error"] for scan in errors)
    assert all(scan["result"] for scan in statuses.values() if scan["status"] == "Complete")
    expected, spread = TOTAL * FAILURE_RATE, FAILURE_SIGMAS * math.sqrt(TOTAL * FAILURE_RATE * (1 - FAILURE_RATE))
    assert expected - spread <= len(errors) <= expected + spread, len(errors)
    assert stats["counts"]["Error"] == len(errors)
    assert len({scan["history"][-1]["worker"] for scan in statuses.values()}) == 2  # both workers took part

    assert missing.status_code == 404
    assert missing.json() == {"scan_id": "no-such-scan", "status": "Not Found"}
    assert unknown_uuid.status_code == 404
    assert unknown_uuid.json() == {"scan_id": "00000000-0000-7000-8000-000000000000", "status": "Not Found"}

    assert listed == sorted(ids, reverse=True)  # every scan once, newest first

    children = children_of(up, workers=2)
    roles = sorted(line.split(" -m scanq ")[-1] for line in children.values())
    assert roles == ["ingest", "status", "worker", "worker"]
    output = up.output()
    for prefix in ("[up] ingest  http://127.0.0.1", "[ingest] ", "[status] ", "[worker-1] ", "[worker-2] "):
        assert prefix in output, output

    started = time.monotonic()
    up.signal(signal.SIGTERM)
    assert up.wait(STOP_WITHIN_S) == 0, up.output()
    assert time.monotonic() - started < STOP_WITHIN_S
    assert [pid for pid in children if is_alive(pid)] == []

    output = up.output()
    # The supervisor warns about a SCANQ_* typo once; its children do not repeat it.
    assert output.count("SCANQ_NOT_A_SETTING is not a scanq setting") == 1, output
    # The banner says what the mock scanner will do with the original variables.
    assert "[up] mock scanner: sleeps 0.01-0.1 s, fails 30% of scans" in output
    assert "(MIN_SLEEP=0.01 MAX_SLEEP=0.1 CHANCE_OF_FAILURE=0.3)" in output
    # A normal stop is not reported as a child exiting with a signal's code.
    assert "exited with code" not in output
    for name in ("ingest", "status", "worker-1", "worker-2"):
        assert f"[{name}] stopped\n" in output


def test_up_stops_at_once_when_a_port_is_taken(spawn: Spawn, sqlite_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**legacy_env(sqlite_url, port, free_port()), "SCANQ_WORKERS": "1"}

        up = spawn("up", env=env)

        assert up.wait(STOP_WITHIN_S + 10) == 1, up.output()
    lines = up.output().splitlines()
    assert (
        lines[-1]
        == f"[up] stopped: ingest cannot start: cannot listen on http://127.0.0.1:{port}: Address already in use"
    )
    assert not any("restarting" in line for line in lines), lines


def test_up_refuses_a_host_that_cannot_be_one(spawn: Spawn, sqlite_url: str) -> None:
    up = spawn("up", env={**legacy_env(sqlite_url, free_port(), free_port()), "SCANQ_HOST": "999.1.1.1"})

    assert up.wait(STOP_WITHIN_S) == 2, up.output()
    assert up.output().splitlines() == ["Error: SCANQ_HOST: must be an IP address or a host name (got '999.1.1.1')"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_up_restarts_a_crashed_child_and_its_children_die_with_it(database_url: str, spawn: Spawn) -> None:
    up, _, _ = start_up(spawn, database_url, "--workers", "1", "--log-format", "json")
    children = children_of(up, workers=1)
    [worker_pid] = [pid for pid, line in children.items() if line.endswith("scanq worker")]

    up.wait_for_output('{"process": "worker-1"')
    os.kill(worker_pid, signal.SIGKILL)
    up.wait_for_output(f"worker-1 (pid {worker_pid}) exited with code -9; restarting")
    restarted = children_of(up, workers=1)
    assert worker_pid not in restarted
    assert sum(line.endswith("scanq worker") for line in restarted.values()) == 1

    # Killed without a chance to clean up, the supervisor still leaves no orphan behind.
    up.signal(signal.SIGKILL)
    up.wait(EXIT_WITHIN_S)
    deadline = time.monotonic() + STOP_WITHIN_S
    while any(is_alive(pid) for pid in restarted) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in restarted if is_alive(pid)] == []
    # With --log-format json every line, the supervisor's and each child's, is one JSON object naming its process.
    entries = [json.loads(line) for line in up.output().splitlines()]
    assert {"up", "ingest", "status", "worker-1"} <= {entry.get("process") for entry in entries}
    assert all("message" in entry and "level" in entry for entry in entries)
