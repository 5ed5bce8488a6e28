"""One store read per key at a time, shared by every request that needs it meanwhile.

A cache with an expiry lets every request that arrives between the expiry and
the refill miss it together: without this, a burst of 200 requests carrying the
same API token makes 200 identical store reads. ``SharedReads`` starts the first
miss's read and has the others wait for that one; the owner caches the answer
in ``on_read`` (a failed read caches nothing, and each waiter gets its error).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedReads(Generic[K, V]):
    """Run at most one ``read`` per key at a time; callers asking meanwhile wait for the one running.

    Args:
        on_read: called with the key and the answer when a read succeeds (where the owner caches it).
    """

    def __init__(self, on_read: Callable[[K, V], None]) -> None:
        self._on_read = on_read
        self._running: dict[K, asyncio.Future[V]] = {}

    async def read(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        """The answer of the read of ``key`` running now, or of ``fetch()`` started for it."""
        running = self._running.get(key)
        if running is None:
            running = self._running[key] = asyncio.ensure_future(fetch())
            running.add_done_callback(partial(self._ended, key))
        # Shielded: a waiter cancelled (its client went away) does not cancel the read the others wait for.
        return await asyncio.shield(running)

    def _ended(self, key: K, read: asyncio.Future[V]) -> None:
        if self._running.get(key) is read:
            del self._running[key]
        if not read.cancelled() and read.exception() is None:
            self._on_read(key, read.result())


__all__ = ["SharedReads"]
