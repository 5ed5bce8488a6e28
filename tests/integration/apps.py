"""In-process ingest and status apps over one real store, for the API tests.

Both apps share one open store (the lifespan does not run under
``httpx.ASGITransport``, so the test opens the store itself); requests go
through the whole Starlette stack, exception handlers included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from scanq.api import create_ingest_app, create_status_app
from scanq.api.openapi import Endpoint
from scanq.config import Settings
from scanq.models import ScanStatus
from scanq.scanners import ScannerRegistry
from scanq.scanners.base import Scanner
from scanq.store import Store, open_store
from scanq.store.base import MAX_PAGE_SIZE


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
    async with open_store(database_url) as store:
        ingest_app = create_ingest_app(config, store=store, scanners=registry)
        status_app = create_status_app(config, store=store, scanners=registry, dashboard=dashboard)
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=ingest_app), base_url="http://127.0.0.1:10550"
            ) as ingest,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=status_app), base_url="http://127.0.0.1:10551"
            ) as status,
        ):
            yield Services(store=store, settings=config, ingest=ingest, status=status)


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
