"""``scanq ingest|status --processes 2`` and ``scanq up --ingest-processes 2 --status-processes 2``: two real
processes serve one port.

Which process answered a connection is read from the kernel, not from the
service: the connection's server end is a socket in exactly one child's
descriptor table (``/proc/net/tcp`` gives its inode, ``/proc/PID/fd`` its owner).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scanq.ids import new_scan_id
from scanq.models import NewScan
from scanq.store import open_store
from tests.acceptance.conftest import (
    EXIT_WITHIN_S,
    ScanqProcess,
    Spawn,
    child_pids,
    cmdline,
    free_port,
    is_alive,
    supervised_by,
    wait_http_ready,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

DEADLINE_S = 60.0  # generous: the machine may be loaded, and SecantusDB is slow
BODY = json.dumps({"target": "example.com", "scanner": "noop"})
CALLS_PER_CONNECTION = 3
SEEDED = 5  # scans stored before a status service starts, for it to read

Call = tuple[str, str, str | None]  # method, path, JSON body
Answer = tuple[int, Any]  # status code, JSON body


@dataclass(frozen=True)
class Traffic:
    """What a test sends to a service on each new connection, and what the store holds afterwards.

    Args:
        calls: the requests made one after the other on the connection.
        check: fails unless the answers are right (their status codes and bodies).
        seeded: scans stored before the service started.
        stored_per_connection: scans each connection's calls store.
    """

    calls: tuple[Call, ...]
    check: Callable[[list[Answer]], None]
    seeded: int = 0
    stored_per_connection: int = 0


def submissions() -> Traffic:
    """Ingest: ``CALLS_PER_CONNECTION`` submissions, each a 202."""

    def check(answers: list[Answer]) -> None:
        assert [code for code, _ in answers] == [202] * CALLS_PER_CONNECTION, answers

    calls = (("POST", "/scans", BODY),) * CALLS_PER_CONNECTION
    return Traffic(calls=calls, check=check, stored_per_connection=CALLS_PER_CONNECTION)


def reads(database_url: str) -> Traffic:
    """Status: store ``SEEDED`` scans now; on each connection read one by id (both paths) and list a page."""

    async def seed() -> list[str]:
        async with open_store(database_url) as store:
            scans = [
                NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), scanner="noop") for _ in range(SEEDED)
            ]
            return [created.scan.scan_id for created in await store.create_many(scans=scans)]

    scan_ids = asyncio.run(seed())
    wanted = scan_ids[0]

    def check(answers: list[Answer]) -> None:
        assert [code for code, _ in answers] == [200] * CALLS_PER_CONNECTION, answers
        (_, short), (_, page), (_, full) = answers
        assert short["scan_id"] == full["scan_id"] == wanted
        assert sorted(scan["scan_id"] for scan in page["scans"]) == sorted(scan_ids)

    calls: tuple[Call, ...] = (("GET", f"/{wanted}", None), ("GET", "/scans", None), ("GET", f"/scans/{wanted}", None))
    return Traffic(calls=calls, check=check, seeded=SEEDED)


def service_children(parent: ScanqProcess, service: str, *, count: int) -> list[int]:
    """The pids of the parent's ``scanq SERVICE`` children, once ``count`` of them run."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = [pid for pid in child_pids(parent.pid) if cmdline(pid).endswith(f"scanq {service}")]
        if len(found) == count:
            return sorted(found)
        assert parent.popen.poll() is None and time.monotonic() < deadline, (found, parent.output())
        time.sleep(0.1)


def socket_inode(*, server_port: int, client_port: int) -> str | None:
    """The inode of the server end of the loopback connection from ``client_port`` to ``server_port``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                return fields[9]
    return None


def listening_inode(port: int) -> str:
    """The inode of the socket listening on ``port`` (state 0A in ``/proc/net/tcp``)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                return fields[9]
    raise AssertionError(f"nothing listens on {port}")


def holders_of(inode: str, pids: list[int]) -> list[int]:
    """Which of ``pids`` have the socket ``inode`` open."""
    target = f"socket:[{inode}]"
    found = []
    for pid in pids:
        try:
            links = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for link in links:
            try:
                if os.readlink(link) == target:
                    found.append(pid)
                    break
            except OSError:
                continue
    return sorted(found)


def owner_of(inode: str, pids: list[int]) -> int | None:
    holders = holders_of(inode, pids)
    return holders[0] if holders else None


def exchange_on_new_connection(port: int, pids: list[int], traffic: Traffic) -> int | None:
    """Open a connection, make the traffic's calls on it and check the answers; return which pid served it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        answers: list[Answer] = []
        for method, path, body in traffic.calls:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            answers.append((answer.status, json.loads(answer.read() or b"null")))
        traffic.check(answers)
        assert connection.sock is not None
        inode = socket_inode(server_port=port, client_port=connection.sock.getsockname()[1])
        return owner_of(inode, pids) if inode else None
    finally:
        connection.close()


def serve_until_each_answered(port: int, pids: list[int], wanted: set[int], traffic: Traffic) -> Counter[int | None]:
    """Exchange on fresh connections until each of ``wanted`` has served one; every answer must be right."""
    served: Counter[int | None] = Counter()
    deadline = time.monotonic() + DEADLINE_S
    while not wanted <= set(served):
        served[exchange_on_new_connection(port, pids, traffic)] += 1
        assert time.monotonic() < deadline, f"served so far {dict(served)}, wanted {wanted}"
    return served


def stored_scans(database_url: str) -> int:
    async def count() -> int:
        async with open_store(database_url) as store:
            stats = await store.stats()
        return sum(stats.counts.values())

    return asyncio.run(count())


def assert_stops_with_every_child(parent: ScanqProcess, children: list[int]) -> None:
    parent.signal(signal.SIGTERM)
    assert parent.wait(EXIT_WITHIN_S) == 0, parent.output()
    deadline = time.monotonic() + EXIT_WITHIN_S
    while any(is_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in children if is_alive(pid)] == []
    assert supervised_by({parent.pid}) == []


@pytest.mark.parametrize(
    ("service", "database_url"),
    [
        pytest.param("ingest", "sqlite", id="ingest-sqlite"),
        pytest.param("ingest", "postgres", id="ingest-postgres"),
        pytest.param("ingest", "mongo", id="ingest-mongo"),
        pytest.param("status", "sqlite", id="status-sqlite"),
        pytest.param("status", "postgres", id="status-postgres"),
        pytest.param("status", "mongo", id="status-mongo"),
    ],
    indirect=["database_url"],
)
def test_two_processes_share_a_port_survive_a_killed_one_and_stop_together(
    service: str, database_url: str, spawn: Spawn
) -> None:
    port = free_port()
    traffic = submissions() if service == "ingest" else reads(database_url)
    env = {"SCANQ_DATABASE_URL": database_url, f"SCANQ_{service.upper()}_PORT": str(port)}
    parent = spawn(service, "--processes", "2", env=env)
    wait_http_ready(f"http://127.0.0.1:{port}/readyz", process=parent, timeout_s=DEADLINE_S)
    parent.wait_for_output(f"[{service}] http://127.0.0.1:{port}; 2 processes, one socket", timeout_s=DEADLINE_S)
    first, second = service_children(parent, service, count=2)
    for n in (1, 2):
        parent.wait_for_output(f"[{service}-{n}] ", timeout_s=DEADLINE_S)

    served = serve_until_each_answered(port, [first, second], {first, second}, traffic)
    assert None not in served, served  # every connection was served by one of the two children

    os.kill(first, signal.SIGKILL)
    # The other process goes on accepting on the same socket at once: nothing is refused meanwhile.
    for _ in range(5):
        pid = exchange_on_new_connection(port, child_pids(parent.pid), traffic)
        assert pid is not None and pid != first
    parent.wait_for_output(f"(pid {first}) exited with code -9; restarting", timeout_s=DEADLINE_S)
    restarted = [pid for pid in service_children(parent, service, count=2) if pid != second]
    assert len(restarted) == 1 and first not in restarted
    wait_http_ready(f"http://127.0.0.1:{port}/healthz", process=parent, timeout_s=DEADLINE_S)
    served_after = serve_until_each_answered(port, [second, *restarted], {second, *restarted}, traffic)

    assert_stops_with_every_child(parent, [second, *restarted])
    connections = served.total() + 5 + served_after.total()
    assert stored_scans(database_url) == traffic.seeded + traffic.stored_per_connection * connections


def test_up_runs_two_processes_of_each_service_on_its_port(spawn: Spawn, sqlite_url: str) -> None:
    ingest_port, status_port = free_port(), free_port()
    env = {
        "SCANQ_DATABASE_URL": sqlite_url,
        "SCANQ_INGEST_PORT": str(ingest_port),
        "SCANQ_STATUS_PORT": str(status_port),
        "SCANQ_SHUTDOWN_SECONDS": "1",
    }
    up = spawn("up", "--ingest-processes", "2", "--status-processes", "2", "--workers", "1", env=env)
    wait_http_ready(f"http://127.0.0.1:{ingest_port}/readyz", process=up, timeout_s=DEADLINE_S)
    wait_http_ready(f"http://127.0.0.1:{status_port}/readyz", process=up, timeout_s=DEADLINE_S)
    ingest = service_children(up, "ingest", count=2)
    status = service_children(up, "status", count=2)
    up.wait_for_output(f"ingest  http://127.0.0.1:{ingest_port}   (GET / queues a scan; 2 processes, one socket)")
    up.wait_for_output(f"status  http://127.0.0.1:{status_port}   (GET /<id>, /scans, /stats; 2 processes, one socket)")
    # Each listening socket is held by its own service's children only (and the parent): no worker, no other service.
    children = child_pids(up.pid)
    assert holders_of(listening_inode(ingest_port), children) == ingest
    assert holders_of(listening_inode(status_port), children) == status

    served = serve_until_each_answered(ingest_port, ingest, set(ingest), submissions())

    # The worker runs what both ingest processes stored, and both status processes count it.
    accepted = CALLS_PER_CONNECTION * served.total()

    def check(answers: list[Answer]) -> None:
        [(code, stats)] = answers
        assert code == 200 and stats["total"] == accepted, answers

    counts = Traffic(calls=(("GET", "/stats", None),), check=check)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", status_port, timeout=30)
        connection.request("GET", "/stats")
        stats = json.loads(connection.getresponse().read())
        connection.close()
        if stats["counts"]["Complete"] == accepted:
            break
        assert time.monotonic() < deadline, (stats, accepted)
        time.sleep(0.2)
    serve_until_each_answered(status_port, status, set(status), counts)

    assert_stops_with_every_child(up, child_pids(up.pid))


@pytest.mark.parametrize("service", ["ingest", "status"])
def test_a_taken_port_stops_the_parent_before_any_child_starts(service: str, spawn: Spawn, sqlite_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "SCANQ_DATABASE_URL": sqlite_url,
            f"SCANQ_{service.upper()}_PORT": str(port),
            "SCANQ_LOG_LEVEL": "WARNING",
        }
        parent = spawn(service, "--processes", "2", env=env)

        assert parent.wait(EXIT_WITHIN_S) == 78, parent.output()
    assert parent.output().splitlines() == [f"Error: cannot listen on http://127.0.0.1:{port}: Address already in use"]
