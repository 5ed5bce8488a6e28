"""Opening a store: data survives close and reopen, and an open store answers a ping.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

from scanq.models import ScanStatus
from scanq.store import Store, open_store
from tests.contract.helpers import new_scan


async def test_created_scan_survives_close_and_reopen(database_url: str) -> None:
    new = new_scan(target="durable.example")
    async with open_store(database_url) as first:
        await first.create(scan=new)

    async with open_store(database_url) as second:
        scan = await second.get(scan_id=new.scan_id)

    assert (scan.target, scan.status) == ("durable.example", ScanStatus.ACCEPTED)


async def test_ping_answers_on_an_open_store(store: Store) -> None:
    await store.ping()
