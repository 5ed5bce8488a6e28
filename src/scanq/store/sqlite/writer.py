"""The single writer thread: every write of the store, group-committed.

One thread owns the only writing connection. Callers queue jobs; the writer
takes every job queued while it was busy and runs them in ONE ``BEGIN
IMMEDIATE`` transaction (one fsync for many creates, claims and finishes).
The answers go back to the event loop in one callback per batch, which settles
each caller's future (``group_commit.settle``). The PostgreSQL and MongoDB
stores gather their batches on the event loop instead; SQLite's driver blocks,
so here the batching lives in the thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import accumulate, repeat
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from scanq.exceptions import ScanFinished, ScanNotFound, StoreUnavailable, ValidationError
from scanq.models import Created, NewScan
from scanq.store.group_commit import settle
from scanq.store.sqlite.connection import begin_immediate, connect, wrap_errors
from scanq.store.sqlite.rows import accepted_created, make_created, scan_from_row, to_datetime
from scanq.store.sqlite.schema import migrate, set_wal
from scanq.store.sqlite.statements import (
    EVENTS_HEAD,
    INSERT_COLUMNS,
    INSERT_SCAN,
    SELECT_BY_KEY,
    SET_TENANT_CLOCK,
    TENANT_CLOCK,
    TENANT_CLOCKS,
    insert_scans,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Jobs folded into one transaction; bounds the latency one batch adds to the next.
MAX_BATCH_JOBS = 1000
# Where a scan's fair_key and updated_at go among its INSERT_COLUMNS parameters (the last two).
_FAIR_KEY, _UPDATED_AT = INSERT_COLUMNS - 2, INSERT_COLUMNS - 1

Apply = Callable[[sqlite3.Connection, float], tuple[T, bool]]
"""A write run inside the batch transaction at ``now``: returns (answer, whether it wakes ``wait_for_work``)."""

_Answer = tuple[asyncio.Future[Any], Any, BaseException | None]


@dataclass(slots=True)
class _CreateJob:
    scans: Sequence[NewScan]
    params: list[Any]  # rows.insert_params: INSERT_COLUMNS a scan, fair_key and updated_at left for the writer
    # Keyless jobs are answered with the commit's time as a datetime, made once per batch (the caller
    # builds its scans on the loop, not in the writer thread); keyed ones with their ``Created`` list.
    future: asyncio.Future[list[Created] | datetime]
    is_keyed: bool


@dataclass(slots=True)
class _WriteJob:
    apply: Apply[Any]
    future: asyncio.Future[Any]


@dataclass(slots=True)
class _Answers:
    """What one batch hands back to the loop: (future, result, exception) triples."""

    items: list[_Answer] = field(default_factory=list)
    wakes: bool = False
    events_head: int | None = None  # the event log's head after the batch, when someone waits for events


_STOP = object()


def open_writer_connection(path: Path, *, busy_timeout_s: float) -> sqlite3.Connection:
    """Create the file's directory, connect, switch to WAL and migrate the schema."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreUnavailable(f"cannot create the SQLite directory {path.parent}: {exc}") from exc
    with wrap_errors():
        conn = connect(path, busy_timeout_s=busy_timeout_s, is_reader=False)
        try:
            set_wal(conn, timeout_s=busy_timeout_s)
            migrate(conn, timeout_s=busy_timeout_s)
            # From now on the writer takes the lock itself (``begin_immediate``) and statements
            # inside a held write transaction never wait: SQLite's sleeping busy handler is off.
            conn.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            conn.close()
            raise
    return conn


class Writer:
    """The writer thread and its job queue.

    Args:
        path: the database file.
        busy_timeout_s: how long a batch waits for another process's write lock before ``StoreUnavailable``.
        on_wake: called on the event loop after a batch that made work claimable.
        on_events: called on the event loop with the event log's head after each batch while
            ``is_event_wanted()`` (read in the writer thread) says someone waits for events.
    """

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_s: float,
        on_wake: Callable[[], None],
        on_events: Callable[[int], None] | None = None,
        is_event_wanted: Callable[[], bool] | None = None,
    ) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._on_wake = on_wake
        self._on_events = on_events
        self._is_event_wanted = is_event_wanted
        self._jobs: queue.SimpleQueue[_CreateJob | _WriteJob | object] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Write transactions committed; fewer than the writes asked for is group commit at work.
        self.transactions = 0

    async def start(self) -> None:
        """Open the writing connection (creating or migrating the schema) and start the thread."""
        self._loop = asyncio.get_running_loop()
        conn = await asyncio.to_thread(open_writer_connection, self.path, busy_timeout_s=self.busy_timeout_s)
        self._thread = threading.Thread(
            target=self._write_forever, args=(conn,), name=f"scanq-sqlite-writer:{self.path}", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        """Stop after every job queued so far (pending group commits are flushed first)."""
        self._jobs.put(_STOP)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    # The two submits return the future itself (no coroutine of their own): they are on every write's path.

    def submit_write(self, apply: Apply[T]) -> asyncio.Future[T]:
        """Run ``apply`` in the next batch; the future answers once the batch is committed."""
        assert self._loop is not None
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put(_WriteJob(apply=apply, future=future))
        return future

    def submit_create(self, scans: Sequence[NewScan], params: list[Any]) -> asyncio.Future[list[Created] | datetime]:
        """Insert ``scans`` (``params``: their ``rows.insert_params``) in the next batch.

        The future answers with the commit's time (``updated_at``) when no scan has an
        idempotency key (the caller builds the scans), else with the ``Created`` of each.
        """
        assert self._loop is not None
        if len(scans) == 1:  # POST /scans: no generator on the hot path
            is_keyed = scans[0].idempotency_key is not None
        else:
            is_keyed = any(new.idempotency_key is not None for new in scans)
        future: asyncio.Future[list[Created] | datetime] = self._loop.create_future()
        self._jobs.put(_CreateJob(scans, params, future, is_keyed))
        return future

    # -- in the thread --------------------------------------------------------------------------------

    def _write_forever(self, conn: sqlite3.Connection) -> None:
        try:
            is_stopping = False
            while not is_stopping:
                batch: list[_CreateJob | _WriteJob] = []
                job = self._jobs.get()
                while True:
                    if job is _STOP:
                        is_stopping = True
                        break
                    assert isinstance(job, _CreateJob | _WriteJob)
                    batch.append(job)
                    if len(batch) >= MAX_BATCH_JOBS:
                        break
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._deliver(self._run_batch(conn, batch))
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_CreateJob | _WriteJob]) -> _Answers:
        """Run every job of ``batch`` in one transaction; a job's own domain error fails only that job."""
        answers = _Answers()
        try:
            with wrap_errors():
                begin_immediate(conn, timeout_s=self.busy_timeout_s)
                try:
                    now = time.time()
                    creates = [job for job in batch if isinstance(job, _CreateJob)]
                    if creates:
                        answers.wakes |= _apply_creates(conn, creates, now, answers)
                    for job in batch:
                        if isinstance(job, _WriteJob):
                            try:
                                result, wakes = job.apply(conn, now)
                            except (ScanFinished, ScanNotFound) as exc:
                                # Raised before anything was written: nothing to undo.
                                answers.items.append((job.future, None, exc))
                            else:
                                answers.items.append((job.future, result, None))
                                answers.wakes |= wakes
                    if self._is_event_wanted is not None and self._is_event_wanted():
                        # Read inside the batch: exactly the head this commit makes visible.
                        answers.events_head = conn.execute(EVENTS_HEAD).fetchone()[0]
                    conn.execute("COMMIT")
                    self.transactions += 1
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except Exception as exc:
            logger.warning("SQLite write batch of %d jobs failed: %s", len(batch), exc)
            return _Answers(items=[(job.future, None, exc) for job in batch])
        return answers

    def _deliver(self, answers: _Answers) -> None:
        loop = self._loop
        assert loop is not None
        try:
            loop.call_soon_threadsafe(self._settle, answers)
        except RuntimeError:
            logger.debug("event loop closed; %d SQLite answers dropped", len(answers.items))

    # -- on the loop ----------------------------------------------------------------------------------

    def _settle(self, answers: _Answers) -> None:
        for future, result, exc in answers.items:
            settle(future, result=result, exc=exc)
        if answers.wakes:
            self._on_wake()
        if answers.events_head is not None and self._on_events is not None:
            self._on_events(answers.events_head)


# -- creates --------------------------------------------------------------------------------------


class _FairClocks:
    """Rule 9 for one batch: each tenant's last fair key and weight, read once, moved here, written once.

    Read and written inside the batch's write transaction, which holds the file's write lock: no other
    process moves a clock in between, so every process on the file shares one clock per tenant.
    """

    __slots__ = ("_clocks", "_now", "_read", "_steps")

    def __init__(self, conn: sqlite3.Connection, jobs: list[_CreateJob], now: float) -> None:
        tenants = {new.tenant for job in jobs for new in job.scans}
        if len(tenants) == 1:
            read = conn.execute(TENANT_CLOCK, (*tenants,))
        else:
            read = conn.execute(TENANT_CLOCKS, {"tenants": msgspec.json.encode(sorted(tenants)).decode()})
        self._now = now
        self._clocks: dict[str, float] = {}
        self._steps: dict[str, float] = {}
        for tenant, last_key, weight in read:
            self._clocks[tenant] = -math.inf if last_key is None else last_key
            # TenantLimits.weight is positive; a row written some other way must not stop the queue.
            self._steps[tenant] = 1.0 / (weight if weight is not None and weight > 0 else 1.0)
        self._read = dict(self._clocks)

    def next_key(self, tenant: str) -> float:
        """``max(now, the tenant's last key) + 1 / weight``, which becomes its last key."""
        clock = self._clocks[tenant]
        key = (clock if clock > self._now else self._now) + self._steps[tenant]
        self._clocks[tenant] = key
        return key

    def keys(self, jobs: list[_CreateJob]) -> list[float]:
        """``next_key`` for each scan of ``jobs`` in order; a batch of one tenant sums in C (no call per scan)."""
        if len(self._steps) != 1:
            return [self.next_key(new.tenant) for job in jobs for new in job.scans]
        ((tenant, step),) = self._steps.items()
        clock = self._clocks[tenant]
        count = sum(len(job.scans) for job in jobs)
        keys = list(accumulate(repeat(step, count), initial=clock if clock > self._now else self._now))
        if count:
            self._clocks[tenant] = keys[-1]
        del keys[0]
        return keys

    def snapshot(self) -> dict[str, float]:
        return dict(self._clocks)

    def restore(self, snapshot: dict[str, float]) -> None:
        """Forget the keys taken since ``snapshot`` (their inserts were rolled back)."""
        self._clocks = snapshot

    def save(self, conn: sqlite3.Connection) -> None:
        """Write the clocks that moved: one row per tenant per batch."""
        moved = [(tenant, key) for tenant, key in self._clocks.items() if key != self._read[tenant]]
        if moved:
            conn.executemany(SET_TENANT_CLOCK, moved)


def _apply_creates(conn: sqlite3.Connection, jobs: list[_CreateJob], now: float, answers: _Answers) -> bool:
    """Insert every create job: the common keyless ones in one multi-row INSERT, the rest one by one.

    Fair keys are taken in job order, each job's scans in their order; a scan not inserted (a failed
    job, an idempotent replay) takes none.
    """
    updated_at = to_datetime(now)
    clocks = _FairClocks(conn, jobs, now)
    simple = [job for job in jobs if not job.is_keyed]
    one_by_one = [job for job in jobs if job.is_keyed]
    if simple:
        before = clocks.snapshot()
        params: list[Any] = []
        for job in simple:
            params += job.params
        # The writer's values go in by slice, in C: no Python step per scan while the loop waits for the GIL.
        count = len(params) // INSERT_COLUMNS
        params[_FAIR_KEY::INSERT_COLUMNS] = clocks.keys(simple)
        params[_UPDATED_AT::INSERT_COLUMNS] = [now] * count
        per_statement = max(1, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // INSERT_COLUMNS)
        # One statement fails atomically; several need a savepoint to undo the ones before.
        is_chunked = count > per_statement
        if is_chunked:
            conn.execute("SAVEPOINT creates")
        try:
            for start in range(0, count, per_statement):
                rows = min(per_statement, count - start)
                chunk = params[start * INSERT_COLUMNS : (start + rows) * INSERT_COLUMNS]
                conn.execute(insert_scans(rows), chunk)
        except sqlite3.IntegrityError:
            # A duplicate id somewhere: find whose, without failing the others.
            if is_chunked:
                conn.execute("ROLLBACK TO creates")
            clocks.restore(before)
            one_by_one = jobs
        else:
            answers.items.extend((job.future, updated_at, None) for job in simple)
        if is_chunked:
            conn.execute("RELEASE creates")
    for job in one_by_one:
        answers.items.append(_create_one_job(conn, job, now, updated_at, clocks))
    clocks.save(conn)
    return True


def _create_one_job(
    conn: sqlite3.Connection, job: _CreateJob, now: float, updated_at: datetime, clocks: _FairClocks
) -> _Answer:
    """Insert one job's scans in a savepoint: an existing idempotency key answers with its scan."""
    conn.execute("SAVEPOINT create_job")
    before = clocks.snapshot()
    created: list[Created] = []
    try:
        for index, new in enumerate(job.scans):
            if new.idempotency_key is not None:
                existing = conn.execute(SELECT_BY_KEY, (new.tenant, new.idempotency_key)).fetchone()
                if existing is not None:
                    created.append(make_created(scan_from_row(existing), False))
                    continue
            try:
                row = job.params[index * INSERT_COLUMNS : (index + 1) * INSERT_COLUMNS]
                row[_FAIR_KEY], row[_UPDATED_AT] = clocks.next_key(new.tenant), now
                conn.execute(INSERT_SCAN, row)
            except sqlite3.IntegrityError as exc:
                raise ValidationError(f"duplicate scan id {new.scan_id}") from exc
            created.append(accepted_created(new, updated_at))
    except ValidationError as exc:
        conn.execute("ROLLBACK TO create_job")
        clocks.restore(before)
        conn.execute("RELEASE create_job")
        return (job.future, None, exc)
    conn.execute("RELEASE create_job")
    return (job.future, created, None)


__all__ = ["MAX_BATCH_JOBS", "Apply", "Writer", "open_writer_connection"]
