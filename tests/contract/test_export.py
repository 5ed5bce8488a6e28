"""Export: ``export_scans`` pages through finished scans in key order, resumable after any scan id.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from scanq.exceptions import ValidationError
from scanq.models import Outcome, Scan, ScanStatus
from scanq.store import Store
from tests.contract.finished import BETWEEN_BATCHES_S, finish_scans, midpoint
from tests.contract.helpers import LONG_LEASE_S, new_scan


async def export_all(store: Store, *, page: int, **filters: object) -> list[list[Scan]]:
    """Every page of an export, each resumed after the last scan id of the one before."""
    pages: list[list[Scan]] = []
    after: str | None = None
    while scans := await store.export_scans(after=after, limit=page, **filters):  # type: ignore[arg-type]
        pages.append(scans)
        after = scans[-1].scan_id
    return pages


def ids(scans: list[Scan]) -> list[str]:
    return [scan.scan_id for scan in scans]


async def test_an_export_pages_through_finished_scans_in_key_order(store: Store) -> None:
    finished = await finish_scans(store, [Outcome.COMPLETE, Outcome.ERROR, Outcome.CANCELLED] * 3)
    await store.create(scan=new_scan())
    await store.claim(worker_id="w2", limit=1, lease_s=LONG_LEASE_S)  # Running: not finished
    await store.create(scan=new_scan())  # Accepted: not finished

    pages = await export_all(store, page=4)

    assert [len(page) for page in pages] == [4, 4, 1]
    exported = [scan for page in pages for scan in page]
    assert ids(exported) == sorted(ids(finished))
    assert exported == sorted(finished, key=lambda scan: scan.scan_id)  # whole records: history, result, error


async def test_an_export_resumes_after_any_scan_id(store: Store) -> None:
    finished = sorted(await finish_scans(store, [Outcome.COMPLETE] * 5), key=lambda scan: scan.scan_id)

    resumed = await store.export_scans(after=finished[1].scan_id, limit=100)
    more = await finish_scans(store, [Outcome.ERROR] * 2)  # later ids: a resumed export sees them
    after_new = await store.export_scans(after=finished[-1].scan_id, limit=100)

    assert ids(resumed) == ids(finished[2:])
    assert ids(after_new) == sorted(ids(more))


async def test_an_export_filters_by_status_and_finished_time(store: Store) -> None:
    early = await finish_scans(store, [Outcome.COMPLETE, Outcome.ERROR, Outcome.CANCELLED])
    await asyncio.sleep(BETWEEN_BATCHES_S)
    late = await finish_scans(store, [Outcome.COMPLETE, Outcome.ERROR])
    boundary = midpoint(early, late)
    hour = timedelta(hours=1)

    errors = await store.export_scans(status=ScanStatus.ERROR)
    before = await store.export_scans(until=boundary)
    after = await store.export_scans(since=boundary)
    window = await store.export_scans(status=ScanStatus.COMPLETE, since=boundary - hour, until=boundary)
    nothing = await store.export_scans(since=boundary + hour)

    assert ids(errors) == sorted([early[1].scan_id, late[1].scan_id])
    assert ids(before) == sorted(ids(early))
    assert ids(after) == sorted(ids(late))
    assert ids(window) == [early[0].scan_id]
    assert nothing == []


async def test_an_export_refuses_a_live_status_or_a_cursor_that_is_not_a_scan_id(store: Store) -> None:
    for status in (ScanStatus.ACCEPTED, ScanStatus.RUNNING):
        with pytest.raises(ValidationError):
            await store.export_scans(status=status)
    with pytest.raises(ValidationError):
        await store.export_scans(after="not-a-scan-id")
