"""The Python client's event streams and webhooks: ``wait`` over server-sent events, ``events``, ``webhooks``.

Against the real apps (``tests.integration.test_sdk.serve``: ingest and status over one memory store behind
``httpx.ASGITransport``) where the answer ends: a scan's stream ends after its terminal event, and the
transport hands it over then. What a real server sends bit by bit (a stream that breaks, one that never
ends) comes from ``httpx.MockTransport`` answers written out here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest

from scanq.auth import new_token
from scanq.ids import new_scan_id
from scanq.models import DeliveryOutcome, DeliveryResult, NewScan, Scope
from scanq.sdk import (
    AsyncClient,
    Client,
    Forbidden,
    InvalidRequest,
    NotFound,
    ScanEvent,
    ScanqApiError,
    ScanqConnectionError,
)
from scanq.sdk.wire import STREAM_RECONNECTS, EventStreamParser
from scanq.store.base import WEBHOOK_ROLE
from tests.integration.test_sdk import FINDINGS, INGEST, STATUS, Api, Bridge, LoopThread, Sleeps, scan_json, serve

HOOK = "https://93.184.215.14/hooks/scanq"
SCAN_ID = "0190a6c2-5b1e-7c3a-9d2e-3f4a5b6c7d8e"


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with serve() as served:
        yield served


def event_json(event_id: str, status: str, scan_id: str = SCAN_ID) -> dict[str, Any]:
    types = {
        "Accepted": "scan.accepted",
        "Running": "scan.started",
        "Complete": "scan.completed",
        "Error": "scan.failed",
        "Cancelled": "scan.cancelled",
    }
    return {
        "event_id": event_id,
        "type": types[status],
        "scan_id": scan_id,
        "tenant": "default",
        "status": status,
        "attempt": 1,
        "at": "2026-01-01T00:00:00Z",
    }


def event_stream(*events: dict[str, Any], comments: int = 0) -> httpx.Response:
    """A finished ``text/event-stream`` answer carrying ``events`` (and some keep-alive comments)."""
    body = "retry: 2000\n\n" + ": keep-alive\n\n" * comments
    for event in events:
        body += f"id: {event['event_id']}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=body)


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


# -- wait over the scan's event stream ----------------------------------------------------------


async def test_wait_follows_the_event_stream_and_answers_the_finished_scan(api: Api) -> None:
    sleeps = Sleeps()
    async with api.client(sleep=sleeps) as client:
        scan = await client.submit()
        waiting = asyncio.create_task(client.wait(scan.scan_id))
        await asyncio.sleep(0.05)  # the stream is open and has sent the Accepted event
        assert not waiting.done()
        await api.complete(await api.run(scan.scan_id))
        done = await asyncio.wait_for(waiting, 10)

    assert (done.status, done.result) == ("Complete", FINDINGS)
    stream = api.router.sent("GET", f"/scans/{scan.scan_id}/events")
    assert len(stream) == 1 and stream[0].headers["Accept"] == "text/event-stream"
    assert len(api.router.sent("GET", f"/scans/{scan.scan_id}")) == 1  # the scan read once, at its end
    assert sleeps.waits == []  # no polling


async def test_wait_on_a_finished_scan_reads_its_stream_to_the_end(api: Api) -> None:
    async with api.client(sleep=Sleeps()) as client:
        scan = await client.submit()
        await client.cancel(scan.scan_id)
        done = await client.wait(scan.scan_id, timeout_s=10)

    assert done.status == "Cancelled"


async def test_wait_resumes_a_broken_stream_after_the_last_event_it_read() -> None:
    seen: list[httpx.Request] = []
    answers = iter(
        [
            event_stream(event_json("7", "Accepted"), event_json("8", "Running")),  # then the connection ends
            event_stream(event_json("9", "Complete"), comments=1),
            httpx.Response(200, json=scan_json("Complete", result=FINDINGS)),
        ]
    )

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(answers)

    sleeps = Sleeps()
    async with AsyncClient(INGEST, STATUS, token="", transport=mock(handle), sleep=sleeps) as client:
        done = await client.wait(SCAN_ID, poll_s=0.25)

    assert done.result == FINDINGS
    assert [r.url.path for r in seen] == [f"/scans/{SCAN_ID}/events"] * 2 + [f"/scans/{SCAN_ID}"]
    assert "Last-Event-ID" not in seen[0].headers and seen[1].headers["Last-Event-ID"] == "8"
    assert sleeps.waits == [0.25]


async def test_wait_resumed_after_the_scans_end_reads_the_scan() -> None:
    answers = iter(
        [
            event_stream(event_json("7", "Running")),
            httpx.Response(204),  # resumed after the scan's last event: it has ended
            httpx.Response(200, json=scan_json("Error", error="boom")),
        ]
    )
    async with AsyncClient(
        INGEST, STATUS, token="", transport=mock(lambda request: next(answers)), sleep=Sleeps()
    ) as client:
        done = await client.wait(SCAN_ID)

    assert (done.status, done.error) == ("Error", "boom")


async def test_wait_polls_once_the_stream_keeps_breaking() -> None:
    paths: list[str] = []
    streams = STREAM_RECONNECTS + 1

    def handle(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path.endswith("/events"):
            return event_stream(comments=2)  # open, then ended without an event
        return httpx.Response(200, json=scan_json("Complete"))

    sleeps = Sleeps()
    async with AsyncClient(INGEST, STATUS, token="", transport=mock(handle), sleep=sleeps) as client:
        done = await client.wait(SCAN_ID, poll_s=0.5)

    assert done.status == "Complete"
    assert paths == [f"/scans/{SCAN_ID}/events"] * streams + [f"/scans/{SCAN_ID}"]
    assert sleeps.waits == [0.5] * STREAM_RECONNECTS


async def test_wait_polls_a_service_that_answers_the_stream_with_an_error() -> None:
    answers = iter([httpx.Response(404, json={"error": {"code": "not_found", "message": "no route"}})])

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return next(answers)
        return httpx.Response(200, json=scan_json("Complete"))

    async with AsyncClient(INGEST, STATUS, token="", transport=mock(handle)) as client:
        assert (await client.wait(SCAN_ID)).status == "Complete"


def test_the_blocking_client_waits_over_the_stream_too() -> None:
    loop = LoopThread()
    stack = AsyncExitStack()
    try:
        api = loop.run(stack.enter_async_context(serve()))
        waits: list[float] = []
        with Client(INGEST, STATUS, token="", transport=Bridge(api.router, loop), sleep=waits.append) as client:
            scan = client.submit()
            loop.run(api.complete(loop.run(api.run(scan.scan_id))))
            done = client.wait(scan.scan_id, timeout_s=10)
    finally:
        loop.run(stack.aclose())
        loop.close()

    assert (done.status, done.result) == ("Complete", FINDINGS)
    assert len(api.router.sent("GET", f"/scans/{scan.scan_id}/events")) == 1
    assert waits == []


def test_the_blocking_client_resumes_after_the_last_event() -> None:
    seen: list[httpx.Request] = []
    answers = iter(
        [
            event_stream(event_json("3", "Accepted")),
            event_stream(event_json("4", "Running"), event_json("5", "Complete")),
            httpx.Response(200, json=scan_json("Complete")),
        ]
    )

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(answers)

    waits: list[float] = []
    with Client(INGEST, STATUS, token="", transport=mock(handle), sleep=waits.append) as client:
        assert client.wait(SCAN_ID, poll_s=0.1).status == "Complete"

    assert seen[1].headers["Last-Event-ID"] == "3" and waits == [0.1]


# -- events(): every transition ------------------------------------------------------------------


async def test_events_yields_each_event_of_the_stream_with_the_filters_it_was_given() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return event_stream(event_json("1", "Complete"), event_json("2", "Error", scan_id="other"), comments=1)

    async with AsyncClient(INGEST, STATUS, token="", transport=mock(handle)) as client:
        async with client.events(statuses=["Error", "Complete"], tenant="acme", last_event_id="0") as events:
            got = [event async for event in events]

    assert [(e.event_id, e.status, e.scan_id, e.is_terminal) for e in got] == [
        ("1", "Complete", SCAN_ID, True),
        ("2", "Error", "other", True),
    ]
    assert str(seen[0].url) == f"{STATUS}/events?status=Complete&status=Error&tenant=acme"
    assert seen[0].headers["Last-Event-ID"] == "0"
    assert isinstance(got[0], ScanEvent) and got[0].at == datetime(2026, 1, 1, tzinfo=UTC)


def test_the_blocking_events_are_the_same() -> None:
    transport = mock(lambda request: event_stream(event_json("1", "Accepted")))
    with Client(INGEST, STATUS, token="", transport=transport) as client, client.events() as events:
        assert [e.event_id for e in events] == ["1"]


async def test_events_raise_a_refusal_a_body_that_is_no_stream_and_a_broken_connection() -> None:
    answers: Iterator[httpx.Response] = iter(
        [
            httpx.Response(403, json={"error": {"code": "forbidden", "message": "no read scope"}}),
            httpx.Response(200, json={"scans": []}),
        ]
    )

    def handle(request: httpx.Request) -> httpx.Response:
        try:
            return next(answers)
        except StopIteration:
            raise httpx.ConnectError("refused", request=request) from None

    async with AsyncClient(INGEST, STATUS, token="", transport=mock(handle)) as client:
        with pytest.raises(Forbidden) as refused:
            async with client.events():
                pass
        with pytest.raises(ScanqApiError) as not_a_stream:
            async with client.events():
                pass
        with pytest.raises(ScanqConnectionError):
            async with client.events():
                pass

    assert refused.value.code == "forbidden"
    assert not_a_stream.value.code == "bad_response"


def test_the_parser_joins_data_lines_and_skips_comments_and_other_fields() -> None:
    parser = EventStreamParser()
    lines = [
        "retry: 2000",
        "",
        ": keep-alive",
        "",
        "id: 5",
        "event: scan.completed",
        'data: {"event_id": "5", "type": "scan.completed",',
        'data: "scan_id": "s", "status": "Complete", "at": "2026-01-01T00:00:00Z"}',
        "",
    ]
    got = [event for line in lines if (event := parser.feed(line)) is not None]

    assert [(e.event_id, e.scan_id, e.status, e.tenant, e.attempt) for e in got] == [
        ("5", "s", "Complete", "default", 0)
    ]
    with pytest.raises(msgspec.ValidationError):
        for line in ['data: {"event_id": 1}', ""]:
            parser.feed(line)


# -- webhooks ------------------------------------------------------------------------------------


async def fan_out(api: Api) -> str:
    """One scan, its Accepted event dispatched to every subscribed endpoint; the scan's id."""
    created = await api.store.create(scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)))
    assert await api.store.lead(role=WEBHOOK_ROLE, owner="test", term_s=60)
    await api.store.dispatch_events(owner="test")
    return created.scan.scan_id


async def test_webhooks_create_list_get_rotate_deliveries_retry_delete(api: Api) -> None:
    async with api.client() as client:
        endpoint = await client.webhooks.create(HOOK, event_types=["scan.accepted"], description="ci")
        listed = await client.webhooks.list()
        got = await client.webhooks.get(endpoint.endpoint_id)
        rotated = await client.webhooks.rotate_secret(endpoint.endpoint_id)
        scan_id = await fan_out(api)
        (job,) = await api.store.claim_deliveries(worker_id="w", limit=5, lease_s=30)
        result = DeliveryResult(
            endpoint_id=endpoint.endpoint_id,
            event_id=job.delivery.event.event_id,
            worker_id="w",
            outcome=DeliveryOutcome.FAILED,
            status_code=410,
            error="gone",
        )
        await api.store.record_deliveries(results=[result])
        failed = await client.webhooks.deliveries(endpoint.endpoint_id, status="failed", limit=10)
        retried = await client.webhooks.retry(endpoint.endpoint_id, failed[0].event_id)
        await client.webhooks.delete(endpoint.endpoint_id)
        with pytest.raises(NotFound) as gone:
            await client.webhooks.get(endpoint.endpoint_id)
        with pytest.raises(InvalidRequest) as refused:
            await client.webhooks.create("http://169.254.169.254/latest/meta-data/")

    assert endpoint.secret is not None and endpoint.secret.startswith("whsec_")
    assert (endpoint.event_types, endpoint.description, endpoint.tenant) == (["scan.accepted"], "ci", "default")
    assert [e.endpoint_id for e in listed] == [endpoint.endpoint_id] and listed[0].secret is None
    assert got.secret is None and got.url == HOOK
    assert rotated.secret not in (None, endpoint.secret) and rotated.previous_secret_until is not None
    assert [(d.event.scan_id, d.status, d.attempts, d.last_status_code, d.last_error) for d in failed] == [
        (scan_id, "failed", 1, 410, "gone")
    ]
    assert (retried.status, retried.attempts) == ("pending", 1)
    assert gone.value.code == "endpoint_not_found"
    assert refused.value.status_code == 422
    assert await api.store.list_endpoints() == []
    assert len(api.router.sent("POST", "/webhooks")) == 2  # a registration is never sent twice


async def test_webhooks_need_the_webhooks_scope() -> None:
    async with serve(auth="tokens") as api:
        allowed, token = new_token(tenant="acme", scopes=frozenset({Scope.WEBHOOKS}))
        reader, read_only = new_token(tenant="acme", scopes=frozenset({Scope.READ}))
        await api.store.create_token(token=token)
        await api.store.create_token(token=read_only)
        async with api.client(token=allowed) as client:
            endpoint = await client.webhooks.create(HOOK)
        async with api.client(token=reader) as client:
            with pytest.raises(Forbidden):
                await client.webhooks.list()

    assert endpoint.tenant == "acme"


def test_the_blocking_client_has_the_same_webhooks() -> None:
    loop = LoopThread()
    stack = AsyncExitStack()
    try:
        api = loop.run(stack.enter_async_context(serve()))
        with Client(INGEST, STATUS, token="", transport=Bridge(api.router, loop)) as client:
            endpoint = client.webhooks.create(HOOK, event_types=["scan.accepted"])
            loop.run(fan_out(api))
            (delivery,) = client.webhooks.deliveries(endpoint.endpoint_id)
            retried = client.webhooks.retry(endpoint.endpoint_id, delivery.event_id)
            rotated = client.webhooks.rotate_secret(endpoint.endpoint_id)
            listed = client.webhooks.list()
            assert client.webhooks.get(endpoint.endpoint_id).endpoint_id == endpoint.endpoint_id
            client.webhooks.delete(endpoint.endpoint_id)
            with pytest.raises(NotFound):
                client.webhooks.delete(endpoint.endpoint_id)
    finally:
        loop.run(stack.aclose())
        loop.close()

    assert delivery.status == "pending" and retried.status == "pending"
    assert rotated.secret != endpoint.secret and [e.endpoint_id for e in listed] == [endpoint.endpoint_id]


def test_the_blocking_events_raise_a_refusal_and_a_body_that_is_no_stream() -> None:
    answers = iter(
        [
            httpx.Response(403, json={"error": {"code": "forbidden", "message": "no read scope"}}),
            httpx.Response(200, json={"scans": []}),
        ]
    )
    with Client(INGEST, STATUS, token="", transport=mock(lambda request: next(answers))) as client:
        with pytest.raises(Forbidden), client.events():
            pass
        with pytest.raises(ScanqApiError) as not_a_stream, client.events():
            pass
    assert not_a_stream.value.code == "bad_response" and "not an event stream" in not_a_stream.value.message


async def test_callbacks_submit_with_a_callback_url_and_read_the_callback_endpoint(api: Api) -> None:
    async with api.client() as client:
        endpoint = await client.webhooks.get("callbacks")
        scan = await client.submit(callback_url=HOOK)
        (listed,) = await client.webhooks.list()
        await client.cancel(scan.scan_id)
        await fan_out(api)
        (delivery,) = await client.webhooks.deliveries("callbacks")
        retried = await client.webhooks.retry("callbacks", delivery.event_id)
        rotated = await client.webhooks.rotate_secret("callbacks")
        await client.webhooks.delete("callbacks")
        with pytest.raises(NotFound):
            await client.webhooks.deliveries("callbacks")

    assert (endpoint.endpoint_id, endpoint.url) == ("callbacks", None) and endpoint.secret is not None
    assert scan.callback_url == HOOK and (listed.endpoint_id, listed.url) == ("callbacks", None)
    assert (delivery.url, delivery.event.scan_id, delivery.event.type) == (HOOK, scan.scan_id, "scan.cancelled")
    assert retried.endpoint_id == "callbacks" and rotated.secret not in (None, endpoint.secret)


def test_the_blocking_client_submits_a_callback_url_too() -> None:
    loop = LoopThread()
    stack = AsyncExitStack()
    try:
        api = loop.run(stack.enter_async_context(serve()))
        with Client(INGEST, STATUS, token="", transport=Bridge(api.router, loop)) as client:
            scan = client.submit(callback_url=HOOK)
            endpoint = client.webhooks.get("callbacks")
            with pytest.raises(InvalidRequest) as refused:
                client.submit(callback_url="https://10.1.2.3/cb")
    finally:
        loop.run(stack.aclose())
        loop.close()
    assert scan.callback_url == HOOK and endpoint.secret is not None and endpoint.url is None
    assert "callback_url" in refused.value.message
