"""``CallbackEndpoints`` (the tenant's callback endpoint, made once and remembered per process) and the scan
service's handling of ``callback_url`` without HTTP, over a memory store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from scanq.config import Settings
from scanq.exceptions import ValidationError
from scanq.models import WebhookEndpoint
from scanq.scanners import ScannerRegistry
from scanq.scans import ScanService
from scanq.store.base import callback_endpoint_id
from scanq.store.memory import MemoryStore
from scanq.submissions import MAX_URL_LENGTH, SubmitRequest
from scanq.webhook_service import WebhookService
from scanq.webhooks.callbacks import CallbackEndpoints, public_endpoint_id

HOOK = "https://93.184.215.14/cb"


class CountingStore:
    """Counts the reads and creates a ``CallbackEndpoints`` makes (the rest goes to the real store)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.reads = 0
        self.creates = 0

    async def get_endpoint(self, **kwargs: Any) -> WebhookEndpoint:
        self.reads += 1
        return await self.store.get_endpoint(**kwargs)

    async def create_endpoint(self, *, endpoint: WebhookEndpoint) -> None:
        self.creates += 1
        await asyncio.sleep(0)  # let a concurrent caller in between
        await self.store.create_endpoint(endpoint=endpoint)


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore(f"memory://{uuid.uuid4()}") as opened:
        yield opened


async def test_ensure_reads_the_store_once_per_cache_period(store: MemoryStore) -> None:
    now = [0.0]
    counting = CountingStore(store)
    endpoints = CallbackEndpoints(counting, cache_s=10.0, monotonic=lambda: now[0])  # type: ignore[arg-type]

    await asyncio.gather(*(endpoints.ensure("acme") for _ in range(5)))
    await endpoints.ensure("acme")
    assert (counting.reads, counting.creates) == (1, 1)
    now[0] = 11.0
    await endpoints.ensure("acme")
    assert (counting.reads, counting.creates) == (2, 1)
    endpoints.forget("acme")
    await endpoints.ensure("acme")
    assert counting.reads == 3


async def test_two_processes_making_it_at_once_share_the_one_stored(store: MemoryStore) -> None:
    one, two = CallbackEndpoints(store), CallbackEndpoints(store)
    first, second = await asyncio.gather(one.get_or_create("acme"), two.get_or_create("acme"))
    assert first.secret == second.secret
    assert [e.endpoint_id for e in await store.list_endpoints()] == [callback_endpoint_id("acme")]


def test_the_api_names_it_callbacks() -> None:
    assert public_endpoint_id(callback_endpoint_id("acme"), tenant="acme") == "callbacks"
    assert public_endpoint_id(callback_endpoint_id("acme"), tenant="other") != "callbacks"
    assert public_endpoint_id("wh_0123", tenant="acme") == "wh_0123"


async def test_a_scan_service_without_a_callback_guard_refuses_callback_url(store: MemoryStore) -> None:
    settings = Settings(database_url="memory://x")
    service = ScanService(store, ScannerRegistry(settings), settings)
    with pytest.raises(ValidationError, match="callback_url is not accepted"):
        await service.submit(SubmitRequest(callback_url=HOOK))
    with pytest.raises(ValidationError, match=f"1 to {MAX_URL_LENGTH}"):
        await service.submit(SubmitRequest(callback_url=""))
    assert not (await store.list_scans(limit=1)).scans


async def test_a_batch_checks_each_distinct_url_once_and_names_the_refused_item(store: MemoryStore) -> None:
    settings = Settings(database_url="memory://x")
    checked: list[str] = []

    async def check(url: str) -> str:
        checked.append(url)
        if "10.0.0.1" in url:
            raise ValidationError("refused")
        return url

    webhooks = WebhookService(store, settings, url_check=check)
    service = ScanService(store, ScannerRegistry(settings), settings, callbacks=webhooks)
    scans = await service.submit_many([SubmitRequest(callback_url=HOOK) for _ in range(3)] + [SubmitRequest()])
    with pytest.raises(ValidationError, match=r"scans\[1\]: callback_url: refused"):
        await service.submit_many([SubmitRequest(), SubmitRequest(callback_url="https://10.0.0.1/")])

    assert checked == [HOOK, "https://10.0.0.1/"]
    assert [s.callback_url for s in scans] == [HOOK, HOOK, HOOK, None]
    assert len((await store.list_scans(limit=10)).scans) == 4
    assert [e.url for e in await store.list_endpoints()] == [None]
