"""The embedded backend: one SQLite file in WAL mode, shared by every scanq process on a machine.

Threads, so the event loop never waits on disk:

- one **writer** thread owns the only writing connection. Callers queue jobs;
  the writer takes every job queued while it was busy and runs them in ONE
  ``BEGIN IMMEDIATE`` transaction (group commit: one fsync for many creates,
  claims and finishes). Answers go back to the loop in one callback per batch.
- a small pool of **reader** threads (``query_only`` connections) serves
  ``get``/``list_scans``/``stats``; WAL readers never wait for the writer.
- one **watcher** thread, running only while someone is in ``wait_for_work``,
  checks ``PRAGMA data_version`` every ``wake_interval_s`` (it changes when any
  other connection, in any process, commits) and wakes the waiters when
  claimable work exists. Commits of this store's own writer wake them at once.

Timestamps are REAL epoch seconds from this process's clock (history entries
keep the exact same value: ``json(repr(now))`` keeps all 17 digits, where a
bound REAL would be printed with 15). ``options``/``result``/``history`` are
JSON text. ``stats`` reads a five-row counts table kept by triggers, so it
costs the same at 1M rows as at 10.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from scanq.exceptions import ConfigError, ScanFinished, ScanNotFound, StoreError, StoreUnavailable, ValidationError
from scanq.models import (
    Created,
    Finish,
    HeartbeatResult,
    Lease,
    NewScan,
    Outcome,
    Page,
    Scan,
    ScanStatus,
    Stats,
)
from scanq.store.base import MAX_PAGE_SIZE, Store, accepted_scan, decode_cursor, encode_cursor
from scanq.store.sqlite_queries import (
    CANCEL,
    CLAIM,
    CLAIMABLE_EXISTS,
    COUNTS,
    FINISH,
    HEARTBEAT,
    INSERT_COLUMNS,
    INSERT_SCAN,
    LIST_ALL,
    LIST_BY_STATUS,
    MIGRATIONS,
    OLDEST_ACCEPTED,
    RELEASE,
    REQUEUE_EXPIRED,
    SCHEMA_VERSION,
    SELECT_BY_KEY,
    SELECT_SCAN,
    SELECT_STATUS,
    insert_row,
    insert_scans,
    leases_json,
    scan_from_row,
    to_datetime,
    to_json,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_WAKE_INTERVAL_S = 0.002
DEFAULT_BUSY_TIMEOUT_S = 10.0
DEFAULT_READERS = 2
# Jobs folded into one transaction; bounds the latency one batch adds to the next.
MAX_BATCH_JOBS = 1000
# Retrying BEGIN IMMEDIATE ourselves: SQLite's own busy handler sleeps up to 100 ms
# between tries, far longer than the ~1 ms another process holds the write lock.
LOCK_RETRY_MIN_S = 0.0002
LOCK_RETRY_MAX_S = 0.005
CACHE_SIZE_KIB = 16_384
MIN_SQLITE_VERSION = (3, 38, 0)  # RETURNING, UPDATE FROM, the ->> JSON operator
LEASE_EXPIRED_ERROR = "lease expired"
URL_PREFIX = "sqlite:///"
# Greater than every scan id: the first page of a keyset list.
_AFTER_EVERY_ID = "~"

# -- errors and conversions -----------------------------------------------------------------------

_UNAVAILABLE_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN})


@contextlib.contextmanager
def wrap_errors() -> Iterator[None]:
    """Translate sqlite3 errors: a lock timeout or an unopenable file is ``StoreUnavailable``, else ``StoreError``."""
    try:
        yield
    except sqlite3.Error as exc:
        if _is_unavailable(exc):
            raise StoreUnavailable(f"SQLite store unavailable: {exc}") from exc
        raise StoreError(f"SQLite store failed: {exc}") from exc


def _is_unavailable(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _UNAVAILABLE_CODES


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///relative.db`` or ``sqlite:////absolute/path.db`` URL (SQLAlchemy's convention)."""
    if not url.lower().startswith(URL_PREFIX):
        raise ConfigError(f"SCANQ_DATABASE_URL: {url!r} is not sqlite:///relative.db or sqlite:////absolute.db")
    raw = urllib.parse.unquote(url[len(URL_PREFIX) :].split("?", 1)[0])
    if not raw or raw.startswith(":memory:"):
        raise ConfigError(f"SCANQ_DATABASE_URL: {url!r} names no database file")
    return Path(raw)


# -- connections ----------------------------------------------------------------------------------


def _connect(path: Path, *, busy_timeout_s: float, is_reader: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA cache_size = -{CACHE_SIZE_KIB}")
    conn.execute("PRAGMA temp_store = MEMORY")
    if is_reader:
        conn.execute("PRAGMA query_only = ON")
    return conn


def _begin_immediate(conn: sqlite3.Connection, *, timeout_s: float) -> None:
    """Take the write lock, retrying with short jittered sleeps until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    delay = LOCK_RETRY_MIN_S
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not _is_unavailable(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, LOCK_RETRY_MAX_S)


def _migrate(conn: sqlite3.Connection, *, timeout_s: float) -> None:
    """Create or upgrade the schema in one transaction; concurrent openers serialise on the write lock."""
    _begin_immediate(conn, timeout_s=timeout_s)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"database schema version {version} is newer than this scanq ({SCHEMA_VERSION})")
        for number in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[number]:
                conn.execute(statement)
            logger.info("SQLite schema migrated to version %d", number + 1)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _set_wal(conn: sqlite3.Connection, *, timeout_s: float) -> None:
    """Switch the file to WAL (persistent); another process may hold a lock on a brand-new file for a moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if not _is_unavailable(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(LOCK_RETRY_MAX_S)
            continue
        if str(mode).lower() != "wal":
            raise StoreError(f"SQLite refused WAL mode (journal_mode={mode}); is the file on a network filesystem?")
        return


# -- the writer's jobs ----------------------------------------------------------------------------


@dataclass(slots=True)
class _CreateJob:
    scans: Sequence[NewScan]
    rows: list[tuple[Any, ...]]
    # Keyless jobs are answered with the commit's ``now`` (the caller builds its scans on the loop,
    # not in the writer thread); keyed ones with their ``Created`` list.
    future: asyncio.Future[list[Created] | float]
    is_keyed: bool


@dataclass(slots=True)
class _WriteJob:
    """Any other write: ``apply(conn, now)`` runs inside the batch transaction and returns (answer, wakes waiters)."""

    apply: Callable[[sqlite3.Connection, float], tuple[Any, bool]]
    future: asyncio.Future[Any]


@dataclass(slots=True)
class _Answers:
    """What one batch hands back to the loop: (future, result, exception) triples."""

    items: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = field(default_factory=list)
    wakes: bool = False


_STOP = object()


class SQLiteStore(Store):
    """The embedded store: a SQLite file in WAL mode; safe for many processes on one machine.

    Args:
        url: ``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``; the parent directory is created.
        wake_interval_s: how often an idle ``wait_for_work`` checks ``PRAGMA data_version``.
        busy_timeout_s: how long a write waits for another process's write lock before ``StoreUnavailable``.
        readers: reader threads (connections) for ``get``/``list_scans``/``stats``.
    """

    def __init__(
        self,
        url: str,
        *,
        wake_interval_s: float = DEFAULT_WAKE_INTERVAL_S,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        readers: int = DEFAULT_READERS,
    ) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.wake_interval_s = wake_interval_s
        self.busy_timeout_s = busy_timeout_s
        self._reader_count = max(1, readers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: queue.SimpleQueue[_CreateJob | _WriteJob | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_conn: sqlite3.Connection | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_local = threading.local()
        self._reader_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._watch_wanted = threading.Event()
        self._watch_stop = threading.Event()
        self._waiters: set[asyncio.Future[None]] = set()
        self._is_open = False
        self._is_closing = False
        # Write transactions this store committed; fewer than the writes asked for is group commit at work.
        self.transactions = 0

    # -- lifecycle ----------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._is_open:
            return
        if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
            raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old; scanq needs 3.38 or newer")
        self._loop = asyncio.get_running_loop()
        self._is_closing = False
        self._watch_stop.clear()
        await asyncio.to_thread(self._open_writer_conn)
        self._writer = threading.Thread(
            target=self._write_forever, name=f"scanq-sqlite-writer:{self.path}", daemon=True
        )
        self._writer.start()
        self._readers = ThreadPoolExecutor(max_workers=self._reader_count, thread_name_prefix="scanq-sqlite-reader")
        self._watcher = threading.Thread(
            target=self._watch_forever, name=f"scanq-sqlite-watch:{self.path}", daemon=True
        )
        self._watcher.start()
        self._is_open = True
        logger.debug("SQLite store open at %s", self.path)

    def _open_writer_conn(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the SQLite directory {self.path.parent}: {exc}") from exc
        with wrap_errors():
            conn = _connect(self.path, busy_timeout_s=self.busy_timeout_s, is_reader=False)
            try:
                _set_wal(conn, timeout_s=self.busy_timeout_s)
                _migrate(conn, timeout_s=self.busy_timeout_s)
                # From now on the writer takes the lock itself (``_begin_immediate``) and statements
                # inside a held write transaction never wait: SQLite's sleeping busy handler is off.
                conn.execute("PRAGMA busy_timeout = 0")
            except BaseException:
                conn.close()
                raise
        self._writer_conn = conn

    async def aclose(self) -> None:
        if not self._is_open or self._is_closing:
            return
        self._is_closing = True
        self._jobs.put(_STOP)  # after every queued job: pending group commits are flushed first
        self._watch_stop.set()
        self._watch_wanted.set()
        for thread in (self._writer, self._watcher):
            if thread is not None:
                await asyncio.to_thread(thread.join)
        if self._readers is not None:
            await asyncio.to_thread(self._readers.shutdown, True)
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        self._wake_waiters()
        self._is_open = False
        logger.debug("SQLite store closed at %s", self.path)

    def _check_open(self) -> None:
        if not self._is_open or self._is_closing:
            raise StoreError("the SQLite store is not open")

    # -- the writer thread --------------------------------------------------------------------------

    def _write_forever(self) -> None:
        conn = self._writer_conn
        assert conn is not None
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
                _begin_immediate(conn, timeout_s=self.busy_timeout_s)
                try:
                    now = time.time()
                    creates = [job for job in batch if isinstance(job, _CreateJob)]
                    if creates:
                        answers.wakes |= self._apply_creates(conn, creates, now, answers)
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

    def _apply_creates(self, conn: sqlite3.Connection, jobs: list[_CreateJob], now: float, answers: _Answers) -> bool:
        """Insert every create job: the common keyless ones in one multi-row INSERT, the rest one by one."""
        updated_at = to_datetime(now)
        simple = [job for job in jobs if not job.is_keyed]
        one_by_one = [job for job in jobs if job.is_keyed]
        if simple:
            rows = [(*row, now) for job in simple for row in job.rows]
            per_statement = max(1, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // INSERT_COLUMNS)
            # One statement fails atomically; several need a savepoint to undo the ones before.
            is_chunked = len(rows) > per_statement
            if is_chunked:
                conn.execute("SAVEPOINT creates")
            try:
                for start in range(0, len(rows), per_statement):
                    chunk = rows[start : start + per_statement]
                    conn.execute(insert_scans(len(chunk)), [value for row in chunk for value in row])
            except sqlite3.IntegrityError:
                # A duplicate id somewhere: find whose, without failing the others.
                if is_chunked:
                    conn.execute("ROLLBACK TO creates")
                one_by_one = jobs
            else:
                answers.items.extend((job.future, now, None) for job in simple)
            if is_chunked:
                conn.execute("RELEASE creates")
        for job in one_by_one:
            answers.items.append(self._create_one_job(conn, job, now, updated_at))
        return True

    def _create_one_job(
        self, conn: sqlite3.Connection, job: _CreateJob, now: float, updated_at: datetime
    ) -> tuple[asyncio.Future[Any], Any, BaseException | None]:
        conn.execute("SAVEPOINT create_job")
        created: list[Created] = []
        try:
            for new, row in zip(job.scans, job.rows, strict=True):
                if new.idempotency_key is not None:
                    existing = conn.execute(SELECT_BY_KEY, (new.idempotency_key,)).fetchone()
                    if existing is not None:
                        created.append(Created(scan=scan_from_row(existing), is_new=False))
                        continue
                try:
                    conn.execute(INSERT_SCAN, (*row, now))
                except sqlite3.IntegrityError as exc:
                    raise ValidationError(f"duplicate scan id {new.scan_id}") from exc
                created.append(Created(scan=accepted_scan(new, updated_at=updated_at), is_new=True))
        except ValidationError as exc:
            conn.execute("ROLLBACK TO create_job")
            conn.execute("RELEASE create_job")
            return (job.future, None, exc)
        conn.execute("RELEASE create_job")
        return (job.future, created, None)

    def _deliver(self, answers: _Answers) -> None:
        loop = self._loop
        assert loop is not None
        try:
            loop.call_soon_threadsafe(self._resolve, answers)
        except RuntimeError:
            logger.debug("event loop closed; %d SQLite answers dropped", len(answers.items))

    def _resolve(self, answers: _Answers) -> None:
        for future, result, exc in answers.items:
            if future.done():  # the caller gave up (cancelled); the write stands
                continue
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)
        if answers.wakes:
            self._wake_waiters()

    async def _write(self, apply: Callable[[sqlite3.Connection, float], tuple[T, bool]]) -> T:
        self._check_open()
        assert self._loop is not None
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put(_WriteJob(apply=apply, future=future))
        return await future

    # -- the reader threads -------------------------------------------------------------------------

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        self._check_open()
        assert self._loop is not None
        return await self._loop.run_in_executor(self._readers, self._run_read, query)

    def _run_read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        with wrap_errors():
            conn: sqlite3.Connection | None = getattr(self._reader_local, "conn", None)
            if conn is None:
                conn = _connect(self.path, busy_timeout_s=self.busy_timeout_s, is_reader=True)
                self._reader_local.conn = conn
                with self._reader_lock:
                    self._reader_conns.append(conn)
            return query(conn)

    # -- the watcher thread -------------------------------------------------------------------------

    def _watch_forever(self) -> None:
        conn: sqlite3.Connection | None = None
        last_version: int | None = None
        try:
            while True:
                self._watch_wanted.wait()
                if self._is_closing:
                    return
                try:
                    if conn is None:
                        conn = _connect(self.path, busy_timeout_s=self.busy_timeout_s, is_reader=True)
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                    if version != last_version:
                        last_version = version
                        if conn.execute(CLAIMABLE_EXISTS, (time.time(),)).fetchone()[0]:
                            self._deliver(_Answers(wakes=True))
                except sqlite3.Error as exc:
                    logger.debug("SQLite wake-up check failed: %s", exc)
                self._watch_stop.wait(self.wake_interval_s)
        finally:
            if conn is not None:
                conn.close()

    def _wake_waiters(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
        self._watch_wanted.clear()

    async def wait_for_work(self, *, timeout_s: float) -> None:
        if not self._is_open or self._is_closing:
            return
        assert self._loop is not None
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.add(waiter)
        self._watch_wanted.set()
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except TimeoutError:
            return
        finally:
            self._waiters.discard(waiter)
            if not self._waiters:
                self._watch_wanted.clear()

    # -- operations ---------------------------------------------------------------------------------

    async def pragmas(self) -> dict[str, Any]:
        """The settings the writing connection runs with (diagnostics: journal mode, sync level, schema version)."""

        def apply(conn: sqlite3.Connection, now: float) -> tuple[dict[str, Any], bool]:
            names = ("journal_mode", "synchronous", "user_version", "busy_timeout", "temp_store")
            return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in names}, False

        return await self._write(apply)

    async def ping(self) -> None:
        def query(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1").fetchone()

        try:
            await self._read(query)
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def create(self, *, scan: NewScan) -> Created:
        return (await self.create_many(scans=[scan]))[0]

    async def create_many(self, *, scans: Sequence[NewScan]) -> list[Created]:
        self._check_open()
        if not scans:
            return []
        assert self._loop is not None
        rows = [insert_row(new) for new in scans]
        is_keyed = any(new.idempotency_key is not None for new in scans)
        future: asyncio.Future[list[Created] | float] = self._loop.create_future()
        self._jobs.put(_CreateJob(scans=scans, rows=rows, future=future, is_keyed=is_keyed))
        answer = await future
        if isinstance(answer, float):
            updated_at = to_datetime(answer)
            return [Created(scan=accepted_scan(new, updated_at=updated_at), is_new=True) for new in scans]
        return answer

    async def get(self, *, scan_id: str) -> Scan:
        row = await self._read(lambda conn: conn.execute(SELECT_SCAN, (scan_id,)).fetchone())
        if row is None:
            raise ScanNotFound(scan_id)
        return scan_from_row(row)

    async def list_scans(self, *, status: ScanStatus | None = None, limit: int = 50, cursor: str | None = None) -> Page:
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        after = decode_cursor(cursor) if cursor else _AFTER_EVERY_ID
        sql, params = (
            (LIST_ALL, [after, limit + 1]) if status is None else (LIST_BY_STATUS, [str(status), after, limit + 1])
        )
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        scans = [scan_from_row(row) for row in rows[:limit]]
        next_cursor = encode_cursor(scans[-1].scan_id) if len(rows) > limit else None
        return Page(scans=scans, next_cursor=next_cursor)

    async def stats(self) -> Stats:
        def query(conn: sqlite3.Connection) -> tuple[list[tuple[str, int]], Any]:
            conn.execute("BEGIN")  # one snapshot for both reads
            try:
                counts = conn.execute(COUNTS).fetchall()
                oldest = conn.execute(OLDEST_ACCEPTED).fetchone()
            finally:
                conn.execute("COMMIT")
            return counts, oldest

        counts, oldest = await self._read(query)
        by_status = dict.fromkeys(ScanStatus, 0)
        for status, n in counts:
            by_status[ScanStatus(status)] = n
        return Stats(counts=by_status, oldest_accepted_at=None if oldest is None else to_datetime(oldest[0]))

    async def claim(self, *, worker_id: str, limit: int, lease_s: float) -> list[Scan]:
        if limit <= 0:
            return []

        def apply(conn: sqlite3.Connection, now: float) -> tuple[list[Scan], bool]:
            params = {"worker": worker_id, "expires": now + lease_s, "now": now, "now_json": repr(now), "limit": limit}
            rows = conn.execute(CLAIM, params).fetchall()
            return [scan_from_row(row) for row in rows], False

        scans = await self._write(apply)
        scans.sort(key=lambda scan: (-scan.priority, scan.scan_id))  # RETURNING has no order
        return scans

    async def heartbeat(self, *, leases: Sequence[Lease], lease_s: float) -> HeartbeatResult:
        if not leases:
            return HeartbeatResult()
        payload = leases_json(leases)

        def apply(conn: sqlite3.Connection, now: float) -> tuple[list[tuple[str, int]], bool]:
            params = {"leases": payload, "expires": now + lease_s, "now": now}
            return conn.execute(HEARTBEAT, params).fetchall(), False

        rows = await self._write(apply)
        held = {scan_id for scan_id, _ in rows}
        return HeartbeatResult(
            lost=frozenset(lease.scan_id for lease in leases if lease.scan_id not in held),
            cancel_requested=frozenset(scan_id for scan_id, is_cancel in rows if is_cancel),
        )

    async def finish(self, *, finishes: Sequence[Finish]) -> list[bool]:
        if not finishes:
            return []
        # One outcome per scan per call: a repeat in the same batch is a second finish, refused.
        firsts: dict[str, int] = {}
        items: list[tuple[Any, ...]] = []
        for index, fin in enumerate(finishes):
            if fin.lease.scan_id in firsts:
                continue
            firsts[fin.lease.scan_id] = index
            result = None if fin.result is None else to_json(dict(fin.result), what="result")
            retry_at = None if fin.retry_at is None else fin.retry_at.timestamp()
            lease = fin.lease
            items.append((lease.scan_id, lease.worker_id, lease.attempt, str(fin.outcome), result, fin.error, retry_at))
        payload = msgspec.json.encode(items).decode()
        is_retry = any(fin.outcome == Outcome.RETRY for fin in finishes)

        def apply(conn: sqlite3.Connection, now: float) -> tuple[set[str], bool]:
            rows = conn.execute(FINISH, {"finishes": payload, "now": now, "now_json": repr(now)}).fetchall()
            return {row[0] for row in rows}, is_retry and bool(rows)

        applied = await self._write(apply)
        return [
            firsts[fin.lease.scan_id] == index and fin.lease.scan_id in applied for index, fin in enumerate(finishes)
        ]

    async def release(self, *, leases: Sequence[Lease]) -> int:
        if not leases:
            return 0
        payload = leases_json(leases)

        def apply(conn: sqlite3.Connection, now: float) -> tuple[int, bool]:
            rows = conn.execute(RELEASE, {"leases": payload, "now": now, "now_json": repr(now)}).fetchall()
            return len(rows), any(status == ScanStatus.ACCEPTED for (status,) in rows)

        return await self._write(apply)

    async def requeue_expired(self, *, limit: int = 1000) -> int:
        def apply(conn: sqlite3.Connection, now: float) -> tuple[int, bool]:
            params = {"now": now, "now_json": repr(now), "limit": limit, "error": LEASE_EXPIRED_ERROR}
            rows = conn.execute(REQUEUE_EXPIRED, params).fetchall()
            return len(rows), any(status == ScanStatus.ACCEPTED for (status,) in rows)

        return await self._write(apply)

    async def cancel(self, *, scan_id: str) -> Scan:
        def apply(conn: sqlite3.Connection, now: float) -> tuple[Scan, bool]:
            row = conn.execute(CANCEL, {"scan_id": scan_id, "now": now}).fetchone()
            if row is None:
                found = conn.execute(SELECT_STATUS, (scan_id,)).fetchone()
                if found is None:
                    raise ScanNotFound(scan_id)
                raise ScanFinished(scan_id, found[0])
            return scan_from_row(row), False

        return await self._write(apply)


__all__ = ["SCHEMA_VERSION", "SQLiteStore", "sqlite_path", "wrap_errors"]
