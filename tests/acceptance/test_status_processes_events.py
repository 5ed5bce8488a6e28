"""``scanq status --processes 2``: an event stream cut by a killed process resumes on the other, without a gap.

A server-sent event stream is one long connection to one child. When that
child dies, the client (an ``EventSource``) reconnects with the ``Last-Event-ID``
it last saw and lands on whichever child accepts: the ids are the store's, so
the stream must go on from the same place, whichever process serves it.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from scanq.ids import new_scan_id
from scanq.models import NewScan
from scanq.store import open_store
from tests.acceptance.conftest import Spawn, child_pids, free_port, wait_http_ready
from tests.acceptance.test_service_processes import DEADLINE_S, owner_of, service_children, socket_inode

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SCANS_EACH_TIME = 3


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data: dict[str, Any]


class EventStream:
    """``GET /events`` read frame by frame, on a connection whose serving process is known."""

    def __init__(self, port: int, *, last_event_id: str | None = None) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE_S)
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.connection.request("GET", "/events", headers=headers)
        self.response = self.connection.getresponse()
        assert self.response.status == 200, self.response.read()
        assert self.response.getheader("content-type", "").startswith("text/event-stream")
        # The stream's position is fixed before its head is sent: what is stored from now on is in it.
        assert self.response.readline() == b"retry: 2000\n"
        assert self.response.readline() == b"\n"

    def served_by(self, port: int, pids: list[int]) -> int | None:
        assert self.connection.sock is not None
        inode = socket_inode(server_port=port, client_port=self.connection.sock.getsockname()[1])
        return owner_of(inode, pids) if inode else None

    def frame(self) -> dict[str, str] | None:
        """The next frame's fields (keep-alive comments skipped), or None when the connection ended."""
        fields: dict[str, str] = {}
        while True:
            try:
                line = self.response.readline()
            except (ConnectionError, http.client.IncompleteRead):
                return None
            if line == b"":
                return None
            if line == b"\n":
                if fields:
                    return fields
                continue
            if line.startswith(b":"):
                continue
            name, _, value = line.decode().rstrip("\n").partition(": ")
            fields[name] = value

    def events(self, count: int) -> list[Event]:
        found: list[Event] = []
        while len(found) < count:
            fields = self.frame()
            assert fields is not None, f"the stream ended after {found}"
            found.append(Event(id=fields["id"], type=fields["event"], data=json.loads(fields["data"])))
        return found

    def ended(self) -> bool:
        """Whether the connection ends (after any frames still buffered) within the deadline."""
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if self.frame() is None:
                return True
        return False

    def close(self) -> None:
        self.connection.close()


def store_scans(database_url: str) -> list[str]:
    async def create() -> list[str]:
        async with open_store(database_url) as store:
            scans = [
                NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), scanner="noop")
                for _ in range(SCANS_EACH_TIME)
            ]
            return [created.scan.scan_id for created in await store.create_many(scans=scans)]

    return asyncio.run(create())


def test_an_event_stream_cut_by_a_killed_process_resumes_on_the_other_without_a_gap(
    spawn: Spawn, sqlite_url: str
) -> None:
    port = free_port()
    env = {"SCANQ_DATABASE_URL": sqlite_url, "SCANQ_STATUS_PORT": str(port)}
    parent = spawn("status", "--processes", "2", env=env)
    wait_http_ready(f"http://127.0.0.1:{port}/readyz", process=parent, timeout_s=DEADLINE_S)
    children = service_children(parent, "status", count=2)

    first = EventStream(port)
    serving = first.served_by(port, children)
    assert serving in children
    before = store_scans(sqlite_url)
    seen = first.events(SCANS_EACH_TIME)
    assert [(event.type, event.data["scan_id"]) for event in seen] == [("scan.accepted", id_) for id_ in before]

    os.kill(serving, signal.SIGKILL)
    assert first.ended(), "the stream of a killed process must end, so that its client reconnects"
    first.close()
    during = store_scans(sqlite_url)  # stored while the client is away

    resumed = EventStream(port, last_event_id=seen[-1].id)
    try:
        assert resumed.served_by(port, child_pids(parent.pid)) not in (serving, None)
        after = resumed.events(SCANS_EACH_TIME)
        assert [(event.type, event.data["scan_id"]) for event in after] == [("scan.accepted", id_) for id_ in during]
        assert len({event.id for event in [*seen, *after]}) == 2 * SCANS_EACH_TIME  # nothing sent twice
    finally:
        resumed.close()
    parent.wait_for_output(f"(pid {serving}) exited with code -9; restarting", timeout_s=DEADLINE_S)
