"""Finished scans per step (``Store.finished_counts``): what ``GET /stats/throughput`` is built on.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from scanq.exceptions import ValidationError
from scanq.models import Outcome, ScanStatus
from scanq.store import Store
from tests.contract.finished import BETWEEN_BATCHES_S, finish_scans, midpoint
from tests.contract.helpers import LONG_LEASE_S, new_scan

# Long enough that each batch of finishes lies within one step of the boundary between them.
STEP_S = 60.0
STEP = timedelta(seconds=STEP_S)


def whole_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def counts(complete: int = 0, error: int = 0, cancelled: int = 0) -> dict[ScanStatus, int]:
    return {ScanStatus.COMPLETE: complete, ScanStatus.ERROR: error, ScanStatus.CANCELLED: cancelled}


async def test_every_step_is_counted_per_status_by_finished_at(store: Store) -> None:
    early = await finish_scans(store, [Outcome.COMPLETE, Outcome.COMPLETE, Outcome.ERROR])
    await asyncio.sleep(BETWEEN_BATCHES_S)
    late = await finish_scans(store, [Outcome.COMPLETE, Outcome.CANCELLED])
    await store.create_many(scans=[new_scan(), new_scan()])
    await store.claim(worker_id="w2", limit=1, lease_s=LONG_LEASE_S)  # one Running, one Accepted: never counted
    boundary = whole_ms(midpoint(early, late))
    since = boundary - STEP

    buckets = await store.finished_counts(since=since, until=boundary + 2 * STEP, step_s=STEP_S)

    assert buckets == [
        (since, counts(complete=2, error=1)),
        (boundary, counts(complete=1, cancelled=1)),
        (boundary + STEP, counts()),
    ]


async def test_the_window_includes_since_and_excludes_until(store: Store) -> None:
    early = await finish_scans(store, [Outcome.ERROR, Outcome.CANCELLED])
    await asyncio.sleep(BETWEEN_BATCHES_S)
    late = await finish_scans(store, [Outcome.COMPLETE])
    boundary = whole_ms(midpoint(early, late))

    before = await store.finished_counts(since=boundary - STEP, until=boundary, step_s=STEP_S)
    after = await store.finished_counts(since=boundary, until=boundary + STEP, step_s=STEP_S)

    assert before == [(boundary - STEP, counts(error=1, cancelled=1))]
    assert after == [(boundary, counts(complete=1))]


async def test_a_short_step_spreads_the_window_over_many_steps(store: Store) -> None:
    (scan,) = await finish_scans(store, [Outcome.COMPLETE])
    assert scan.finished_at is not None
    since = whole_ms(scan.finished_at) - timedelta(seconds=2.5)

    buckets = await store.finished_counts(since=since, until=since + timedelta(seconds=5), step_s=1.0)

    assert [start for start, _ in buckets] == [since + timedelta(seconds=i) for i in range(5)]
    assert [by_status for _, by_status in buckets] == [counts(), counts(), counts(complete=1), counts(), counts()]


async def test_an_empty_window_has_no_steps_and_a_bad_step_is_refused(store: Store) -> None:
    now = whole_ms(datetime.now(UTC))

    assert await store.finished_counts(since=now, until=now, step_s=1.0) == []
    for step_s in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValidationError):
            await store.finished_counts(since=now - STEP, until=now, step_s=step_s)
    with pytest.raises(ValidationError):
        await store.finished_counts(since=now - timedelta(days=365), until=now, step_s=1.0)
