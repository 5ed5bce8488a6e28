"""SQLite: ``wait_for_events`` knows how far the calling task has read, whichever call read it.

A live stream reads (``read_events``, ``events_head``) or the dispatcher passes (``dispatch_events``) part of the
log, then waits. An event that settled in between, or events it left unread behind a full page, must end that
wait at once; a commit that adds no event must not. The basic case is in ``tests/unit/test_sqlite_events.py``.
Each test runs its reader in a task of its own: the position read is kept per task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from scanq.exceptions import ValidationError
from scanq.store.base import WEBHOOK_ROLE
from scanq.store.sqlite import SQLiteStore
from tests.contract.helpers import new_scan, new_token

WAKE_WITHIN_S = 10.0
NO_WAKE_S = 60.0
TERM_S = 60.0
SETTLE_S = 0.3
_MAX_SEQ = 2**63 - 1


async def returns_at_once(store: SQLiteStore) -> bool:
    """Whether ``wait_for_events`` returns well before its long timeout."""
    try:
        await asyncio.wait_for(store.wait_for_events(timeout_s=NO_WAKE_S), WAKE_WITHIN_S)
    except TimeoutError:
        return False
    return True


async def settle(store: SQLiteStore) -> None:
    """Wait until a wait sleeps its whole timeout: the watcher has reported the head (a store's first wait
    may end at that report, which is allowed)."""
    async with asyncio.timeout(WAKE_WITHIN_S):
        while True:
            started = time.monotonic()
            await store.wait_for_events(timeout_s=SETTLE_S)
            if time.monotonic() - started >= SETTLE_S * 0.8:
                return


async def make_event_seen_by_another_waiter(store: SQLiteStore, producer: SQLiteStore) -> None:
    """An event commits while some other task waits: the store learns the new head before our task waits."""
    await asyncio.create_task(settle(store))
    other = asyncio.create_task(store.wait_for_events(timeout_s=NO_WAKE_S))
    await asyncio.sleep(SETTLE_S)
    await producer.create(scan=new_scan())
    await asyncio.wait_for(other, WAKE_WITHIN_S)


Position = Callable[[SQLiteStore], Awaitable[object]]
POSITIONS: dict[str, Position] = {
    "events_head": lambda s: s.events_head(),
    "read_events": lambda s: s.read_events(),
    "dispatch_events": lambda s: s.dispatch_events(owner="d"),
    "dispatch_events passing nothing": lambda s: dispatch_twice(s),
}


async def dispatch_twice(store: SQLiteStore) -> None:
    """Dispatch in a task of its own (its position stays there), then pass nothing in ours."""
    assert await asyncio.create_task(store.dispatch_events(owner="d")) == 1
    assert await store.dispatch_events(owner="d") == 0


@pytest.mark.parametrize("position", POSITIONS.values(), ids=POSITIONS.keys())
async def test_an_event_after_the_position_read_ends_the_wait_at_once(sqlite_url: str, position: Position) -> None:
    async with SQLiteStore(sqlite_url) as store, SQLiteStore(sqlite_url) as producer:
        await store.create(scan=new_scan())
        assert await store.lead(role=WEBHOOK_ROLE, owner="d", term_s=TERM_S)

        async def reader() -> bool:
            await position(store)
            await make_event_seen_by_another_waiter(store, producer)
            return await returns_at_once(store)

        assert await asyncio.create_task(reader())


@pytest.mark.parametrize("how", ["read_events", "dispatch_events"])
async def test_a_full_page_leaves_the_rest_unread_and_the_wait_returns_at_once(sqlite_url: str, how: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        await store.create_many(scans=[new_scan() for _ in range(3)])
        assert await store.lead(role=WEBHOOK_ROLE, owner="d", term_s=TERM_S)

        async def reader() -> bool:
            if how == "read_events":
                assert len(await store.read_events(limit=2)) == 2
            else:
                assert await store.dispatch_events(owner="d", limit=2) == 2
            return await returns_at_once(store)

        assert await asyncio.create_task(reader())


async def test_a_commit_that_adds_no_event_does_not_end_a_wait(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store, SQLiteStore(sqlite_url) as other:
        await store.create(scan=new_scan())

        await asyncio.create_task(settle(store))
        waiting = asyncio.create_task(store.wait_for_events(timeout_s=NO_WAKE_S))  # a task that read nothing
        await asyncio.sleep(SETTLE_S)
        await other.create_token(token=new_token())  # another connection's commit: data_version moves
        await asyncio.sleep(SETTLE_S * 3)

        assert not waiting.done(), "a commit without an event woke the waiter"
        waiting.cancel()


async def test_an_after_past_the_head_and_a_malformed_one_are_told_apart(sqlite_url: str) -> None:
    async with SQLiteStore(sqlite_url) as store:
        await store.create(scan=new_scan())

        with pytest.raises(ValidationError, match=r"^no event '2' was ever written$"):
            await store.read_events(after="2")
        with pytest.raises(ValidationError, match=rf"^no event '{_MAX_SEQ}' was ever written$"):
            await store.read_events(after=str(_MAX_SEQ))  # the largest id SQLite can make
        with pytest.raises(ValidationError, match=rf"^invalid event id '{_MAX_SEQ + 1}'$"):
            await store.read_events(after=str(_MAX_SEQ + 1))


async def test_the_stores_own_write_ends_a_wait_without_the_watcher(sqlite_url: str) -> None:
    """The writer reports the head it committed: no poll of ``PRAGMA data_version`` is needed (one a minute here)."""
    async with SQLiteStore(sqlite_url, wake_interval_s=NO_WAKE_S) as store:

        async def reader() -> None:
            assert await store.read_events() == []
            waiting = asyncio.create_task(store.wait_for_events(timeout_s=NO_WAKE_S))
            await asyncio.sleep(SETTLE_S)
            await store.create(scan=new_scan())
            await asyncio.wait_for(waiting, WAKE_WITHIN_S)

        await asyncio.create_task(reader())
