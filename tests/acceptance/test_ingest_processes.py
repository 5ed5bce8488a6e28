"""``scanq ingest --processes 2`` and ``scanq up --ingest-processes 2``: two real processes serve one port.

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
from pathlib import Path

import pytest

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
SCANS_PER_CONNECTION = 3


def ingest_children(parent: ScanqProcess, *, count: int) -> list[int]:
    """The pids of the parent's ``scanq ingest`` children, once ``count`` of them run."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = [pid for pid in child_pids(parent.pid) if cmdline(pid).endswith("scanq ingest")]
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


def owner_of(inode: str, pids: list[int]) -> int | None:
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            links = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for link in links:
            try:
                if os.readlink(link) == target:
                    return pid
            except OSError:
                continue
    return None


def submit_on_new_connection(port: int, pids: list[int]) -> tuple[int | None, list[int]]:
    """Open a connection, submit ``SCANS_PER_CONNECTION`` scans on it; return which pid served it and the statuses."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        statuses = []
        for _ in range(SCANS_PER_CONNECTION):
            connection.request("POST", "/scans", body=BODY, headers={"Content-Type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            statuses.append(answer.status)
        assert connection.sock is not None
        inode = socket_inode(server_port=port, client_port=connection.sock.getsockname()[1])
        return (owner_of(inode, pids) if inode else None), statuses
    finally:
        connection.close()


def submit_until_served_by(port: int, pids: list[int], wanted: set[int]) -> Counter[int | None]:
    """Submit on fresh connections until each of ``wanted`` has served one; every submission must be a 202."""
    served: Counter[int | None] = Counter()
    deadline = time.monotonic() + DEADLINE_S
    while not wanted <= set(served):
        pid, statuses = submit_on_new_connection(port, pids)
        assert statuses == [202] * SCANS_PER_CONNECTION, statuses
        served[pid] += 1
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


@pytest.mark.parametrize("database_url", ["sqlite", "postgres", "mongo"], indirect=True)
def test_two_ingest_processes_share_a_port_survive_a_killed_one_and_stop_together(
    database_url: str, spawn: Spawn
) -> None:
    port = free_port()
    parent = spawn(
        "ingest", "--processes", "2", env={"SCANQ_DATABASE_URL": database_url, "SCANQ_INGEST_PORT": str(port)}
    )
    wait_http_ready(f"http://127.0.0.1:{port}/readyz", process=parent, timeout_s=DEADLINE_S)
    first, second = ingest_children(parent, count=2)
    for n in (1, 2):
        parent.wait_for_output(f"[ingest-{n}] ", timeout_s=DEADLINE_S)

    served = submit_until_served_by(port, [first, second], {first, second})
    assert None not in served, served  # every connection was served by one of the two children

    os.kill(first, signal.SIGKILL)
    # The other process goes on accepting on the same socket at once: nothing is refused meanwhile.
    for _ in range(5):
        pid, statuses = submit_on_new_connection(port, child_pids(parent.pid))
        assert statuses == [202] * SCANS_PER_CONNECTION
        assert pid is not None and pid != first
    parent.wait_for_output(f"(pid {first}) exited with code -9; restarting", timeout_s=DEADLINE_S)
    restarted = [pid for pid in ingest_children(parent, count=2) if pid != second]
    assert len(restarted) == 1 and first not in restarted
    wait_http_ready(f"http://127.0.0.1:{port}/healthz", process=parent, timeout_s=DEADLINE_S)
    served_after = submit_until_served_by(port, [second, *restarted], {second, *restarted})

    assert_stops_with_every_child(parent, [second, *restarted])
    accepted = SCANS_PER_CONNECTION * (served.total() + 5 + served_after.total())
    assert stored_scans(database_url) == accepted


def test_up_runs_two_ingest_processes_on_one_port(spawn: Spawn, sqlite_url: str) -> None:
    ingest_port, status_port = free_port(), free_port()
    env = {
        "SCANQ_DATABASE_URL": sqlite_url,
        "SCANQ_INGEST_PORT": str(ingest_port),
        "SCANQ_STATUS_PORT": str(status_port),
        "SCANQ_SHUTDOWN_SECONDS": "1",
    }
    up = spawn("up", "--ingest-processes", "2", "--workers", "1", env=env)
    wait_http_ready(f"http://127.0.0.1:{ingest_port}/readyz", process=up, timeout_s=DEADLINE_S)
    wait_http_ready(f"http://127.0.0.1:{status_port}/readyz", process=up, timeout_s=DEADLINE_S)
    ingest = ingest_children(up, count=2)
    up.wait_for_output(f"ingest  http://127.0.0.1:{ingest_port}   (GET / queues a scan; 2 processes, one socket)")

    served = submit_until_served_by(ingest_port, ingest, set(ingest))

    # The worker runs what both ingest processes stored.
    accepted = SCANS_PER_CONNECTION * served.total()
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
    assert stats["total"] == accepted

    assert_stops_with_every_child(up, child_pids(up.pid))


def test_a_taken_port_stops_the_parent_before_any_child_starts(spawn: Spawn, sqlite_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"SCANQ_DATABASE_URL": sqlite_url, "SCANQ_INGEST_PORT": str(port), "SCANQ_LOG_LEVEL": "WARNING"}
        parent = spawn("ingest", "--processes", "2", env=env)

        assert parent.wait(EXIT_WITHIN_S) == 78, parent.output()
    assert parent.output().splitlines() == [f"Error: cannot listen on http://127.0.0.1:{port}: Address already in use"]
