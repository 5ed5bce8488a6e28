"""Read every scan back from the store and summarise final statuses and history (the drain's proof)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bench.processes import Process
from scanq.models import Outcome, ScanStatus
from scanq.store import Store
from scanq.store.base import MAX_PAGE_SIZE

POLL_S = 0.1


@dataclass(slots=True)
class Census:
    """What a full read of the store found."""

    total: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    with_bad_history: int = 0
    first_started_at: datetime | None = None
    last_finished_at: datetime | None = None

    @property
    def span_s(self) -> float:
        """From the first claim to the last finish, by the store's clock."""
        if self.first_started_at is None or self.last_finished_at is None:
            return 0.0
        return (self.last_finished_at - self.first_started_at).total_seconds()


async def census(store: Store) -> Census:
    """Page through every scan (newest first) and check each finished one's history."""
    result = Census()
    cursor: str | None = None
    while True:
        page = await store.list_scans(limit=MAX_PAGE_SIZE, cursor=cursor)
        for scan in page.scans:
            result.total += 1
            result.statuses[str(scan.status)] += 1
            if scan.started_at is not None and (
                result.first_started_at is None or scan.started_at < result.first_started_at
            ):
                result.first_started_at = scan.started_at
            if scan.finished_at is not None and (
                result.last_finished_at is None or scan.finished_at > result.last_finished_at
            ):
                result.last_finished_at = scan.finished_at
            if scan.status is ScanStatus.COMPLETE and (
                not scan.history or scan.history[-1].outcome is not Outcome.COMPLETE
            ):
                result.with_bad_history += 1
        if page.next_cursor is None:
            return result
        cursor = page.next_cursor


async def wait_until_finished(
    store: Store, *, count: int, timeout_s: float, processes: Sequence[Process] = ()
) -> float:
    """Poll ``stats`` until ``count`` scans are terminal; return the wall time (``time.time()``) it was seen.

    Args:
        processes: workers to check each poll, so a crash fails the scenario at once.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        stats = await store.stats()
        finished = sum(n for status, n in stats.counts.items() if status.is_terminal)
        if finished >= count:
            return time.time()
        for process in processes:
            process.check_alive()
        if time.monotonic() > deadline:
            counts = dict(stats.counts)
            raise TimeoutError(f"only {finished} of {count} scans finished after {timeout_s:.0f}s: {counts}")
        await asyncio.sleep(POLL_S)
