"""SQLite schema 6 (one-off callbacks, delivery retention) on a file of schema 5: what was stored reads back.

The behaviour every backend shares is in ``tests/contract/test_callbacks.py``.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

from scanq.ids import new_scan_id
from scanq.models import DeliveryStatus, EventType, NewScan, ScanStatus, WebhookEndpoint
from scanq.store.base import RETENTION_ROLE, callback_endpoint_id
from scanq.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteStore, sqlite_path

TERM_S = 30.0


async def test_schema_6_keeps_endpoints_deliveries_and_scans_and_allows_a_callback_endpoint(sqlite_url: str) -> None:
    path = sqlite_path(sqlite_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    scan_id, at = new_scan_id(), datetime.now(UTC).timestamp() - 60
    with sqlite3.connect(path) as conn:
        for migration in MIGRATIONS[:5]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 5")
        conn.execute(
            "INSERT INTO scans (scan_id, status, scanner, options, priority, max_attempts, created_at, updated_at,"
            " available_at) VALUES (?, 'Accepted', 'mock', '{}', 0, 3, ?, ?, ?)",
            (scan_id, at, at, at),
        )
        conn.execute(
            "INSERT INTO webhook_endpoints (endpoint_id, tenant, url, event_types, description, secret,"
            " created_at, updated_at) VALUES ('ep_old', 'default', 'https://hooks.example.com/x',"
            " '[\"scan.accepted\"]', 'old', 'whsec_AAAA', ?, ?)",
            (at, at),
        )
        conn.execute(
            "INSERT INTO webhook_deliveries (endpoint_id, seq, scan_id, tenant, event_status, event_attempt,"
            " event_at, status, attempts, created_at, next_attempt_at, last_attempt_at, delivered_at)"
            " VALUES ('ep_old', 1, ?, 'default', 'Accepted', 0, ?, 'delivered', 1, ?, ?, ?, ?)",
            (scan_id, at, at, at, at, at),
        )
    conn.close()

    async with SQLiteStore(sqlite_url) as store:
        assert (await store.pragmas())["user_version"] == SCHEMA_VERSION
        old = await store.get_endpoint(endpoint_id="ep_old")
        (delivery,) = await store.list_deliveries(endpoint_id="ep_old")
        scan = await store.get(scan_id=scan_id)
        now = datetime.now(UTC)
        callbacks = WebhookEndpoint(
            endpoint_id=callback_endpoint_id("default"),
            tenant="default",
            url=None,
            event_types=frozenset({EventType.ACCEPTED}),
            secret="whsec_BBBB",
            created_at=now,
            updated_at=now,
        )
        await store.create_endpoint(endpoint=callbacks)
        stored = await store.get_endpoint(endpoint_id=callbacks.endpoint_id)
        created = await store.create(
            scan=NewScan(scan_id=new_scan_id(), created_at=now, callback_url="https://hooks.example.com/cb")
        )
        assert await store.lead(role=RETENTION_ROLE, owner="p", term_s=TERM_S)
        pruned = await store.prune_deliveries(before=now + timedelta(days=1), owner="p")

    assert (old.url, old.description, old.event_types) == (
        "https://hooks.example.com/x",
        "old",
        frozenset({EventType.ACCEPTED}),
    )
    assert (delivery.status, delivery.url, delivery.event.scan_id) == (DeliveryStatus.DELIVERED, None, scan_id)
    assert (scan.status, scan.callback_url) == (ScanStatus.ACCEPTED, None)
    assert stored.url is None
    assert created.scan.callback_url == "https://hooks.example.com/cb"
    assert pruned == 1
