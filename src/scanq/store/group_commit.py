"""Group commit: concurrent ``create`` calls of one process share one insert, and each caller gets its answer.

Every backend acknowledges a scan only once it is durable, and a durable commit
costs far more than the row in it. So a create joins the batch being gathered,
and a batch is written when a committer is free: the busier the process, the
larger the batches. PostgreSQL and MongoDB use ``GroupCommit`` on the event
loop; SQLite gathers its batches in its writer thread and hands the answers
back with ``settle``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from scanq.exceptions import StoreError, StoreUnavailable
from scanq.models import Created, NewScan

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_BATCH = 1000

Insert = Callable[[Sequence[NewScan]], Awaitable[Sequence[Created | Exception]]]
"""Stores a batch in one transaction, answering in input order: the scan, or the error of that one scan."""


def settle(future: asyncio.Future[T], *, result: T | None = None, exc: BaseException | None = None) -> None:
    """Answer a waiting caller; a caller that gave up (cancelled) is skipped, and its write stands."""
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)  # type: ignore[arg-type]


class GroupCommit(Generic[T]):
    """Coalesces concurrent creates into batches of at most ``max_batch``, ``in_flight`` batches at a time.

    A batch that fails as a whole for a reason other than an outage is retried
    scan by scan when ``split_on_error`` is set, so only the bad scan's caller
    sees the error. An outage (``StoreUnavailable``) fails every caller of the
    batch, each with its own exception object.

    Args:
        insert: writes one batch.
        max_batch: most scans per batch.
        in_flight: batches written at once (more than one keeps a pool busy).
        split_on_error: retry a failed batch one scan at a time.
    """

    def __init__(
        self,
        insert: Insert,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        in_flight: int = 1,
        split_on_error: bool = True,
    ) -> None:
        self._insert = insert
        self._max_batch = max_batch
        self._in_flight = in_flight
        self._split_on_error = split_on_error
        self._pending: list[tuple[NewScan, asyncio.Future[Created]]] = []
        self._committers = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, scan: NewScan) -> Created:
        """Store ``scan`` with whatever else is being submitted; return once its batch is durable."""
        future: asyncio.Future[Created] = asyncio.get_running_loop().create_future()
        self._pending.append((scan, future))
        if self._committers < self._in_flight:
            self._committers += 1
            task = asyncio.create_task(self._commit_pending(), name="scanq-group-commit")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def drain(self) -> None:
        """Wait until every submitted scan is committed or failed."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _commit_pending(self) -> None:
        try:
            # Creates that arrive while this batch commits form the next one.
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: len(batch)]
                await self._commit(batch)
        finally:
            self._committers -= 1

    async def _commit(self, batch: list[tuple[NewScan, asyncio.Future[Created]]]) -> None:
        try:
            answers = await self._insert([scan for scan, _ in batch])
        except StoreUnavailable as exc:
            for _, future in batch:
                # One exception object per caller: each raise rewrites its traceback.
                failure = StoreUnavailable(exc.message)
                failure.__cause__ = exc.__cause__
                settle(future, exc=failure)
            return
        except Exception as exc:
            if len(batch) == 1 or not self._split_on_error:
                for _, future in batch:
                    settle(future, exc=exc)
                return
            logger.debug("group insert of %d scans failed (%s); inserting one by one", len(batch), exc)
            for item in batch:
                await self._commit([item])
            return
        except BaseException:
            for _, future in batch:
                settle(future, exc=StoreError("create interrupted"))
            raise
        for (_, future), answer in zip(batch, answers, strict=True):
            if isinstance(answer, Exception):
                settle(future, exc=answer)
            else:
                settle(future, result=answer)


__all__ = ["DEFAULT_MAX_BATCH", "GroupCommit", "Insert", "settle"]
