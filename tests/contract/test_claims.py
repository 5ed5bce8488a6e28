"""Claiming: each scan goes to exactly one claimer, in priority-then-age order, only once it is available.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from scanq.models import Lease, Outcome, Scan, ScanStatus
from scanq.store import Store
from tests.contract.helpers import (
    LEASE_S,
    LONG_LEASE_S,
    RACE_CLAIMERS,
    RACE_DEADLINE_S,
    RACE_SCANS,
    StoreFactory,
    assert_near,
    claim_one,
    new_scan,
    now_ms,
)


@pytest.mark.slow_on_mongo
async def test_each_scan_is_claimed_exactly_once_by_racing_claimers(store: Store, open_another: StoreFactory) -> None:
    scan_ids = [
        created.scan.scan_id for created in await store.create_many(scans=[new_scan() for _ in range(RACE_SCANS)])
    ]
    claimers = [await open_another() for _ in range(RACE_CLAIMERS)]
    start = asyncio.Event()

    async def claim_all(claimer: Store, worker_id: str) -> list[str]:
        await start.wait()
        mine: list[str] = []
        while batch := await claimer.claim(worker_id=worker_id, limit=7, lease_s=LONG_LEASE_S):
            assert all(scan.lease_owner == worker_id and scan.attempt == 1 for scan in batch)
            mine.extend(scan.scan_id for scan in batch)
        return mine

    tasks = [asyncio.create_task(claim_all(claimer, f"w{i}")) for i, claimer in enumerate(claimers)]
    start.set()
    per_worker = await asyncio.wait_for(asyncio.gather(*tasks), RACE_DEADLINE_S)

    claimed = [scan_id for mine in per_worker for scan_id in mine]
    assert len(claimed) == RACE_SCANS
    assert set(claimed) == set(scan_ids)
    stats = await store.stats()
    assert (stats.counts[ScanStatus.ACCEPTED], stats.counts[ScanStatus.RUNNING]) == (0, RACE_SCANS)


async def test_claim_orders_by_priority_then_age(store: Store) -> None:
    news = [new_scan(priority=p) for p in (0, 5, 1, 5, 0, 1)]
    for new in news:  # one by one: ids are time-ordered, so this is also age order
        await store.create(scan=new)

    first = await store.claim(worker_id="w1", limit=3, lease_s=LONG_LEASE_S)
    rest = await store.claim(worker_id="w1", limit=10, lease_s=LONG_LEASE_S)

    expected = [news[i].scan_id for i in (1, 3, 2, 5, 0, 4)]
    assert [scan.scan_id for scan in first + rest] == expected


async def test_claim_skips_scans_not_yet_available(store: Store) -> None:
    later = new_scan(available_at=now_ms() + timedelta(minutes=5), priority=9)
    now = new_scan()
    await store.create_many(scans=[later, now])

    claimed = await store.claim(worker_id="w1", limit=10, lease_s=LONG_LEASE_S)

    assert [scan.scan_id for scan in claimed] == [now.scan_id]
    assert await store.claim(worker_id="w1", limit=10, lease_s=LONG_LEASE_S) == []


async def test_claim_sets_lease_attempt_and_opens_history(store: Store) -> None:
    new = new_scan()
    await store.create(scan=new)

    scan = await claim_one(store, worker_id="worker-a", lease_s=LONG_LEASE_S)
    stored = await store.get(scan_id=new.scan_id)

    for seen in (scan, stored):
        assert (seen.status, seen.attempt, seen.lease_owner) == (ScanStatus.RUNNING, 1, "worker-a")
        assert_near(seen.started_at, datetime.now(UTC))
        assert seen.started_at is not None
        assert_near(seen.lease_expires_at, seen.started_at + timedelta(seconds=LONG_LEASE_S))
        assert len(seen.history) == 1
        entry = seen.history[0]
        assert (entry.attempt, entry.worker, entry.outcome, entry.finished_at, entry.error) == (
            1,
            "worker-a",
            None,
            None,
            None,
        )
        assert entry.started_at == seen.started_at


@pytest.mark.parametrize("target_key", [None, "t.example"])
@pytest.mark.parametrize("max_per_target", [None, 2])
async def test_a_claim_answers_the_whole_history_as_stored(
    store: Store, max_per_target: int | None, target_key: str | None
) -> None:
    """The first attempt's history, and a later attempt's after a released one: what ``get`` reads after."""
    new = new_scan(target_key=target_key)
    await store.create(scan=new)

    async def claim(worker_id: str) -> list[Scan]:
        return await store.claim(worker_id=worker_id, limit=5, lease_s=LONG_LEASE_S, max_per_target=max_per_target)

    [first] = await claim("worker-a")
    assert first.history == (await store.get(scan_id=new.scan_id)).history
    assert len(first.history) == 1
    assert await store.release(leases=[Lease(scan_id=new.scan_id, worker_id="worker-a", attempt=first.attempt)]) == 1

    [second] = await claim("worker-b")
    stored = await store.get(scan_id=new.scan_id)
    assert second.history == stored.history
    assert [(entry.worker, entry.outcome) for entry in second.history] == [
        ("worker-a", Outcome.RELEASED),
        ("worker-b", None),
    ]
    assert second.history[-1].started_at == second.started_at


async def test_claim_of_an_empty_queue_returns_nothing(store: Store) -> None:
    assert await store.claim(worker_id="w1", limit=5, lease_s=LEASE_S) == []
