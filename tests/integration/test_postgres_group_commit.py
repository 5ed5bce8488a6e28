"""Group commit on PostgreSQL: concurrent creates of one process share a transaction, and stay independent.

Every inserting transaction sends exactly one notification, so counting the
notifications on the work channel counts the transactions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from scanq.exceptions import ValidationError
from scanq.ids import new_scan_id
from scanq.models import NewScan, ScanStatus
from scanq.store.postgres import WORK_CHANNEL, PostgresStore

CONCURRENT_CREATES = 200
# 200 creates issued in one go fit in very few transactions (2 may be in flight at once).
MAX_TRANSACTIONS = 5
NOTIFY_DEADLINE_S = 10.0
FENCE = "test-fence"


def _scan(**fields: Any) -> NewScan:
    return NewScan(scan_id=fields.pop("scan_id", None) or new_scan_id(), created_at=datetime.now(UTC), **fields)


class Notifications:
    """The payloads of every notification on the work channel while the test runs."""

    def __init__(self, conn: asyncpg.Connection[Any]) -> None:
        self.conn = conn
        self.received: list[str] = []
        self._fenced = asyncio.Event()

    def on_notify(self, *args: object) -> None:
        payload = str(args[-1])
        if payload == FENCE:
            self._fenced.set()
        else:
            self.received.append(payload)

    async def settle(self) -> list[str]:
        """Everything notified so far: notifications arrive in commit order, so our own fence comes last."""
        self._fenced.clear()
        await self.conn.execute("SELECT pg_notify($1, $2)", WORK_CHANNEL, FENCE)
        await asyncio.wait_for(self._fenced.wait(), NOTIFY_DEADLINE_S)
        return self.received


@pytest.fixture
async def notifications(postgres_database_url: str) -> AsyncIterator[Notifications]:
    """Listens on the work channel while the test runs."""
    conn = await asyncpg.connect(postgres_database_url)
    listening = Notifications(conn)
    await conn.add_listener(WORK_CHANNEL, listening.on_notify)
    try:
        yield listening
    finally:
        await conn.close()


async def test_concurrent_creates_share_few_transactions(
    postgres_database_url: str, notifications: Notifications
) -> None:
    async with PostgresStore(postgres_database_url) as store:
        created = await asyncio.gather(*(store.create(scan=_scan()) for _ in range(CONCURRENT_CREATES)))
        received = await notifications.settle()
        assert 1 <= len(received) <= MAX_TRANSACTIONS
        assert received == [""] * len(received)  # no payload
        assert len({c.scan.scan_id for c in created}) == CONCURRENT_CREATES
        assert all(c.is_new for c in created)
        assert (await store.stats()).counts[ScanStatus.ACCEPTED] == CONCURRENT_CREATES


async def test_one_bad_scan_fails_alone(postgres_database_url: str) -> None:
    async with PostgresStore(postgres_database_url) as store:
        taken = await store.create(scan=_scan())
        answers = await asyncio.gather(
            store.create(scan=_scan()),
            store.create(scan=_scan(scan_id=taken.scan.scan_id)),  # a duplicate id: refused
            store.create(scan=_scan(target="x\x00y")),  # PostgreSQL text cannot hold NUL: refused
            store.create(scan=_scan()),
            return_exceptions=True,
        )
        assert [type(answer).__name__ for answer in answers] == [
            "Created",
            "ValidationError",
            "ValidationError",
            "Created",
        ]
        assert (await store.stats()).counts[ScanStatus.ACCEPTED] == 3


async def test_one_idempotency_key_in_one_group_stores_one_scan(postgres_database_url: str) -> None:
    async with PostgresStore(postgres_database_url) as store, PostgresStore(postgres_database_url) as other:
        answers = await asyncio.gather(
            *(store.create(scan=_scan(idempotency_key="same")) for _ in range(5)),
            *(other.create(scan=_scan(idempotency_key="same")) for _ in range(5)),
        )
        assert sum(answer.is_new for answer in answers) == 1
        assert len({answer.scan.scan_id for answer in answers}) == 1
        assert (await store.stats()).counts[ScanStatus.ACCEPTED] == 1


async def test_create_many_is_all_or_none(postgres_database_url: str) -> None:
    async with PostgresStore(postgres_database_url) as store:
        taken = await store.create(scan=_scan())
        with pytest.raises(ValidationError):
            await store.create_many(scans=[_scan(), _scan(scan_id=taken.scan.scan_id), _scan()])
        assert (await store.stats()).counts[ScanStatus.ACCEPTED] == 1
