"""Wake-up by ``LISTEN``: one dedicated connection per process, re-established by itself.

Statements that make work claimable call ``pg_notify`` (PostgreSQL folds
identical notifications of one transaction into one). A notification lost
while the connection was down only delays work until the fallback poll, and
on every (re-)connect the listener asks whether work was queued meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from scanq.store.postgres.connection import DATABASE_ERRORS, PING_TIMEOUT_S, Connection
from scanq.store.postgres.statements import HAS_CLAIMABLE, WORK_CHANNEL

logger = logging.getLogger(__name__)

# While the LISTEN connection is down, wake up this often so work is still found promptly.
UNLISTENED_POLL_S = 1.0
LISTEN_RETRY_MIN_S = 0.1
LISTEN_RETRY_MAX_S = 5.0
# A LISTEN connection can die silently (no RST); probe it this often.
LISTEN_PROBE_S = 30.0


class WorkListener:
    """``LISTEN`` on a dedicated connection that re-establishes itself; ``wait`` returns on a notification.

    Args:
        connect: opens a new connection (not from the pool: a pooled connection is reset on release).
    """

    def __init__(self, *, connect: Callable[[], Awaitable[Connection]]) -> None:
        self._connect = connect
        self._work = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.is_listening = asyncio.Event()

    def start(self) -> None:
        """Start listening in the background (again, if the task ended)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="scanq-postgres-listen")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait(self, *, timeout_s: float, poll_interval_s: float) -> None:
        """Return on a notification, or after ``timeout_s`` (at most the fallback poll interval).

        Args:
            timeout_s: the caller's longest wait.
            poll_interval_s: longest wait while listening; without a connection it is ``UNLISTENED_POLL_S``.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.start()
        if not self.is_listening.is_set():
            # First call, or reconnecting: wait briefly for LISTEN so a wake-up from now on is not
            # missed (the listener flags work queued while nobody listened).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.is_listening.wait(), min(timeout_s, UNLISTENED_POLL_S))
        # Without a LISTEN connection (database down), look often instead.
        fallback_s = poll_interval_s if self.is_listening.is_set() else UNLISTENED_POLL_S
        wait_s = min(timeout_s, fallback_s) - (loop.time() - started)
        try:
            await asyncio.wait_for(self._work.wait(), max(0.0, wait_s))
        except TimeoutError:
            return
        finally:
            self._work.clear()

    def _on_notify(self, *_: object) -> None:
        self._work.set()

    async def _run(self) -> None:
        retry_s = LISTEN_RETRY_MIN_S
        while True:
            try:
                conn = await self._connect()
            except DATABASE_ERRORS as exc:
                logger.debug("LISTEN connection failed (%s); retrying in %.1f s", exc, retry_s)
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, LISTEN_RETRY_MAX_S)
                continue
            retry_s = LISTEN_RETRY_MIN_S
            try:
                await self._listen(conn)
            except DATABASE_ERRORS as exc:
                logger.info("LISTEN connection lost (%s); reconnecting", exc)
            finally:
                self.is_listening.clear()
                conn.terminate()

    async def _listen(self, conn: Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(WORK_CHANNEL, self._on_notify)
        # Work may have been queued while nobody listened (before the first LISTEN, or during an outage).
        if await conn.fetchval(HAS_CLAIMABLE, timeout=PING_TIMEOUT_S):
            self._work.set()
        self.is_listening.set()
        while not lost.is_set():
            try:
                await asyncio.wait_for(lost.wait(), LISTEN_PROBE_S)
            except TimeoutError:
                await conn.execute("SELECT 1", timeout=PING_TIMEOUT_S)


__all__ = ["UNLISTENED_POLL_S", "WorkListener"]
