"""Cancelling: at once when accepted, by request when running, refused when finished or unknown.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from scanq.exceptions import ScanFinished, ScanNotFound
from scanq.ids import new_scan_id
from scanq.models import Finish, Outcome, ScanStatus
from scanq.store import Store
from tests.contract.helpers import LONG_LEASE_S, assert_near, claim_one, lease_of, new_scan


async def test_cancel_an_accepted_scan_cancels_it_at_once(store: Store) -> None:
    await store.create(scan=new_scan())

    scan = (await store.create(scan=new_scan())).scan
    cancelled = await store.cancel(scan_id=scan.scan_id)

    assert cancelled.status == ScanStatus.CANCELLED
    assert_near(cancelled.finished_at, datetime.now(UTC))
    assert (await store.get(scan_id=scan.scan_id)).status == ScanStatus.CANCELLED
    claimed = await store.claim(worker_id="w1", limit=5, lease_s=LONG_LEASE_S)
    assert scan.scan_id not in {s.scan_id for s in claimed}


async def test_cancel_a_running_scan_asks_its_worker_to_stop(store: Store) -> None:
    await store.create(scan=new_scan())
    scan = await claim_one(store)

    requested = await store.cancel(scan_id=scan.scan_id)
    again = await store.cancel(scan_id=scan.scan_id)
    stopped = await store.finish(finishes=[Finish(lease=lease_of(scan), outcome=Outcome.CANCELLED)])
    final = await store.get(scan_id=scan.scan_id)

    assert (requested.status, requested.cancel_requested, requested.lease_owner) == (ScanStatus.RUNNING, True, "w1")
    assert again.cancel_requested
    assert stopped == [True]
    assert final.status == ScanStatus.CANCELLED
    assert final.history[-1].outcome == Outcome.CANCELLED


async def test_cancel_a_finished_scan_raises_scan_finished(store: Store) -> None:
    await store.create(scan=new_scan())
    scan = await claim_one(store)
    await store.finish(finishes=[Finish(lease=lease_of(scan), outcome=Outcome.ERROR, error="no route")])
    cancelled = (await store.create(scan=new_scan())).scan
    await store.cancel(scan_id=cancelled.scan_id)

    for scan_id, status in ((scan.scan_id, ScanStatus.ERROR), (cancelled.scan_id, ScanStatus.CANCELLED)):
        with pytest.raises(ScanFinished) as raised:
            await store.cancel(scan_id=scan_id)
        assert (raised.value.scan_id, raised.value.status) == (scan_id, status)
    assert (await store.get(scan_id=scan.scan_id)).status == ScanStatus.ERROR


async def test_cancel_an_unknown_scan_raises_not_found(store: Store) -> None:
    with pytest.raises(ScanNotFound):
        await store.cancel(scan_id=new_scan_id())
