"""In-process ingest and status apps over one real store, for the API tests.

Both apps share one open store (the lifespan does not run under
``httpx.ASGITransport``, so the test opens the store itself); requests go
through the whole Starlette stack, exception handlers included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette

from scanq.api import create_ingest_app, create_status_app
from scanq.api.openapi import Endpoint
from scanq.config import Settings
from scanq.models import ScanStatus
from scanq.scanners import ScannerRegistry
from scanq.scanners.base import Scanner
from scanq.store import Store, open_store
from scanq.store.base import MAX_PAGE_SIZE

AppFactory = Callable[..., Starlette]


@dataclass(frozen=True, kw_only=True)
class Services:
    store: Store
    settings: Settings
    ingest: httpx.AsyncClient
    status: httpx.AsyncClient


@asynccontextmanager
async def services(
    database_url: str,
    *,
    scanners: dict[str, type[Scanner]] | None = None,
    dashboard: Endpoint | None = None,
    **settings: Any,
) -> AsyncIterator[Services]:
    """Open the store at ``database_url`` and serve ingest and status on it in-process."""
    config = Settings(database_url=database_url, **settings)
    registry = ScannerRegistry(config, extra=scanners)
    async with (
        open_store(database_url) as store,
        app_over(store, create_ingest_app, config, scanners=registry) as ingest_app,
        app_over(store, create_status_app, config, scanners=registry, dashboard=dashboard) as status_app,
    ):
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=ingest_app), base_url="http://127.0.0.1:10550"
            ) as ingest,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=status_app), base_url="http://127.0.0.1:10551"
            ) as status,
        ):
            yield Services(store=store, settings=config, ingest=ingest, status=status)


@asynccontextmanager
async def app_over(
    store: Store, factory: AppFactory, settings: Settings, *, scanners: ScannerRegistry | None = None, **options: Any
) -> AsyncIterator[Starlette]:
    """``factory``'s app over the open ``store``; at the end, what its lifespan would close (the event feed
    and the callers' token cache), since the lifespan does not run under ``httpx.ASGITransport``."""
    registry = scanners if scanners is not None else ScannerRegistry(settings)
    app = factory(settings, store=store, scanners=registry, **options)
    try:
        yield app
    finally:
        await app.state.events.aclose()
        await app.state.callers.aclose()


async def snapshot(store: Store) -> tuple[dict[ScanStatus, int], list[tuple[str, ScanStatus]]]:
    """What the store holds (counts and every scan's id and status), to show that a request wrote nothing."""
    stats = await store.stats()
    scans: list[tuple[str, ScanStatus]] = []
    cursor: str | None = None
    while True:
        page = await store.list_scans(limit=MAX_PAGE_SIZE, cursor=cursor)
        scans.extend((s.scan_id, s.status) for s in page.scans)
        if page.next_cursor is None:
            return dict(stats.counts), scans
        cursor = page.next_cursor
