"""Wake-up by ``LISTEN``: one dedicated connection per process, re-established by itself, for two channels.

Statements that make work claimable call ``pg_notify`` on the work channel, and
every statement that inserts scan events on the events channel (PostgreSQL
folds identical notifications of one transaction into one). A notification
lost while the connection was down only delays a waiter until the fallback
poll, and on every (re-)connect the listener asks whether work was queued
meanwhile, and wakes every events waiter (events may have been written).

The events channel is listened to only once this process has waited for
events: a worker that never does is not sent a notification per transition.
An events waiter is woken once per notification however many wait (one per
event stream), and polls briefly for a second after one, until what was
notified has settled (see ``SETTLING_POLL_S``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable

from scanq.store.postgres.connection import DATABASE_ERRORS, PING_TIMEOUT_S, Connection
from scanq.store.postgres.statements import EVENTS_CHANNEL, HAS_CLAIMABLE, WORK_CHANNEL

logger = logging.getLogger(__name__)

# While the LISTEN connection is down, wake up this often so work is still found promptly.
UNLISTENED_POLL_S = 1.0
LISTEN_RETRY_MIN_S = 0.1
LISTEN_RETRY_MAX_S = 5.0
# A LISTEN connection can die silently (no RST); probe it this often.
LISTEN_PROBE_S = 30.0
# An event is read only once settled: once every transaction that began writing before it has ended.
# The notification comes at its commit, when an older transaction may still be open; if that one
# writes no event (a heartbeat), no notification says when it ends. So for a while after each events
# notification, a wait for events lasts at most this long (the caller reads again), not a whole poll.
SETTLING_POLL_S = 0.05
SETTLING_WINDOW_S = 1.0


class Broadcast:
    """Wakes every waiter at once; a task that waits again returns at once if it was woken meanwhile.

    Each notification starts a new generation. A task's wait returns as soon as the generation
    differs from the one that task saw when its previous wait ended (on its first wait: when it
    began), so a notification that came while a task was busy between two waits is not lost on
    it, however many other tasks (one per event stream) wait on the same broadcast.
    """

    def __init__(self) -> None:
        self.generation = 0
        self.notified_at = float("-inf")  # the event loop's time of the last notification
        self._next = asyncio.Event()
        self._seen: weakref.WeakKeyDictionary[asyncio.Task[object], int] = weakref.WeakKeyDictionary()

    def notify(self) -> None:
        """Wake every waiter, and every task the next time it waits."""
        self.generation += 1
        self.notified_at = asyncio.get_running_loop().time()
        self._next.set()
        self._next = asyncio.Event()

    def seen(self) -> int:
        """The generation the current task last saw (the current one for a task that never waited)."""
        task = asyncio.current_task()
        return self.generation if task is None else self._seen.get(task, self.generation)

    async def wait(self, *, seen: int, timeout_s: float) -> None:
        """Return once the generation is past ``seen`` (at once if it is), or after ``timeout_s``."""
        try:
            if self.generation == seen:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._next.wait(), max(0.0, timeout_s))
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._seen[task] = self.generation


class WorkListener:
    """``LISTEN`` on a dedicated connection that re-establishes itself; ``wait`` returns on a notification.

    Args:
        connect: opens a new connection (not from the pool: a pooled connection is reset on release).
    """

    def __init__(self, *, connect: Callable[[], Awaitable[Connection]]) -> None:
        self._connect = connect
        self._work = asyncio.Event()
        self._events = Broadcast()
        self._wants_events = False
        # Set when the listening loop has something to do: the connection was lost, or events are wanted.
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.is_listening = asyncio.Event()
        self.is_listening_events = asyncio.Event()

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
        """Return on a work notification, or after ``timeout_s`` (at most the fallback poll interval).

        Args:
            timeout_s: the caller's longest wait.
            poll_interval_s: longest wait while listening; without a connection it is ``UNLISTENED_POLL_S``.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        wait_s = await self._until_listening(self.is_listening, timeout_s, poll_interval_s)
        try:
            await asyncio.wait_for(self._work.wait(), max(0.0, wait_s - (loop.time() - started)))
        except TimeoutError:
            return
        finally:
            self._work.clear()

    async def wait_for_events(self, *, timeout_s: float, poll_interval_s: float) -> None:
        """Return on an events notification (or one of this process's own writes), or after ``timeout_s``.

        Args:
            timeout_s: the caller's longest wait.
            poll_interval_s: as for ``wait``.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        seen = self._events.seen()  # before anything else: a notification from here on ends the wait
        if not self._wants_events:
            self._wants_events = True
            self._poke.set()
        wait_s = await self._until_listening(self.is_listening_events, timeout_s, poll_interval_s)
        if loop.time() < self._events.notified_at + SETTLING_WINDOW_S:
            wait_s = min(wait_s, SETTLING_POLL_S)
        await self._events.wait(seen=seen, timeout_s=wait_s - (loop.time() - started))

    def events_written(self) -> None:
        """This process wrote events: wake its events waiters without waiting for the notification."""
        if self._wants_events:
            self._events.notify()

    async def _until_listening(self, listening: asyncio.Event, timeout_s: float, poll_interval_s: float) -> float:
        """Start the listener and wait briefly for ``listening``; the longest wait from the call on."""
        self.start()
        if not listening.is_set():
            # First call, or reconnecting: wait briefly for LISTEN so a wake-up from now on is not
            # missed (the listener flags what was written while nobody listened).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listening.wait(), min(timeout_s, UNLISTENED_POLL_S))
        # Without a LISTEN connection (database down), look often instead.
        return min(timeout_s, poll_interval_s if listening.is_set() else UNLISTENED_POLL_S)

    def _on_work(self, *_: object) -> None:
        self._work.set()

    def _on_events(self, *_: object) -> None:
        self._events.notify()

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
                self.is_listening_events.clear()
                conn.terminate()

    async def _listen(self, conn: Connection) -> None:
        lost = False

        def on_lost(_conn: object) -> None:
            nonlocal lost
            lost = True
            self._poke.set()

        conn.add_termination_listener(on_lost)
        await conn.add_listener(WORK_CHANNEL, self._on_work)
        # Work may have been queued while nobody listened (before the first LISTEN, or during an outage).
        if await conn.fetchval(HAS_CLAIMABLE, timeout=PING_TIMEOUT_S):
            self._work.set()
        self.is_listening.set()
        while not lost:
            self._poke.clear()
            if self._wants_events and not self.is_listening_events.is_set():
                await conn.add_listener(EVENTS_CHANNEL, self._on_events)
                # Events may have been written while nobody listened: every waiter reads again.
                self._events.notify()
                self._events.notified_at = float("-inf")  # not a write: nothing is settling
                self.is_listening_events.set()
            try:
                await asyncio.wait_for(self._poke.wait(), LISTEN_PROBE_S)
            except TimeoutError:
                await conn.execute("SELECT 1", timeout=PING_TIMEOUT_S)


__all__ = ["SETTLING_POLL_S", "SETTLING_WINDOW_S", "UNLISTENED_POLL_S", "Broadcast", "WorkListener"]
