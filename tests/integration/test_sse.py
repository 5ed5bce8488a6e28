"""Server-sent events on the status service, over a memory store: ``GET /scans/{id}/events`` and ``GET /events``.

httpx's ``ASGITransport`` hands a response over only once the app has finished it, so these tests drive
the app as a server would: ``Stream`` calls it with an ASGI scope, reads each body chunk as it is sent,
and sends ``http.disconnect`` when the test leaves. The transitions are made through the store, as a
worker would (the stream learns of them from ``wait_for_events``, not from a timer).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.types import Message

from scanq.api import create_status_app
from scanq.api.edge import edge_protocol
from scanq.api.limits import STREAM_STOP_SCOPE_KEY, EdgeLimits
from scanq.api.server import bind
from scanq.auth import new_token
from scanq.config import Settings
from scanq.event_feed import EventFeed
from scanq.ids import new_scan_id
from scanq.models import Finish, Lease, NewScan, Outcome, Scan, Scope
from scanq.store.base import RETENTION_ROLE, WEBHOOK_ROLE
from scanq.store.memory import MemoryStore
from tests.integration.apps import app_over

DEADLINE_S = 10.0
WORKER = "sse-test:1:w"
EVENT_FIELDS = {"event_id", "type", "scan_id", "tenant", "status", "attempt", "at"}


@dataclass
class Event:
    id: str
    event: str
    data: dict[str, Any]

    @property
    def transition(self) -> tuple[str, str]:
        return self.data["scan_id"], self.data["status"]


@dataclass
class Stream:
    """One GET on the app, its answer read chunk by chunk as the app sends it."""

    app: Starlette
    path: str
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    chunks: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    scope: dict[str, Any] = field(default_factory=dict)
    text: str = ""  # everything read so far
    taken: int = 0  # events handed out by ``events``
    ended: bool = False
    _started: asyncio.Event = field(default_factory=asyncio.Event)
    _disconnect: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _sent_request: bool = False

    async def open(self) -> Stream:
        path, _, query = self.path.partition("?")
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1:10551"), *self.headers],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 10551),
            "state": {},
        }
        self._task = asyncio.create_task(self.app(self.scope, self._receive, self._send))
        async with asyncio.timeout(DEADLINE_S):
            await self._started.wait()
        return self

    async def _receive(self) -> Message:
        if not self._sent_request:
            self._sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._disconnect.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.response_headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
            self._started.set()
        elif message["type"] == "http.response.body":
            if message.get("body"):
                self.chunks.put_nowait(message["body"])
            if not message.get("more_body", False):
                self.chunks.put_nowait(None)

    async def body(self) -> bytes:
        """The whole body of an answer that ends (an error, a 204, a scan's finished stream)."""
        parts = []
        async with asyncio.timeout(DEADLINE_S):
            while (chunk := await self.chunks.get()) is not None:
                parts.append(chunk)
        self.ended = True
        return b"".join(parts)

    async def read_until(self, predicate: Any) -> None:
        async with asyncio.timeout(DEADLINE_S):
            while not predicate(self.text):
                chunk = await self.chunks.get()
                if chunk is None:
                    self.ended = True
                    return
                self.text += chunk.decode()

    async def events(self, count: int) -> list[Event]:
        """The next ``count`` events (comments skipped), each within the deadline."""
        wanted = self.taken + count
        await self.read_until(lambda text: len(parse(text)[0]) >= wanted)
        found = parse(self.text)[0]
        assert len(found) >= wanted, self.text
        self.taken = wanted
        return found[wanted - count : wanted]

    async def close(self) -> None:
        self._disconnect.set()
        if self._task is not None:
            async with asyncio.timeout(DEADLINE_S):
                await self._task


def parse(text: str) -> tuple[list[Event], str]:
    """The complete events in ``text`` (a block with data), and what follows the last complete block."""
    events = []
    *blocks, rest = text.split("\n\n")
    for block in blocks:
        fields: dict[str, str] = {}
        data: list[str] = []
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
        if data:
            events.append(Event(id=fields["id"], event=fields["event"], data=json.loads("\n".join(data))))
    return events, rest


@dataclass
class Service:
    store: MemoryStore
    app: Starlette

    @asynccontextmanager
    async def stream(self, path: str, **headers: str) -> AsyncIterator[Stream]:
        raw = [(name.replace("_", "-").lower().encode(), value.encode()) for name, value in headers.items()]
        stream = await Stream(self.app, path, raw).open()
        try:
            yield stream
        finally:
            await stream.close()

    @property
    def feed(self) -> EventFeed:
        feed: EventFeed = self.app.state.events
        return feed


@asynccontextmanager
async def serve(**settings: Any) -> AsyncIterator[Service]:
    url = f"memory://{uuid.uuid4()}"
    config = Settings(database_url=url, **settings)
    async with MemoryStore(url) as store, app_over(store, create_status_app, config) as app:
        yield Service(store=store, app=app)


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    async with serve() as served:
        yield served


async def submit(store: MemoryStore, tenant: str = "default") -> str:
    created = await store.create(
        scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), scanner="noop", tenant=tenant)
    )
    return created.scan.scan_id


async def claim(store: MemoryStore, scan_id: str) -> Scan:
    claimed = await store.claim(worker_id=WORKER, limit=100, lease_s=60)
    (mine,) = [scan for scan in claimed if scan.scan_id == scan_id]
    return mine


async def finish(store: MemoryStore, scan: Scan, outcome: Outcome = Outcome.COMPLETE) -> None:
    lease = Lease(scan_id=scan.scan_id, worker_id=WORKER, attempt=scan.attempt)
    details: dict[str, Any] = {"result": {"ok": True}} if outcome == Outcome.COMPLETE else {"error": "boom"}
    assert await store.finish(finishes=[Finish(lease=lease, outcome=outcome, **details)]) == [True]


def check_wire_form(event: Event) -> None:
    assert set(event.data) == EVENT_FIELDS, event
    assert event.id == event.data["event_id"] and event.event == event.data["type"], event


# -- one scan's stream ---------------------------------------------------------------------------


async def test_a_scan_stream_shows_accepted_running_complete_then_ends(service: Service) -> None:
    scan_id = await submit(service.store)

    async with service.stream(f"/scans/{scan_id}/events") as stream:
        (accepted,) = await stream.events(1)
        running = await claim(service.store, scan_id)
        (started,) = await stream.events(1)
        await finish(service.store, running)
        (completed,) = await stream.events(1)
        rest = await stream.body()

    assert stream.status == 200
    assert stream.response_headers["content-type"] == "text/event-stream"
    assert stream.response_headers["cache-control"] == "no-cache"
    assert [e.transition for e in (accepted, started, completed)] == [
        (scan_id, "Accepted"),
        (scan_id, "Running"),
        (scan_id, "Complete"),
    ]
    assert [e.event for e in (accepted, started, completed)] == ["scan.accepted", "scan.started", "scan.completed"]
    assert [e.data["attempt"] for e in (accepted, started, completed)] == [0, 1, 1]
    for event in (accepted, started, completed):
        check_wire_form(event)
        assert event.data["tenant"] == "default"
    assert rest == b"" and stream.ended  # the stream ended after the terminal event
    assert service.feed.readers == 0


async def test_the_stream_begins_with_retry(service: Service) -> None:
    scan_id = await submit(service.store)

    async with service.stream(f"/scans/{scan_id}/events") as stream:
        await stream.read_until(lambda text: "data:" in text)

    assert stream.text.startswith("retry: 2000\n\n")


async def test_a_finished_scan_replays_its_events_and_a_resume_after_the_end_is_204(service: Service) -> None:
    scan_id = await submit(service.store)
    await finish(service.store, await claim(service.store, scan_id), Outcome.ERROR)

    async with service.stream(f"/scans/{scan_id}/events") as stream:
        body = (await stream.body()).decode()
    events, _ = parse(body)
    async with service.stream(f"/scans/{scan_id}/events", last_event_id=events[-1].id) as after_end:
        nothing = await after_end.body()
    async with service.stream(f"/scans/{scan_id}/events", last_event_id=events[0].id) as after_first:
        missed, _ = parse((await after_first.body()).decode())

    assert [e.transition for e in events] == [(scan_id, "Accepted"), (scan_id, "Running"), (scan_id, "Error")]
    assert events[-1].event == "scan.failed"
    assert (after_end.status, nothing) == (204, b"")
    assert [e.id for e in missed] == [e.id for e in events[1:]]


async def test_a_finished_scan_whose_events_were_pruned_ends_with_one_made_from_the_record(
    service: Service,
) -> None:
    scan_id = await submit(service.store)
    await finish(service.store, await claim(service.store, scan_id))
    store = service.store
    assert await store.lead(role=WEBHOOK_ROLE, owner="test", term_s=60)
    await store.dispatch_events(owner="test")
    assert await store.lead(role=RETENTION_ROLE, owner="test", term_s=60)
    assert await store.prune_events(before=datetime.now(UTC) + timedelta(days=1), owner="test") == 3
    head = await store.events_head()

    async with service.stream(f"/scans/{scan_id}/events") as stream:
        events, _ = parse((await stream.body()).decode())

    assert [(e.id, *e.transition, e.event) for e in events] == [(head, scan_id, "Complete", "scan.completed")]
    check_wire_form(events[0])


async def test_unknown_scans_and_bad_event_ids_are_refused(service: Service) -> None:
    scan_id = await submit(service.store)

    async with service.stream("/scans/00000000-0000-7000-8000-000000000000/events") as unknown:
        unknown_body = json.loads(await unknown.body())
    async with service.stream("/scans/not-a-scan/events") as malformed:
        await malformed.body()
    async with service.stream(f"/scans/{scan_id}/events", last_event_id="not-an-event") as bad_id:
        bad_body = json.loads(await bad_id.body())
    async with service.stream(f"/scans/{scan_id}/events?last_event_id=") as empty:
        await empty.body()

    assert unknown.status == 404 and unknown_body["status"] == "Not Found"
    assert malformed.status == 404
    assert bad_id.status == 422 and bad_body["error"]["code"] == "invalid_request"
    assert empty.status == 422


async def test_a_keep_alive_comment_is_sent_when_nothing_happens(service: Service) -> None:
    service.app.state.streams.keepalive_s = 0.05
    scan_id = await submit(service.store)

    async with service.stream(f"/scans/{scan_id}/events") as stream:
        await stream.read_until(lambda text: ": keep-alive\n\n" in text)
        await stream.read_until(lambda text: text.count(": keep-alive\n\n") >= 2)

    assert len(parse(stream.text)[0]) == 1  # the Accepted event, then only comments


# -- every scan's stream: resume, filters, tenants -----------------------------------------------


async def test_events_resume_after_last_event_id_without_a_gap_or_a_repeat(service: Service) -> None:
    store = service.store
    async with service.stream("/events") as stream:
        a = await submit(store)
        running_a = await claim(store, a)
        b = await submit(store)
        first = await stream.events(3)
    assert [e.transition for e in first] == [(a, "Accepted"), (a, "Running"), (b, "Accepted")]

    # Away: A completes, B runs and fails, C is submitted.
    await finish(store, running_a)
    await finish(store, await claim(store, b), Outcome.ERROR)
    c = await submit(store)

    async with service.stream("/events", last_event_id=first[-1].id) as resumed:
        missed = await resumed.events(4)
        await store.cancel(scan_id=c)
        (cancelled,) = await resumed.events(1)
    async with service.stream(f"/events?last_event_id={missed[2].id}") as by_query:
        again = await by_query.events(2)

    assert [e.transition for e in missed] == [(a, "Complete"), (b, "Running"), (b, "Error"), (c, "Accepted")]
    assert cancelled.transition == (c, "Cancelled")
    ids = [e.id for e in [*first, *missed, cancelled]]
    assert len(set(ids)) == len(ids)
    assert [e.id for e in again] == [missed[3].id, cancelled.id]
    for event in [*first, *missed, cancelled]:
        check_wire_form(event)


async def test_events_start_now_without_last_event_id(service: Service) -> None:
    old = await submit(service.store)

    async with service.stream("/events") as stream:
        new = await submit(service.store)
        (event,) = await stream.events(1)

    assert old != new and event.transition == (new, "Accepted")


async def test_events_filter_by_status(service: Service) -> None:
    store = service.store
    async with service.stream("/events?status=Complete&status=Error") as stream:
        a = await submit(store)
        await finish(store, await claim(store, a))
        b = await submit(store)
        await finish(store, await claim(store, b), Outcome.ERROR)
        events = await stream.events(2)

    assert [e.transition for e in events] == [(a, "Complete"), (b, "Error")]


async def test_an_unknown_status_is_422(service: Service) -> None:
    async with service.stream("/events?status=Done") as stream:
        body = json.loads(await stream.body())

    assert stream.status == 422 and "unknown status" in body["error"]["message"]


@dataclass
class Tokens:
    alice: str  # tenant-a, read
    bob: str  # tenant-b, read
    writer: str  # tenant-a, submit only
    admin: str


@pytest.fixture
async def secured() -> AsyncIterator[tuple[Service, Tokens]]:
    async with serve(auth="tokens") as service:
        secrets = []
        for tenant, scopes in [
            ("tenant-a", {Scope.READ}),
            ("tenant-b", {Scope.READ}),
            ("tenant-a", {Scope.SUBMIT}),
            ("ops", {Scope.ADMIN}),
        ]:
            secret, token = new_token(tenant=tenant, scopes=frozenset(scopes))
            await service.store.create_token(token=token)
            secrets.append(secret)
        yield service, Tokens(*secrets)


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_events_are_the_callers_tenants_and_an_admin_filters_any(secured: tuple[Service, Tokens]) -> None:
    service, tokens = secured
    store = service.store
    async with (
        service.stream("/events", **auth(tokens.alice)) as alice,
        service.stream("/events?tenant=tenant-b", **auth(tokens.admin)) as admin_b,
        service.stream("/events", **auth(tokens.admin)) as admin_all,
    ):
        a = await submit(store, "tenant-a")
        b = await submit(store, "tenant-b")
        a2 = await submit(store, "tenant-a")
        seen_by_alice = await alice.events(2)
        seen_by_admin_b = await admin_b.events(1)
        seen_by_admin = await admin_all.events(3)

    assert [e.transition for e in seen_by_alice] == [(a, "Accepted"), (a2, "Accepted")]
    assert {e.data["tenant"] for e in seen_by_alice} == {"tenant-a"}
    assert [e.transition for e in seen_by_admin_b] == [(b, "Accepted")]
    assert [e.data["scan_id"] for e in seen_by_admin] == [a, b, a2]


async def test_event_streams_refuse_no_token_a_token_without_read_and_another_tenant(
    secured: tuple[Service, Tokens],
) -> None:
    service, tokens = secured
    b = await submit(service.store, "tenant-b")
    answers = {}
    for name, path, headers in [
        ("anonymous", "/events", {}),
        ("anonymous_scan", f"/scans/{b}/events", {}),
        ("no_read", "/events", auth(tokens.writer)),
        ("nosy", "/events?tenant=tenant-b", auth(tokens.alice)),
        ("other_scan", f"/scans/{b}/events", auth(tokens.alice)),
    ]:
        async with service.stream(path, **headers) as stream:
            await stream.body()
        answers[name] = stream.status
    async with service.stream(f"/scans/{b}/events", **auth(tokens.bob)) as own:
        (event,) = await own.events(1)

    assert answers == {"anonymous": 401, "anonymous_scan": 401, "no_read": 403, "nosy": 403, "other_scan": 404}
    assert event.transition == (b, "Accepted")


# -- the stream's life: disconnect, shutdown, capacity -------------------------------------------


async def test_a_disconnect_ends_the_stream_and_its_reader(service: Service) -> None:
    stream = await Stream(service.app, "/events").open()
    await stream.read_until(lambda text: text.startswith("retry:"))
    assert service.feed.readers == 1
    assert service.app.state.streams.open_streams == 1

    await stream.close()

    assert service.feed.readers == 0
    assert service.app.state.streams.open_streams == 0


async def test_shutdown_ends_open_streams_cleanly(service: Service) -> None:
    one = await Stream(service.app, "/events").open()
    two = await Stream(service.app, "/events").open()
    await one.read_until(lambda text: text.startswith("retry:"))
    await two.read_until(lambda text: text.startswith("retry:"))

    one.scope[STREAM_STOP_SCOPE_KEY]()  # what the HTTP edge calls on each connection when the server stops
    rest_one = await one.body()
    await service.feed.aclose()  # the app's shutdown
    rest_two = await two.body()

    assert (rest_one, rest_two) == (b"", b"") and one.ended and two.ended
    assert STREAM_STOP_SCOPE_KEY not in one.scope
    await one.close()
    await two.close()


async def test_streams_beyond_the_processes_share_are_503_with_retry_after(service: Service) -> None:
    service.app.state.streams.max_streams = 1
    async with service.stream("/events") as first:
        await first.read_until(lambda text: text.startswith("retry:"))
        async with service.stream("/events") as second:
            body = json.loads(await second.body())

    assert second.status == 503
    assert second.response_headers["retry-after"] == "5"
    assert body["error"]["code"] == "too_many_streams"


async def test_the_feed_wakes_streams_from_the_stores_wake_up_not_a_timer(service: Service) -> None:
    # A feed whose own fallback look is an hour away: the stream still sees the event at once.
    feed = service.feed
    feed._wait_timeout_s = 3600.0
    async with service.stream("/events") as stream:
        await stream.read_until(lambda text: text.startswith("retry:"))
        scan_id = await submit(service.store)
        (event,) = await stream.events(1)

    assert event.transition == (scan_id, "Accepted")


# -- the OpenAPI document --------------------------------------------------------------------------


async def test_the_openapi_document_declares_the_streams() -> None:
    async with serve() as service:
        transport = httpx.ASGITransport(app=service.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:10551") as http:
            paths = (await http.get("/openapi.json")).json()["paths"]

    events = paths["/events"]["get"]
    scan_events = paths["/scans/{scan_id}/events"]["get"]
    assert "text/event-stream" in events["responses"]["200"]["content"]
    assert "text/event-stream" in scan_events["responses"]["200"]["content"]
    assert set(events["responses"]) == {"200", "401", "403", "422", "503"}
    assert set(scan_events["responses"]) == {"200", "204", "401", "403", "404", "422", "503"}
    assert {p["name"] for p in events["parameters"]} == {"status", "tenant", "Last-Event-ID", "last_event_id"}
    assert "head" not in paths["/events"]


# -- behind the real HTTP edge -------------------------------------------------------------------


@pytest.mark.slow
async def test_the_edge_keeps_a_stream_past_its_timeouts_and_ends_it_at_shutdown() -> None:
    scan_id = ""
    # Timeouts far shorter than the stream: neither the header nor the body timer may cut it.
    async with serve(header_timeout_seconds=0.2, body_timeout_seconds=0.2) as service:
        service.app.state.streams.keepalive_s = 0.1
        sockets = bind("127.0.0.1", 0)
        port = sockets[0].getsockname()[1]
        limits = EdgeLimits(header_timeout_s=0.2, body_timeout_s=0.2, max_connections=10)
        config = uvicorn.Config(
            service.app, loop="asyncio", http=edge_protocol(limits), lifespan="off", log_config=None, access_log=False
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=sockets))
        try:
            async with asyncio.timeout(DEADLINE_S):
                while not server.started:
                    await asyncio.sleep(0.01)
            lines: list[str] = []
            async with (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=DEADLINE_S) as http,
                http.stream("GET", "/events") as response,
            ):
                assert response.status_code == 200
                started = asyncio.get_running_loop().time()
                async for line in response.aiter_lines():
                    lines.append(line)
                    if asyncio.get_running_loop().time() - started > 1.0 and not server.should_exit:
                        scan_id = await submit(service.store)
                        server.should_exit = True  # what SIGTERM does: the edge asks the stream to end
                # The answer ended (not a broken connection): the loop above finished on its own.
            async with asyncio.timeout(DEADLINE_S):
                await serving
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, DEADLINE_S)

    assert lines[0] == "retry: 2000"
    assert lines.count(": keep-alive") >= 5  # kept for over a second, past both 0.2 s timeouts
    events, _ = parse("\n".join(lines) + "\n")
    assert [e.transition for e in events] in ([], [(scan_id, "Accepted")])
