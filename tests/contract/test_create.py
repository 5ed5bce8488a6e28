"""Creating and reading scans: fields round-trip, defaults, batches all-or-none, concurrent creates (group commit).

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from scanq.exceptions import ScanNotFound, ScanqError, StoreUnavailable
from scanq.ids import new_scan_id
from scanq.models import ScanStatus
from scanq.store import Store
from tests.contract.helpers import all_scans, assert_near, new_scan, now_ms


async def test_create_then_get_returns_every_field(store: Store) -> None:
    new = new_scan(
        target="example.com",
        scanner="noop",
        options={"ports": [80, 443], "deep": {"x": True, "label": "ü"}},
        priority=7,
        max_attempts=5,
        available_at=now_ms() + timedelta(hours=1),
        idempotency_key="round-trip",
    )

    created = await store.create(scan=new)
    fetched = await store.get(scan_id=new.scan_id)

    assert created.is_new
    for scan in (created.scan, fetched):
        assert scan.scan_id == new.scan_id
        assert scan.status == ScanStatus.ACCEPTED
        assert scan.target == "example.com"
        assert scan.scanner == "noop"
        assert scan.options == {"ports": [80, 443], "deep": {"x": True, "label": "ü"}}
        assert scan.priority == 7
        assert scan.attempt == 0
        assert scan.max_attempts == 5
        assert scan.created_at == new.created_at
        assert scan.available_at == new.available_at
        assert scan.idempotency_key == "round-trip"
        assert_near(scan.updated_at, datetime.now(UTC))
        assert (scan.started_at, scan.finished_at, scan.lease_owner, scan.lease_expires_at) == (None,) * 4
        assert (scan.error, scan.result, scan.cancel_requested, scan.history) == (None, None, False, ())


async def test_defaults_make_a_scan_claimable_at_once(store: Store) -> None:
    new = new_scan()

    scan = (await store.create(scan=new)).scan

    assert (scan.target, scan.scanner, scan.options, scan.priority) == (None, "mock", {}, 0)
    assert scan.available_at == new.created_at
    assert (await store.get(scan_id=new.scan_id)).available_at == new.created_at


async def test_get_unknown_scan_raises_not_found(store: Store) -> None:
    with pytest.raises(ScanNotFound):
        await store.get(scan_id=new_scan_id())


async def test_concurrent_creates_are_all_stored(store: Store) -> None:
    news = [new_scan() for _ in range(200)]

    results = await asyncio.gather(*(store.create(scan=new) for new in news))

    assert all(result.is_new for result in results)
    assert [result.scan.scan_id for result in results] == [new.scan_id for new in news]
    stored = await all_scans(store, limit=64)
    assert sorted(scan.scan_id for scan in stored) == sorted(new.scan_id for new in news)
    assert (await store.stats()).counts[ScanStatus.ACCEPTED] == 200


async def test_create_many_is_all_or_none(store: Store) -> None:
    existing = new_scan()
    await store.create(scan=existing)
    fresh = [new_scan(), new_scan()]

    with pytest.raises(ScanqError) as raised:
        await store.create_many(scans=[*fresh, new_scan(scan_id=existing.scan_id)])
    assert not isinstance(raised.value, StoreUnavailable)
    twice = new_scan()
    with pytest.raises(ScanqError):
        await store.create_many(scans=[twice, new_scan(), twice])

    for new in [*fresh, twice]:
        with pytest.raises(ScanNotFound):
            await store.get(scan_id=new.scan_id)
    assert (await store.stats()).counts[ScanStatus.ACCEPTED] == 1


async def test_create_many_stores_a_batch_in_order(store: Store) -> None:
    news = [new_scan(priority=i) for i in range(50)]

    results = await store.create_many(scans=news)

    assert [r.scan.scan_id for r in results] == [n.scan_id for n in news]
    assert all(r.is_new for r in results)
    assert [s.priority for s in await all_scans(store)] == list(reversed(range(50)))


async def test_duplicate_create_fails_only_itself(store: Store) -> None:
    existing = new_scan()
    await store.create(scan=existing)
    others = [new_scan() for _ in range(20)]

    results = await asyncio.gather(
        store.create(scan=new_scan(scan_id=existing.scan_id)),
        *(store.create(scan=new) for new in others),
        return_exceptions=True,
    )

    assert isinstance(results[0], ScanqError)
    assert all(not isinstance(result, BaseException) for result in results[1:])
    assert (await store.stats()).counts[ScanStatus.ACCEPTED] == 21
