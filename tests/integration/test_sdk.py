"""The Python client (``scanq.Client``, ``scanq.AsyncClient``) against the real ingest and status apps in process.

The apps run over a memory store behind ``httpx.ASGITransport`` (the whole
Starlette stack, exception handlers included); a router in front of them sends
each request to its service by port and can break a connection before or after
the app saw the request. Waits go through a fake ``sleep`` that records them
(and moves a hand clock, or the scan along), so no test sleeps for real.
The blocking ``Client`` reaches the same apps through a bridge to an event loop
in a thread. A few cases the apps never answer (a proxy's 502, an HTTP-date
``Retry-After``, a broken body) use ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

import scanq
import scanq.quotas
from scanq.api import create_ingest_app, create_status_app
from scanq.auth import new_token
from scanq.config import Settings
from scanq.exceptions import StoreUnavailable
from scanq.models import Created, Finish, Lease, NewScan, Outcome, ScanStatus, Scope, TenantLimits
from scanq.models import Scan as StoredScan
from scanq.scanners import ScannerRegistry
from scanq.sdk import (
    AsyncClient,
    Client,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    QuotaExceeded,
    RetryPolicy,
    Scan,
    ScanqApiError,
    ScanqConnectionError,
    SubmitRequest,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)
from scanq.sdk.errors import retry_after_s
from scanq.store.memory import MemoryStore
from tests.clocks import ManualClock
from tests.integration.apps import app_over

T = TypeVar("T")

INGEST = "http://127.0.0.1:10550"
STATUS = "http://127.0.0.1:10551"
KEY_HEADER = "Idempotency-Key"
FINDINGS = {"findings": [], "plugins": {"tls": "ok"}}
README = Path(__file__).resolve().parents[2] / "README.md"


# -- the services in process ---------------------------------------------------------------------


class FlakyStore(MemoryStore):
    """A memory store whose reads or writes fail on demand, as in a store outage (the API answers 503)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.read_failures = 0
        self.write_failures = 0

    def _outage(self, kind: str) -> None:
        left = getattr(self, kind)
        if left > 0:
            setattr(self, kind, left - 1)
            raise StoreUnavailable("the store is down (test)")

    async def get(self, *, scan_id: str, tenant: str | None = None) -> StoredScan:
        self._outage("read_failures")
        return await super().get(scan_id=scan_id, tenant=tenant)

    async def create(self, *, scan: NewScan) -> Created:
        self._outage("write_failures")
        return await super().create(scan=scan)

    async def create_many(self, *, scans: Sequence[NewScan]) -> list[Created]:
        self._outage("write_failures")
        return await super().create_many(scans=scans)


@dataclass
class Fault:
    """Break the next ``method path`` request: before it is sent, or after the app handled it (answer lost)."""

    method: str
    path: str
    error: type[httpx.TransportError]
    after_sending: bool


@dataclass
class Router(httpx.AsyncBaseTransport):
    """Sends each request to the app on its port; records requests; applies faults."""

    apps: dict[int, httpx.AsyncBaseTransport]
    requests: list[httpx.Request] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        app = self.apps[request.url.port or 80]
        fault = next((f for f in self.faults if (f.method, f.path) == (request.method, request.url.path)), None)
        if fault is None:
            return await app.handle_async_request(request)
        self.faults.remove(fault)
        if fault.after_sending:
            await (await app.handle_async_request(request)).aread()
        raise fault.error("connection broken (test)", request=request)

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if (r.method, r.url.path) == (method, path)]


@dataclass
class Api:
    store: FlakyStore
    router: Router

    def client(self, **kwargs: Any) -> AsyncClient:
        kwargs.setdefault("token", "")
        return AsyncClient(INGEST, STATUS, transport=self.router, **kwargs)

    async def run(self, scan_id: str) -> Lease:
        """Claim ``scan_id`` as a worker would (with every other claimable scan: they stay Running)."""
        (mine,) = [s for s in await self.store.claim(worker_id="w1", limit=100, lease_s=30) if s.scan_id == scan_id]
        return Lease(scan_id=scan_id, worker_id="w1", attempt=mine.attempt)

    async def complete(self, lease: Lease) -> None:
        done = await self.store.finish(finishes=[Finish(lease=lease, outcome=Outcome.COMPLETE, result=FINDINGS)])
        assert done == [True]


@asynccontextmanager
async def serve(**settings: Any) -> AsyncIterator[Api]:
    url = f"memory://{uuid.uuid4()}"
    config = Settings(database_url=url, **settings)
    registry = ScannerRegistry(config)
    async with (
        FlakyStore(url) as store,
        app_over(store, create_ingest_app, config, scanners=registry) as ingest,
        app_over(store, create_status_app, config, scanners=registry) as status,
    ):
        router = Router({10550: httpx.ASGITransport(app=ingest), 10551: httpx.ASGITransport(app=status)})
        yield Api(store=store, router=router)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with serve() as served:
        yield served


class Sleeps:
    """Stands in for ``asyncio.sleep``: records each wait, moves ``clock`` by it, then runs the next step."""

    def __init__(self, clock: ManualClock | None = None, steps: Sequence[Callable[[], Awaitable[object]]] = ()) -> None:
        self.waits: list[float] = []
        self.clock = clock
        self.steps = list(steps)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.clock is not None:
            self.clock.now += seconds
        if self.steps:
            await self.steps.pop(0)()


# -- submit, read, list, cancel, wait ------------------------------------------------------------


async def test_submit_get_cancel_and_stats(api: Api) -> None:
    async with api.client() as client:
        scan = await client.submit(target="example.com", options={"min_sleep": 0.1}, priority=5, max_attempts=2)
        got = await client.get(scan.scan_id)
        cancelled = await client.cancel(scan.scan_id)
        again = await client.cancel(scan.scan_id)
        stats = await client.stats()

    assert (scan.status, scan.target, scan.scanner, scan.priority, scan.max_attempts) == (
        "Accepted",
        "example.com",
        "mock",
        5,
        2,
    )
    assert scan.options == {"min_sleep": 0.1} and scan.tenant == "default" and not scan.is_terminal
    assert got == scan
    assert (cancelled.status, again.status, cancelled.is_terminal) == ("Cancelled", "Cancelled", True)
    assert stats.counts["Cancelled"] == 1 and stats.total == 1 and stats.oldest_accepted_age_s is None


async def test_list_walks_every_page_newest_first_and_keeps_the_filter(api: Api) -> None:
    async with api.client() as client:
        ids = [(await client.submit()).scan_id for _ in range(7)]
        for scan_id in ids[:5]:
            await client.cancel(scan_id)

        everything = [scan.scan_id async for scan in client.list(page_size=3)]
        pages = len(api.router.sent("GET", "/scans"))
        cancelled = [scan.scan_id async for scan in client.list(status="Cancelled", page_size=2)]
        mine = [scan.scan_id async for scan in client.list(tenant="default", page_size=1000)]
        first = await client.list_page(limit=4)

    assert everything == sorted(ids, reverse=True) == mine
    assert pages == 3
    assert cancelled == sorted(ids[:5], reverse=True)
    # After the first page the cursor carries the filter: only the first request names the status.
    assert [r.url.params.get("status") for r in api.router.sent("GET", "/scans")[3:6]] == ["Cancelled", None, None]
    assert [s.scan_id for s in first.scans] == sorted(ids, reverse=True)[:4] and first.next_cursor


async def test_submit_batch_takes_requests_and_mappings_in_order(api: Api) -> None:
    async with api.client() as client:
        scans = await client.submit_batch([SubmitRequest(target="a.example"), {"target": "b.example", "priority": 3}])
        assert await client.submit_batch([]) == []
        with pytest.raises(ValueError, match="scan 0 of the batch"):
            await client.submit_batch([{"targett": "typo.example"}])

    assert [(s.target, s.priority) for s in scans] == [("a.example", 0), ("b.example", 3)]
    assert len(api.router.sent("POST", "/scans/batch")) == 1


async def test_wait_polls_where_there_is_no_event_stream_until_the_scan_finished(api: Api) -> None:
    sleeps = Sleeps()
    async with api.client(sleep=sleeps) as client:
        scan = await client.submit()
        # The event stream cannot be opened (an older service, a proxy in the way): polling takes over.
        api.router.faults.append(Fault("GET", f"/scans/{scan.scan_id}/events", httpx.ConnectError, False))
        lease: list[Lease] = []

        async def run() -> None:
            lease.append(await api.run(scan.scan_id))

        async def complete() -> None:
            await api.complete(lease[0])

        sleeps.steps = [run, complete]  # the wait's two pauses: a worker takes the scan, then finishes it
        done = await client.wait(scan.scan_id, poll_s=0.5)

    assert (done.status, done.result, done.is_terminal) == ("Complete", FINDINGS, True)
    assert sleeps.waits == [0.5, 0.5]
    assert [(a.attempt, a.worker, a.outcome) for a in done.history] == [(1, "w1", "Complete")]


async def test_wait_gives_up_at_its_timeout_and_says_how_the_scan_was(api: Api) -> None:
    async with api.client() as client:
        scan = await client.submit()
        with pytest.raises(WaitTimeout) as timed_out:
            await client.wait(scan.scan_id, timeout_s=0.05, poll_s=0.01)

    assert timed_out.value.scan.status == "Accepted" and timed_out.value.timeout_s == 0.05


# -- errors --------------------------------------------------------------------------------------


async def test_an_unknown_scan_is_not_found(api: Api) -> None:
    missing = "00000000-0000-7000-8000-000000000000"
    async with api.client(sleep=Sleeps()) as client:
        with pytest.raises(NotFound) as got:
            await client.get(missing)
        with pytest.raises(NotFound):
            await client.cancel(missing)

    assert (got.value.status_code, got.value.code) == (404, "not_found")
    assert got.value.message == f"no scan with id {missing!r}"
    assert got.value.method == "GET" and got.value.url == f"{STATUS}/scans/{missing}"
    assert isinstance(got.value, ScanqApiError)


async def test_a_finished_scan_cannot_be_cancelled_and_a_bad_request_is_refused(api: Api) -> None:
    sleeps = Sleeps()
    async with api.client(sleep=sleeps) as client:
        scan = await client.submit()
        await api.complete(await api.run(scan.scan_id))
        with pytest.raises(Conflict) as finished:
            await client.cancel(scan.scan_id)
        with pytest.raises(InvalidRequest) as refused:
            await client.submit(priority=10**6)

    assert (finished.value.status_code, finished.value.code) == (409, "scan_finished")
    assert refused.value.status_code == 422
    assert sleeps.waits == []  # refusals are final: never retried
    assert (await api.store.stats()).counts[ScanStatus.ACCEPTED] == 0


async def test_tokens_required_401_without_one_and_a_token_works_within_its_scopes() -> None:
    async with serve(auth="tokens") as api:
        secret, token = new_token(tenant="acme", scopes=frozenset({Scope.SUBMIT, Scope.READ}), name="ci")
        reader, read_only = new_token(tenant="acme", scopes=frozenset({Scope.READ}))
        await api.store.create_token(token=token)
        await api.store.create_token(token=read_only)

        async with api.client() as anonymous:
            with pytest.raises(Unauthorized) as refused:
                await anonymous.submit()
        async with api.client(token="scanq_not_a_token") as wrong:
            with pytest.raises(Unauthorized):
                await wrong.stats()
        async with api.client(token=secret) as client:
            scan = await client.submit()
            got = await client.get(scan.scan_id)
        async with api.client(token=reader) as client:
            with pytest.raises(Forbidden) as forbidden:
                await client.submit()

    assert (refused.value.status_code, refused.value.code) == (401, "unauthenticated")
    assert (got.tenant, got.submitted_by and got.submitted_by.token_id) == ("acme", token.token_id)
    assert (forbidden.value.status_code, forbidden.value.code) == (403, "forbidden")


async def test_a_quota_429_is_waited_out_as_retry_after_says(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ManualClock()
    monkeypatch.setattr(scanq.quotas, "time", clock)
    await api.store.set_tenant_limits(limits=TenantLimits(tenant="default", rate_per_s=0.5))
    sleeps = Sleeps(clock)

    async with api.client(sleep=sleeps) as client:
        first = await client.submit()
        second = await client.submit()  # the bucket is empty: 429, Retry-After 2, then it fits
    async with api.client(retries=0) as impatient:
        with pytest.raises(QuotaExceeded) as refused:
            await impatient.submit()
    async with api.client(sleep=Sleeps(clock), retry_policy=RetryPolicy(max_retry_after_s=1.0)) as capped:
        with pytest.raises(QuotaExceeded):
            await capped.submit()

    assert sleeps.waits == [2.0]
    assert len(api.router.sent("POST", "/scans")) == 5
    assert first.scan_id != second.scan_id
    assert (refused.value.status_code, refused.value.code, refused.value.retry_after_s) == (429, "quota_exceeded", 2.0)
    assert (await api.store.stats()).counts[ScanStatus.ACCEPTED] == 2


async def test_a_503_is_retried_with_backoff_then_raised(api: Api) -> None:
    sleeps = Sleeps()
    async with api.client(sleep=sleeps) as client:
        scan = await client.submit()
        api.store.read_failures = 2
        assert (await client.get(scan.scan_id)).scan_id == scan.scan_id
        api.store.read_failures = 100
        with pytest.raises(Unavailable) as down:
            await client.get(scan.scan_id)

    assert len(api.router.sent("GET", f"/scans/{scan.scan_id}")) == 3 + 4
    assert (down.value.status_code, down.value.code) == (503, "store_unavailable")
    ceilings = [0.5, 1.0, 0.5, 1.0, 2.0]
    assert len(sleeps.waits) == 2 + 3
    assert all(ceiling / 2 <= wait <= ceiling for wait, ceiling in zip(sleeps.waits, ceilings, strict=True))


async def test_a_submission_retried_after_a_lost_answer_stores_one_scan(api: Api) -> None:
    api.router.faults.append(Fault("POST", "/scans", httpx.ReadError, after_sending=True))
    sleeps = Sleeps()

    async with api.client(sleep=sleeps) as client:
        scan = await client.submit(target="example.com")

    first, second = api.router.sent("POST", "/scans")
    key = first.headers[KEY_HEADER]
    assert uuid.UUID(key).version == 4 and second.headers[KEY_HEADER] == key == scan.idempotency_key
    assert len(sleeps.waits) == 1
    assert (await api.store.stats()).counts[ScanStatus.ACCEPTED] == 1


async def test_a_submission_retried_after_a_503_and_the_key_replays_only_the_same_request(api: Api) -> None:
    api.store.write_failures = 1
    async with api.client(sleep=Sleeps()) as client:
        scan = await client.submit()
        again = await client.submit(idempotency_key=scan.idempotency_key)
        with pytest.raises(Conflict) as reused:
            await client.submit(target="other.example", idempotency_key=scan.idempotency_key)
    async with api.client(retries=0) as once:
        plain = await once.submit()

    assert again.scan_id == scan.scan_id
    assert reused.value.code == "idempotency_conflict"
    assert KEY_HEADER not in api.router.sent("POST", "/scans")[-1].headers and plain.idempotency_key is None
    assert (await api.store.stats()).counts[ScanStatus.ACCEPTED] == 2


async def test_a_batch_is_retried_only_when_nothing_can_have_been_stored(api: Api) -> None:
    sleeps = Sleeps()
    async with api.client(sleep=sleeps) as client:
        api.router.faults.append(Fault("POST", "/scans/batch", httpx.ConnectError, after_sending=False))
        stored = await client.submit_batch([{}, {}])
        assert len(sleeps.waits) == 1

        api.router.faults.append(Fault("POST", "/scans/batch", httpx.ReadError, after_sending=True))
        with pytest.raises(ScanqConnectionError) as broken:
            await client.submit_batch([{}, {}])
        api.store.write_failures = 1
        with pytest.raises(Unavailable):
            await client.submit_batch([{}])

    assert len(stored) == 2
    assert isinstance(broken.value.error, httpx.ReadError)
    assert len(sleeps.waits) == 1  # neither the lost answer nor the 503 was retried
    assert len(api.router.sent("POST", "/scans/batch")) == 2 + 1 + 1
    # The batch whose answer was lost was stored: sending it again would have stored it twice.
    assert (await api.store.stats()).counts[ScanStatus.ACCEPTED] == 4


# -- the blocking client, over the same apps -----------------------------------------------------


class LoopThread:
    """An event loop in a thread: the apps and the store live there; the blocking client calls into it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class Bridge(httpx.BaseTransport):
    """A blocking transport onto an async one running in ``LoopThread``."""

    inner: httpx.AsyncBaseTransport
    loop: LoopThread

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def forward() -> httpx.Response:
            answer = await self.inner.handle_async_request(request)
            return httpx.Response(answer.status_code, headers=answer.headers, content=await answer.aread())

        return self.loop.run(forward())


@pytest.fixture
def blocking() -> Iterator[tuple[Api, LoopThread]]:
    loop = LoopThread()
    stack = AsyncExitStack()
    try:
        yield loop.run(stack.enter_async_context(serve())), loop
    finally:
        loop.run(stack.aclose())
        loop.close()


def test_the_blocking_client_does_what_the_async_one_does(blocking: tuple[Api, LoopThread]) -> None:
    api, loop = blocking
    waits: list[float] = []
    leases: list[Lease] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:  # the wait's first pause: a worker takes the scan and finishes it
            loop.run(api.complete(leases[0]))

    api.router.faults.append(Fault("POST", "/scans", httpx.ReadError, after_sending=True))
    with Client(INGEST, STATUS, token="", transport=Bridge(api.router, loop), sleep=sleep) as client:
        scan = client.submit(target="example.com")
        batch = client.submit_batch([{"target": "b.example"}] * 4)
        listed = [s.scan_id for s in client.list(page_size=2)]
        assert client.cancel(batch[0].scan_id).status == "Cancelled"
        leases.append(loop.run(api.run(scan.scan_id)))
        # No event stream to follow here (test_sdk_events.py follows one): the wait polls.
        api.router.faults.append(Fault("GET", f"/scans/{scan.scan_id}/events", httpx.ConnectError, False))
        done = client.wait(scan.scan_id, poll_s=0.25)
        with pytest.raises(NotFound):
            client.get("00000000-0000-7000-8000-000000000000")
        api.store.read_failures = 100
        with pytest.raises(Unavailable):
            client.get(scan.scan_id)

    assert len(api.router.sent("POST", "/scans")) == 2 and sum(loop.run(api.store.stats()).counts.values()) == 5
    assert listed == sorted([scan.scan_id, *(s.scan_id for s in batch)], reverse=True)
    assert len(api.router.sent("GET", "/scans")) == 3
    assert (done.status, done.result) == ("Complete", FINDINGS)
    assert waits[1] == 0.25 and len(waits) == 1 + 1 + 3


# -- without the apps: what they never answer ----------------------------------------------------


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


async def test_urls_and_token_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCANQ_INGEST_URL", "http://ingest.test/")
    monkeypatch.setenv("SCANQ_STATUS_URL", "http://status.test")
    monkeypatch.setenv("SCANQ_TOKEN", "scanq_from_env")
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(404, json={"scan_id": "x", "status": "Not Found"})

    async with AsyncClient(transport=mock(handle)) as from_env:
        with pytest.raises(NotFound):
            await from_env.cancel("x")
    with Client(token="", transport=mock(handle)) as no_token, pytest.raises(NotFound):
        no_token.get("a/b")

    assert [str(r.url) for r in seen] == ["http://ingest.test/scans/x/cancel", "http://status.test/scans/a%2Fb"]
    assert seen[0].headers["Authorization"] == "Bearer scanq_from_env" and "Authorization" not in seen[1].headers


async def test_answers_no_scanq_service_sends() -> None:
    answers = iter(
        [
            httpx.Response(502, text="bad gateway"),
            httpx.Response(200, text="<html>"),
            httpx.Response(429, headers={"Retry-After": "1"}, json={"error": {"code": "slow", "message": "m"}}),
            httpx.Response(202, json={"scans": []}),
        ]
    )
    sleeps = Sleeps()
    async with AsyncClient(token="", transport=mock(lambda request: next(answers)), sleep=sleeps) as client:
        with pytest.raises(ScanqApiError) as proxy:
            await client.stats()
        with pytest.raises(ScanqApiError) as garbage:
            await client.stats()
        assert await client.submit_batch([{}]) == []  # a batch refused by a quota is retried: nothing was stored

    assert (type(proxy.value), proxy.value.code, proxy.value.message) == (ScanqApiError, "http_502", "bad gateway")
    assert garbage.value.code == "bad_response"
    assert sleeps.waits == [1.0]


def test_a_broken_connection_retries_reads_but_not_a_batch() -> None:
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) in (1, 3):
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json={"counts": {"Accepted": 1}, "total": 1})

    waits: list[float] = []
    with Client(token="", transport=mock(handle), sleep=waits.append) as client:
        assert client.stats().tenants == []
        with pytest.raises(
            ScanqConnectionError, match=re.escape("POST http://127.0.0.1:10550/scans/batch failed: slow")
        ):
            client.submit_batch([{}])

    assert calls == ["/stats", "/stats", "/scans/batch"] and len(waits) == 1


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)

    def after(value: str) -> float | None:
        return retry_after_s(httpx.Response(429, headers={"Retry-After": value}), now=now)

    assert after("3") == 3.0
    assert after("Wed, 21 Oct 2015 07:28:00 GMT") == 30.0
    assert after("Wed, 21 Oct 2015 07:00:00 GMT") == 0.0
    assert after("soon") is None


def test_backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() -> None:
    policy = RetryPolicy(backoff_base_s=1.0, backoff_max_s=4.0)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (9, 4.0)]:
        assert all(ceiling / 2 <= policy.backoff(failures) <= ceiling for _ in range(50))


def test_import_scanq_stays_cheap_and_exports_the_clients_on_use() -> None:
    code = (
        "import json, sys, scanq; before = 'httpx' in sys.modules; client = scanq.Client;"
        "print(json.dumps([before, 'httpx' in sys.modules, client.__module__]))"
    )
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)

    assert json.loads(answer.stdout) == [False, True, "scanq.sdk.syncclient"]
    assert scanq.Client is Client and scanq.AsyncClient is AsyncClient
    with pytest.raises(AttributeError):
        _ = scanq.nothing_of_that_name
    assert Scan.__struct_config__.forbid_unknown_fields is False


def scan_json(status: str, **fields: Any) -> dict[str, Any]:
    at = "2026-01-01T00:00:00Z"
    return {
        "scan_id": "0190a6c2-5b1e-7c3a-9d2e-3f4a5b6c7d8e",
        "status": status,
        "scanner": "tls",
        "max_attempts": 3,
        "created_at": at,
        "updated_at": at,
        "available_at": at,
        "added_by_a_newer_server": {"ignored": True},
        **fields,
    }


def test_the_readme_example_submits_a_scan_and_prints_its_findings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (example,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    finding = {"status": "fail", "severity": "high", "check_id": "tls.certificate_expired"}
    answers = iter([scan_json("Accepted"), scan_json("Running"), scan_json("Complete", result={"findings": [finding]})])
    transport = mock(lambda request: httpx.Response(200, json=next(answers)))
    monkeypatch.setattr(scanq, "Client", functools.partial(Client, transport=transport, sleep=lambda seconds: None))

    exec(compile(example, str(README), "exec"), {})

    assert len([line for line in example.splitlines() if line.strip()]) == 5
    assert capsys.readouterr().out == "fail high tls.certificate_expired\n"
