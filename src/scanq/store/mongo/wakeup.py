"""Waking idle workers: a change stream where the server has one, else polling.

On a replica set or sharded cluster a change stream on inserts (and updates
that make a scan Accepted or move its ``available_at``) wakes idle workers; it
resumes after errors from its resume token. A standalone server has no change
streams: then ``wait`` polls for a claimable scan every ``poll_interval_s``.
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
from scanq.store.mongo.rows import Document
from scanq.store.mongo.statements import WATCH_PIPELINE, claimable_filter

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
        logger.info("wake-up: change stream on %s.%s", collection.database.name, collection.name)
        token: Mapping[str, Any] | None = None
        failures = 0
        while True:
            try:
                async with await collection.watch(WATCH_PIPELINE, resume_after=token) as stream:
                    # Work that arrived before the stream was open is claimable now: let waiters look.
                    self._work.set()
                    failures = 0
                    async for _ in stream:
                        token = stream.resume_token
                        self._work.set()
            except OperationFailure as exc:
                if exc.code in (CHANGE_STREAM_HISTORY_LOST, INVALID_RESUME_TOKEN):
                    logger.warning("change stream cannot resume (%s): starting a new one", exc)
                    token = None
                failures += 1
                await self._pause(exc, failures)
            except PyMongoError as exc:
                failures += 1
                await self._pause(exc, failures)

    async def _pause(self, exc: Exception, failures: int) -> None:
        delay = min(WATCH_RETRY_MAX_S, WATCH_RETRY_BASE_S * 2 ** min(failures - 1, 10))
        logger.warning("change stream failed (%s); resuming in %.1fs", exc, delay)
        # Events may have been missed meanwhile: let waiters look for work.
        self._work.set()
        await asyncio.sleep(delay)


__all__ = ["ChangeStreamWatcher"]
