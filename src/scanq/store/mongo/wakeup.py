"""Waking idle workers and event readers: a change stream where the server has one, else polling.

On a replica set or sharded cluster a change stream on inserts (and updates
that make a scan Accepted or move its ``available_at``) wakes idle workers; it
resumes after errors from its resume token. A standalone server has no change
streams: then ``wait`` polls for a claimable scan every ``poll_interval_s``.

``EventSignal`` wakes ``wait_for_events`` the same way, for any status change: one change
stream (or one poller, while someone waits) per store, whose signal every waiter shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure, PyMongoError

from scanq.exceptions import StoreError
from scanq.store.mongo.errors import wrap_errors
from scanq.store.mongo.eventlog import OUTBOX_PENDING
from scanq.store.mongo.rows import Document
from scanq.store.mongo.statements import EVENT_WATCH_PIPELINE, WATCH_PIPELINE, claimable_filter

logger = logging.getLogger(__name__)

WATCH_RETRY_BASE_S = 0.1
WATCH_RETRY_MAX_S = 5.0
# Resuming a change stream from a token the server no longer has: start a fresh stream instead.
CHANGE_STREAM_HISTORY_LOST = 286
INVALID_RESUME_TOKEN = 260


class ChangeStreamWatcher:
    """The store's wake-up signal: set by its own writes and by the change stream, polled on a standalone server.

    Args:
        poll_interval_s: how often ``wait`` looks for work when the server has no change streams.
    """

    def __init__(self, *, poll_interval_s: float) -> None:
        self.poll_interval_s = poll_interval_s
        self._work = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        self._collection: AsyncCollection[Document] | None = None
        self._now: Callable[[], datetime] | None = None
        self._is_watching = False

    def start(self, collection: AsyncCollection[Document], *, is_watching: bool, now: Callable[[], datetime]) -> None:
        """Use ``collection``: watched through a change stream when ``is_watching``, else polled with ``now``."""
        self._collection, self._is_watching, self._now = collection, is_watching, now

    def wake(self) -> None:
        """New claimable work may exist: let waiters look."""
        self._work.set()

    async def wait(self, *, timeout_s: float) -> None:
        """Return soon after new claimable work may exist, or at ``timeout_s``."""
        if not self._is_watching:
            await self._poll(timeout_s=timeout_s)
            return
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name="scanq-mongo-change-stream")
        try:
            await asyncio.wait_for(self._work.wait(), timeout_s)
        except TimeoutError:
            return
        finally:
            # Every return is followed by a claim, so an event seen now is not lost by clearing it.
            self._work.clear()

    async def aclose(self) -> None:
        """Stop the change stream; ``wait`` refuses until ``start`` is called again."""
        self._collection = None
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watcher
            self._watcher = None

    def _opened(self) -> tuple[AsyncCollection[Document], Callable[[], datetime]]:
        if self._collection is None or self._now is None:
            raise StoreError("the MongoDB store is not open")
        return self._collection, self._now

    async def _poll(self, *, timeout_s: float) -> None:
        collection, now = self._opened()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (remaining := deadline - loop.time()) > 0:
            await asyncio.sleep(min(self.poll_interval_s, remaining))
            with wrap_errors():
                found = await collection.find_one(claimable_filter(now()), projection={"_id": True})
            if found is not None:
                return

    async def _watch(self) -> None:
        """Wake waiters on every change event that may mean claimable work; resume after errors."""
        collection, _ = self._opened()
        await follow(collection, WATCH_PIPELINE, self._work.set)


async def follow(collection: AsyncCollection[Document], pipeline: list[Document], signal: Callable[[], None]) -> None:
    """Call ``signal`` on every change event of ``collection`` that ``pipeline`` keeps; resume after errors.

    Also when the stream opens (what came before it is there to be found now) and after each failure
    (changes may have been missed meanwhile): a spurious signal costs a look, a missed one a sleep.
    """
    logger.info("wake-up: change stream on %s.%s", collection.database.name, collection.name)
    token: Mapping[str, Any] | None = None
    failures = 0
    while True:
        try:
            async with await collection.watch(pipeline, resume_after=token) as stream:
                signal()
                failures = 0
                async for _ in stream:
                    token = stream.resume_token
                    signal()
        except OperationFailure as exc:
            if exc.code in (CHANGE_STREAM_HISTORY_LOST, INVALID_RESUME_TOKEN):
                logger.warning("change stream cannot resume (%s): starting a new one", exc)
                token = None
            failures += 1
            await _pause(exc, failures, signal)
        except PyMongoError as exc:
            failures += 1
            await _pause(exc, failures, signal)


async def _pause(exc: Exception, failures: int, signal: Callable[[], None]) -> None:
    delay = min(WATCH_RETRY_MAX_S, WATCH_RETRY_BASE_S * 2 ** min(failures - 1, 10))
    logger.warning("change stream failed (%s); resuming in %.1fs", exc, delay)
    signal()
    await asyncio.sleep(delay)


class EventSignal:
    """Wakes every ``wait_for_events`` of a store: on its own writes, and through a change stream or a poller.

    Each waiter waits for the next ``notify`` after it began (a broadcast: one reader's wake-up
    never eats another's). The change stream (replica set) sees every insert and status change of
    the scans, whichever process made it. Without one, a poller looks every ``poll_interval_s``
    while someone waits: for an outbox not numbered yet, or an end of the log that moved (events
    numbered by another process).

    Args:
        poll_interval_s: how often to look when the server has no change streams.
    """

    def __init__(self, *, poll_interval_s: float) -> None:
        self.poll_interval_s = poll_interval_s
        self._changed = asyncio.Event()
        self._waiters = 0
        self._has_waiters = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._scans: AsyncCollection[Document] | None = None
        self._events: AsyncCollection[Document] | None = None
        self._is_watching = False

    def start(self, scans: AsyncCollection[Document], events: AsyncCollection[Document], *, is_watching: bool) -> None:
        """Follow ``scans`` (through a change stream when ``is_watching``, else by polling it and ``events``)."""
        self._scans, self._events, self._is_watching = scans, events, is_watching

    def notify(self) -> None:
        """A new event may exist: wake every waiter."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, *, timeout_s: float) -> None:
        """Return soon after the next ``notify``, or at ``timeout_s``."""
        if self._scans is None or self._events is None:
            raise StoreError("the MongoDB store is not open")
        if self._task is None or self._task.done():
            follower = follow(self._scans, EVENT_WATCH_PIPELINE, self.notify) if self._is_watching else self._poll()
            self._task = asyncio.create_task(follower, name="scanq-mongo-events")
        changed = self._changed
        self._waiters += 1
        self._has_waiters.set()
        try:
            await asyncio.wait_for(changed.wait(), timeout_s)
        except TimeoutError:
            return
        finally:
            self._waiters -= 1
            if not self._waiters:
                self._has_waiters.clear()

    async def aclose(self) -> None:
        """Stop following; ``wait`` refuses until ``start`` is called again."""
        self._scans = self._events = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        """Look for a new event while someone waits; the end of the log seen last is kept across waits."""
        last: int | None = None
        while True:
            await self._has_waiters.wait()
            await asyncio.sleep(self.poll_interval_s)
            scans, events = self._scans, self._events
            if scans is None or events is None:
                return
            try:
                waiting = await scans.find_one(OUTBOX_PENDING, projection={"_id": True})
                newest = await events.find_one({}, projection={"_id": True}, sort=[("_id", -1)])
            except PyMongoError as exc:
                logger.debug("event poll failed: %s", exc)
                self.notify()  # the waiters find out for themselves
                continue
            end = 0 if newest is None else int(newest["_id"])
            if waiting is not None or (last is not None and end != last):
                self.notify()
            last = end


__all__ = ["ChangeStreamWatcher", "EventSignal", "follow"]
