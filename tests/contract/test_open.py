"""Opening a store: data survives close and reopen, and only an open store answers a ping.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import pytest

from scanq.exceptions import StoreUnavailable
from scanq.models import ScanStatus
from scanq.store import open_store
from tests.contract.helpers import StoreFactory, new_scan


async def test_created_scan_survives_close_and_reopen(database_url: str) -> None:
    new = new_scan(target="durable.example")
    async with open_store(database_url) as first:
        await first.create(scan=new)

    async with open_store(database_url) as second:
        scan = await second.get(scan_id=new.scan_id)

    assert (scan.target, scan.status) == ("durable.example", ScanStatus.ACCEPTED)


async def test_ping_answers_only_while_the_store_is_open(database_url: str, open_another: StoreFactory) -> None:
    store = open_store(database_url)
    new = new_scan()
    with pytest.raises(StoreUnavailable):
        await store.ping()  # not opened yet

    async with store:
        await store.create(scan=new)
        await store.ping()  # answers: no StoreUnavailable while open
        seen = await (await open_another()).get(scan_id=new.scan_id)

    assert seen.status == ScanStatus.ACCEPTED
    with pytest.raises(StoreUnavailable):
        await store.ping()  # closed: a health check must not report it ready
