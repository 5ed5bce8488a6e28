"""``GET /events`` of a real ``scanq status`` process resumes with ``Last-Event-ID`` without a gap or a repeat.

The test is the only client and the only writer: it makes the transitions itself through the store (as
ingest and a worker would, from another process than the one streaming), reads some events, disconnects,
makes more transitions, and reconnects after the last event it read: the stream must go on with exactly
the ones it missed, in order, then with new ones as they happen. On SQLite (a ``data_version`` watcher
wakes the stream) and PostgreSQL (``LISTEN``; events are read once settled).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from scanq.ids import new_scan_id
from scanq.models import Finish, Lease, NewScan, Outcome, Scan
from scanq.store import Store, open_store
from tests.acceptance.conftest import Spawn, free_port, wait_http_ready

pytestmark = pytest.mark.slow

DEADLINE_S = 20.0
WORKER = "sse-test:1:w"


@dataclass(frozen=True)
class Event:
    """One server-sent event as it came over the wire."""

    id: str
    event: str
    data: dict[str, Any]

    @property
    def transition(self) -> tuple[str, str]:
        return self.data["scan_id"], self.data["status"]


async def sse_events(lines: AsyncIterator[str]) -> AsyncGenerator[Event]:
    """The events in the lines of a ``text/event-stream`` (comments such as the keep-alive skipped)."""
    fields: dict[str, str] = {}
    data: list[str] = []
    async for line in lines:
        if line == "":
            if data:
                yield Event(
                    id=fields.get("id", ""), event=fields.get("event", "message"), data=json.loads("\n".join(data))
                )
            fields, data = {}, []
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value


@asynccontextmanager
async def stream(
    client: httpx.AsyncClient, *, headers: dict[str, str] | None = None, **params: str
) -> AsyncIterator[AsyncIterator[Event]]:
    """``GET /events`` open, its answer checked and its first line (``retry:``) read; the connection closes
    when the block ends."""
    async with client.stream("GET", "/events", headers=headers, params=params) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()  # ends with the response
        # The server sends it first, once it knows where the stream starts: what is written now is after.
        async with asyncio.timeout(DEADLINE_S):
            assert (await anext(lines)).startswith("retry:")
        async with aclosing(sse_events(lines)) as events:
            yield events


async def take(events: AsyncIterator[Event], count: int) -> list[Event]:
    """The next ``count`` events (each must come within the deadline)."""
    async with asyncio.timeout(DEADLINE_S):
        return [await anext(events) for _ in range(count)]


def check_wire_form(event: Event) -> None:
    """The ``id:`` and ``event:`` lines repeat what the data says, and the data has the spec's fields."""
    assert set(event.data) == {"event_id", "type", "scan_id", "tenant", "status", "attempt", "at"}, event
    assert event.id and event.id == event.data["event_id"], event
    assert event.event == event.data["type"], event
    assert event.data["tenant"] == "default"


async def submit(store: Store) -> str:
    created = await store.create(scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), scanner="noop"))
    return created.scan.scan_id


async def claim_one(store: Store) -> Scan:
    claimed = await store.claim(worker_id=WORKER, limit=1, lease_s=60)
    assert len(claimed) == 1
    return claimed[0]


async def finish(store: Store, scan: Scan, outcome: Outcome) -> None:
    lease = Lease(scan_id=scan.scan_id, worker_id=WORKER, attempt=scan.attempt)
    details: dict[str, Any] = {"result": {"ok": True}} if outcome == Outcome.COMPLETE else {"error": "boom"}
    assert await store.finish(finishes=[Finish(lease=lease, outcome=outcome, **details)]) == [True]


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
async def test_a_reconnect_with_last_event_id_gets_exactly_the_events_it_missed(
    database_url: str, spawn: Spawn
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"SCANQ_DATABASE_URL": database_url, "SCANQ_STATUS_PORT": str(port), "SCANQ_STATUS_URL": url}
    status = spawn("status", env=env)
    await asyncio.to_thread(wait_http_ready, f"{url}/readyz", process=status)
    timeout = httpx.Timeout(DEADLINE_S, connect=5.0)

    async with open_store(database_url) as store, httpx.AsyncClient(base_url=url, timeout=timeout) as client:
        # Connected: the stream starts from now. A is submitted and starts, B is submitted.
        async with stream(client) as events:
            a = await submit(store)
            running_a = await claim_one(store)
            assert running_a.scan_id == a
            b = await submit(store)
            first = await take(events, 3)
        assert [e.transition for e in first] == [(a, "Accepted"), (a, "Running"), (b, "Accepted")]
        assert [e.event for e in first] == ["scan.accepted", "scan.started", "scan.accepted"]
        for e in first:
            check_wire_form(e)

        # Disconnected: A completes, B runs and fails, C is submitted.
        await finish(store, running_a, Outcome.COMPLETE)
        running_b = await claim_one(store)
        assert running_b.scan_id == b
        await finish(store, running_b, Outcome.ERROR)
        c = await submit(store)

        # Back after the last event read: exactly the four missed, in order, then the next one live.
        async with stream(client, headers={"Last-Event-ID": first[-1].id}) as events:
            missed = await take(events, 4)
            assert [e.transition for e in missed] == [(a, "Complete"), (b, "Running"), (b, "Error"), (c, "Accepted")]
            assert [e.event for e in missed] == ["scan.completed", "scan.started", "scan.failed", "scan.accepted"]
            await store.cancel(scan_id=c)
            (cancelled,) = await take(events, 1)
        assert cancelled.transition == (c, "Cancelled")
        ids = [e.id for e in [*first, *missed, cancelled]]
        assert len(set(ids)) == len(ids)
        for e in [*missed, cancelled]:
            check_wire_form(e)

        # ?last_event_id= does the same (for a client that cannot set headers): from B's Error on.
        async with stream(client, last_event_id=missed[2].id) as events:
            again = await take(events, 2)
        assert [e.id for e in again] == [missed[3].id, cancelled.id]
