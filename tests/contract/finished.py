"""Helpers of the contract files about finished scans (throughput, export, retention): scans made terminal."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from scanq.models import Finish, Outcome, Scan
from scanq.store import Store
from tests.contract.helpers import LONG_LEASE_S, lease_of, new_scan

# The time between two batches of finishes, so the store's clock tells them apart (milliseconds on MongoDB).
BETWEEN_BATCHES_S = 0.05


async def finish_scans(store: Store, outcomes: Sequence[Outcome], *, worker_id: str = "w-finish") -> list[Scan]:
    """Create one scan per outcome, claim them all and finish each with its outcome; the stored scans, in order."""
    news = [new_scan() for _ in outcomes]
    await store.create_many(scans=news)
    claimed = await store.claim(worker_id=worker_id, limit=len(news), lease_s=LONG_LEASE_S)
    by_id = {scan.scan_id: scan for scan in claimed}
    assert len(by_id) == len(news), "other claimable scans are in the way"
    finishes = [
        Finish(
            lease=lease_of(by_id[new.scan_id]),
            outcome=outcome,
            result={"n": index} if outcome is Outcome.COMPLETE else None,
            error="failed" if outcome is Outcome.ERROR else None,
        )
        for index, (new, outcome) in enumerate(zip(news, outcomes, strict=True))
    ]
    assert await store.finish(finishes=finishes) == [True] * len(finishes)
    return [await store.get(scan_id=new.scan_id) for new in news]


def finished_at(scan: Scan) -> datetime:
    assert scan.finished_at is not None
    return scan.finished_at


def midpoint(earlier: Sequence[Scan], later: Sequence[Scan]) -> datetime:
    """A moment after every ``earlier`` finish and before every ``later`` one (asserted)."""
    last, first = max(map(finished_at, earlier)), min(map(finished_at, later))
    assert last < first, "the store's clock did not move between the two batches"
    return last + (first - last) / 2
