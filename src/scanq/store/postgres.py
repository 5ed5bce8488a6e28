"""The PostgreSQL store: many ingest, status and worker processes on many machines, one database.

Every hot operation is one set-based statement (one round trip, one implicit
transaction): a claim selects ``FOR UPDATE SKIP LOCKED`` and marks Running in
the same statement, fenced updates of many scans go through ``unnest`` arrays,
and concurrent ``create`` calls of one process are group-committed into one
multi-row insert. asyncpg prepares and caches each statement per connection.

Wake-up is ``LISTEN``/``NOTIFY``: statements that make work claimable call
``pg_notify`` (PostgreSQL folds identical notifications of one transaction into
one), and ``wait_for_work`` listens on a dedicated connection that reconnects
by itself; a lost notification only delays work until the fallback poll.

Time is the server's: ``now()`` for leases, ``available_at`` and history.
Schema and deployment notes: ``sql/postgres/*.sql`` and ``docs/postgres.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import msgspec

from scanq.exceptions import ConfigError, ScanFinished, ScanNotFound, StoreError, StoreUnavailable, ValidationError
from scanq.ids import is_scan_id
from scanq.models import (
    Attempt,
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

logger = logging.getLogger(__name__)

DEFAULT_MIN_POOL = 2
DEFAULT_MAX_POOL = 10
DEFAULT_POLL_INTERVAL_S = 5.0
CONNECT_TIMEOUT_S = 5.0
ACQUIRE_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0
PING_TIMEOUT_S = 2.0
# While the LISTEN connection is down, wake up this often so work is still found promptly.
UNLISTENED_POLL_S = 1.0
LISTEN_RETRY_MIN_S = 0.1
LISTEN_RETRY_MAX_S = 5.0
# A LISTEN connection can die silently (no RST); probe it this often.
LISTEN_PROBE_S = 30.0
# Largest group commit; more waiting creates go in the next transaction.
GROUP_COMMIT_MAX_SCANS = 1000
# Group commits in flight at once per process; PostgreSQL merges their WAL flushes.
GROUP_COMMIT_IN_FLIGHT = 2
# Fold the count deltas into scan_counts once this many have piled up.
COUNT_FOLD_THRESHOLD = 1000
DEADLOCK_RETRIES = 3

# The NOTIFY channel (the name is also in queries.sql).
WORK_CHANNEL = "scanq_work"
SQL_DIR = "sql/postgres"
QUERIES_FILE = "queries.sql"
QUERY_NAME_PREFIX = "-- name:"
# Advisory lock keys: stable numbers derived from names so they do not collide with other apps by accident.
MIGRATION_LOCK_KEY = zlib.crc32(b"scanq.migrations")
COUNT_FOLD_LOCK_KEY = zlib.crc32(b"scanq.count_fold")
# URL query parameters PostgresStore reads itself (the rest go to asyncpg / the server).
POOL_URL_PARAMS = ("min_pool", "max_pool")

SERVER_SETTINGS = {
    "application_name": "scanq",
    # History timestamps are rendered into jsonb as text; keep them in UTC.
    "TimeZone": "UTC",
    # Every query here is short and index-driven; JIT compilation only adds latency.
    "jit": "off",
}


def load_queries() -> dict[str, str]:
    """Read ``queries.sql``: each ``-- name: x`` header starts the statement named ``x``."""
    text = resources.files("scanq.store").joinpath(SQL_DIR, QUERIES_FILE).read_text(encoding="utf-8")
    queries: dict[str, str] = {}
    name: str | None = None
    for line in text.splitlines():
        if line.startswith(QUERY_NAME_PREFIX):
            name = line.removeprefix(QUERY_NAME_PREFIX).strip()
            queries[name] = ""
        elif name is not None:
            queries[name] += line + "\n"
    return {key: sql.strip().removesuffix(";") for key, sql in queries.items()}


_QUERIES = load_queries()
INSERT_SCANS = _QUERIES["insert_scans"]
SELECT_BY_KEYS = _QUERIES["select_by_keys"]
SELECT_SCAN = _QUERIES["select_scan"]
LIST_ALL = _QUERIES["list_all"]
LIST_ALL_AFTER = _QUERIES["list_all_after"]
LIST_STATUS = _QUERIES["list_status"]
LIST_STATUS_AFTER = _QUERIES["list_status_after"]
STATS = _QUERIES["stats"]
FOLD_COUNTS = _QUERIES["fold_counts"]
CLAIM = _QUERIES["claim"]
HEARTBEAT = _QUERIES["heartbeat"]
FINISH = _QUERIES["finish"]
RELEASE = _QUERIES["release"]
REQUEUE_EXPIRED = _QUERIES["requeue_expired"]
CANCEL = _QUERIES["cancel"]
DURABILITY_SETTINGS = _QUERIES["durability_settings"]
HAS_CLAIMABLE = _QUERIES["has_claimable"]


MIGRATION_TABLE = """
CREATE TABLE IF NOT EXISTS scanq_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    # A connection torn down mid-operation can leave the protocol in a state it reports this way.
    asyncpg.InternalClientError,
)

# Anything the driver raises about the database or the connection to it.
_DATABASE_ERRORS: tuple[type[BaseException], ...] = (*_UNAVAILABLE_ERRORS, asyncpg.PostgresError)


@contextlib.contextmanager
def wrap_errors() -> Iterator[None]:
    """Translate driver errors at the store boundary.

    Connection trouble becomes ``StoreUnavailable`` (HTTP 503, workers back off);
    bad data the server or driver refused becomes ``ValidationError``; anything
    else from the database is a ``StoreError``.
    """
    try:
        yield
    except asyncpg.DataError as exc:  # SQLSTATE class 22: e.g. a NUL byte in text, a number out of range
        raise ValidationError(f"the database refused a value: {exc}") from exc
    except asyncpg.InterfaceError as exc:
        if isinstance(exc, ValueError):  # the driver could not encode an argument
            raise ValidationError(f"the database refused a value: {exc}") from exc
        raise StoreUnavailable(f"PostgreSQL connection failed: {exc}") from exc
    except _UNAVAILABLE_ERRORS as exc:
        raise StoreUnavailable(f"PostgreSQL unavailable: {exc or type(exc).__name__}") from exc
    except asyncpg.PostgresError as exc:
        raise StoreError(f"PostgreSQL error: {exc}") from exc


def migrations() -> list[tuple[int, str, str]]:
    """The numbered schema migrations shipped with scanq: (version, name, sql), in order."""
    found: list[tuple[int, str, str]] = []
    for entry in resources.files("scanq.store").joinpath(SQL_DIR).iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name.removesuffix(".sql"), entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(conn: asyncpg.Connection[Any]) -> int:
    """Apply missing migrations under an advisory lock; return the schema version.

    An up-to-date schema is recognised without the lock or any write (so a
    read replica opens too). Otherwise the lock is transaction-scoped:
    processes that start together queue on it, and each one after the first
    finds the migrations already recorded.
    """
    known = migrations()
    applied = await _applied_versions(conn)
    if not {version for version, _, _ in known} <= applied:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            await conn.execute(MIGRATION_TABLE)
            applied = await _applied_versions(conn)
            for version, name, sql in known:
                if version in applied:
                    continue
                logger.info("applying PostgreSQL migration %s", name)
                await conn.execute(sql)
                await conn.execute("INSERT INTO scanq_migrations (version, name) VALUES ($1, $2)", version, name)
                applied.add(version)
    newest_known = known[-1][0] if known else 0
    if max(applied, default=0) > newest_known:
        logger.warning("the database schema (version %s) is newer than this scanq (%s)", max(applied), newest_known)
    return max(applied, default=0)


async def _applied_versions(conn: asyncpg.Connection[Any]) -> set[int]:
    if await conn.fetchval("SELECT to_regclass('scanq_migrations')") is None:
        return set()
    return {row["version"] for row in await conn.fetch("SELECT version FROM scanq_migrations")}


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """Take scanq's own query parameters (pool sizes) out of the URL; the rest is asyncpg's DSN."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in POOL_URL_PARAMS:
            ours[key] = value
        else:
            rest.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    if name not in params:
        return default
    try:
        value = int(params[name])
    except ValueError:
        raise ConfigError(f"SCANQ_DATABASE_URL: {name} must be an integer, not {params[name]!r}") from None
    if value < 0:
        raise ConfigError(f"SCANQ_DATABASE_URL: {name} must not be negative")
    return value


def _json_encode(value: Any) -> str:
    return msgspec.json.encode(value).decode()


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    """Exchange jsonb as Python objects (msgspec is several times faster than the json module)."""
    await conn.set_type_codec(
        "jsonb", encoder=_json_encode, decoder=msgspec.json.decode, schema="pg_catalog", format="text"
    )


async def _keep_session(conn: asyncpg.Connection[Any]) -> None:
    """Pool reset hook: nothing to undo (no SET, no LISTEN, only transaction-scoped locks on pool connections).

    asyncpg's default reset sends a query on every release; a rollback of an open
    transaction still happens before this hook.
    """
    del conn


def _timestamp(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _attempt(entry: dict[str, Any]) -> Attempt:
    outcome = entry.get("outcome")
    return Attempt(
        attempt=entry["attempt"],
        worker=entry["worker"],
        started_at=datetime.fromisoformat(entry["started_at"]),
        finished_at=_timestamp(entry.get("finished_at")),
        outcome=Outcome(outcome) if outcome is not None else None,
        error=entry.get("error"),
    )


def _scan(row: asyncpg.Record) -> Scan:
    return Scan(
        scan_id=str(row["scan_id"]),
        status=ScanStatus(row["status"]),
        target=row["target"],
        scanner=row["scanner"],
        options=row["options"],
        priority=row["priority"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        available_at=row["available_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        error=row["error"],
        result=row["result"],
        idempotency_key=row["idempotency_key"],
        cancel_requested=row["cancel_requested"],
        history=tuple(_attempt(entry) for entry in row["history"]),
    )


def _held_leases(leases: Sequence[Lease]) -> list[Lease]:
    """Leases worth sending, in scan_id order (one lock order for every batch, so batches cannot deadlock)."""
    unique = {lease.scan_id: lease for lease in reversed(leases) if is_scan_id(lease.scan_id)}
    return [unique[scan_id] for scan_id in sorted(unique)]


def _lease_arrays(leases: Sequence[Lease]) -> tuple[list[str], list[str], list[int]]:
    return (
        [lease.scan_id for lease in leases],
        [lease.worker_id for lease in leases],
        [lease.attempt for lease in leases],
    )


class _WorkListener:
    """``LISTEN`` on a dedicated connection that re-establishes itself; sets ``work`` on each notification.

    Args:
        connect: opens a new connection (not from the pool: a pooled connection is reset on release).
        work: the event ``wait_for_work`` sleeps on.
    """

    def __init__(self, *, connect: Callable[[], Awaitable[asyncpg.Connection[Any]]], work: asyncio.Event) -> None:
        self._connect = connect
        self._work = work
        self._task: asyncio.Task[None] | None = None
        self.is_listening = asyncio.Event()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="scanq-postgres-listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_notify(self, *_: object) -> None:
        self._work.set()

    async def _run(self) -> None:
        retry_s = LISTEN_RETRY_MIN_S
        while True:
            try:
                conn = await self._connect()
            except _DATABASE_ERRORS as exc:
                logger.debug("LISTEN connection failed (%s); retrying in %.1f s", exc, retry_s)
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, LISTEN_RETRY_MAX_S)
                continue
            retry_s = LISTEN_RETRY_MIN_S
            try:
                await self._listen(conn)
            except _DATABASE_ERRORS as exc:
                logger.info("LISTEN connection lost (%s); reconnecting", exc)
            finally:
                self.is_listening.clear()
                conn.terminate()

    async def _listen(self, conn: asyncpg.Connection[Any]) -> None:
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


class _GroupCommit:
    """Coalesces concurrent ``create`` calls of one process into multi-row inserts (one transaction each).

    A create joins the batch being gathered; a batch is sent when a committer is
    free, so the busier the process, the larger the batches. A batch that fails
    for one bad scan (not for the connection) is retried scan by scan, so only
    that scan's caller sees the error.

    Args:
        insert: stores a batch in one transaction, answering in input order.
    """

    def __init__(self, *, insert: Callable[[Sequence[NewScan]], Awaitable[list[Created]]]) -> None:
        self._insert = insert
        self._pending: list[tuple[NewScan, asyncio.Future[Created]]] = []
        self._committers = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, scan: NewScan) -> Created:
        future: asyncio.Future[Created] = asyncio.get_running_loop().create_future()
        self._pending.append((scan, future))
        if self._committers < GROUP_COMMIT_IN_FLIGHT:
            self._committers += 1
            task = asyncio.create_task(self._commit_pending())
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
                batch = self._pending[:GROUP_COMMIT_MAX_SCANS]
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
                _settle(future, exc=failure)
            return
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc=exc)
                return
            logger.debug("group insert of %d scans failed (%s); inserting one by one", len(batch), exc)
            for item in batch:
                await self._commit([item])
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            _settle(future, answer=answer)


def _settle(
    future: asyncio.Future[Created], *, answer: Created | None = None, exc: BaseException | None = None
) -> None:
    if future.done():  # the caller gave up (cancelled); the scan may still be stored
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert answer is not None
        future.set_result(answer)


class PostgresStore(Store):
    """The Store on PostgreSQL (asyncpg, a bounded pool); see the module docstring and ``docs/postgres.md``.

    Args:
        url: ``postgresql://user:password@host:port/database``; query parameters ``min_pool`` and
            ``max_pool`` override the pool sizes, any other parameter goes to asyncpg.
        min_pool: connections kept open.
        max_pool: most connections this process opens (plus one for ``LISTEN`` in workers).
        poll_interval_s: longest ``wait_for_work`` sleeps without a notification (the fallback poll).
    """

    def __init__(
        self,
        url: str,
        *,
        min_pool: int = DEFAULT_MIN_POOL,
        max_pool: int = DEFAULT_MAX_POOL,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    ) -> None:
        self.url = url
        self._dsn, params = _split_url(url)
        self._min_pool = _int_param(params, "min_pool", min_pool)
        self._max_pool = max(1, _int_param(params, "max_pool", max_pool))
        self._min_pool = min(self._min_pool, self._max_pool)
        self._poll_interval_s = poll_interval_s
        self._server_settings = dict(SERVER_SETTINGS)
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._work = asyncio.Event()
        self._listener = _WorkListener(connect=self._connect, work=self._work)
        self._group = _GroupCommit(insert=self._insert)
        self.schema_version = 0

    async def open(self) -> None:
        with wrap_errors():
            conn = await self._connect()
            try:
                await self._check_durability(conn)
                self.schema_version = await migrate(conn)
            finally:
                await conn.close()
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_pool,
                max_size=self._max_pool,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
                server_settings=self._server_settings,
                init=_init_connection,
                reset=_keep_session,
            )

    async def aclose(self) -> None:
        await self._group.drain()
        await self._listener.stop()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT_S)
            except _DATABASE_ERRORS:
                pool.terminate()

    async def ping(self) -> None:
        pool = self._require_pool()
        with wrap_errors():
            async with pool.acquire(timeout=PING_TIMEOUT_S) as conn:
                await conn.fetchval("SELECT 1", timeout=PING_TIMEOUT_S)

    async def create(self, *, scan: NewScan) -> Created:
        return await self._group.submit(scan)

    async def create_many(self, *, scans: Sequence[NewScan]) -> list[Created]:
        if not scans:
            return []
        return await self._insert(scans)

    async def get(self, *, scan_id: str) -> Scan:
        if not is_scan_id(scan_id):
            raise ScanNotFound(scan_id)
        rows = await self._fetch(SELECT_SCAN, scan_id)
        if not rows:
            raise ScanNotFound(scan_id)
        return _scan(rows[0])

    async def list_scans(self, *, status: ScanStatus | None = None, limit: int = 50, cursor: str | None = None) -> Page:
        limit = max(1, min(limit, MAX_PAGE_SIZE))
        after = decode_cursor(cursor) if cursor else None
        # One row more than asked tells whether there is a next page.
        if status is None:
            rows = await (self._fetch(LIST_ALL_AFTER, limit + 1, after) if after else self._fetch(LIST_ALL, limit + 1))
        elif after:
            rows = await self._fetch(LIST_STATUS_AFTER, limit + 1, str(status), after)
        else:
            rows = await self._fetch(LIST_STATUS, limit + 1, str(status))
        scans = [_scan(row) for row in rows[:limit]]
        has_more = len(rows) > limit
        return Page(scans=scans, next_cursor=encode_cursor(scans[-1].scan_id) if has_more else None)

    async def stats(self) -> Stats:
        row = (await self._fetch(STATS))[0]
        counts = dict.fromkeys(ScanStatus, 0)
        for status, count in row["counts"].items():
            counts[ScanStatus(status)] = int(count)
        if row["deltas"] >= COUNT_FOLD_THRESHOLD:
            # Best effort: on a read replica (status service) the fold is refused; the primary folds.
            with contextlib.suppress(StoreError):
                await self._fold_counts()
        return Stats(counts=counts, oldest_accepted_at=row["oldest_accepted_at"])

    async def claim(self, *, worker_id: str, limit: int, lease_s: float) -> list[Scan]:
        if limit <= 0:
            return []
        rows = await self._fetch(CLAIM, worker_id, limit, float(lease_s))
        scans = [_scan(row) for row in rows]
        # RETURNING has no order; hand scans out in claim order.
        scans.sort(key=lambda scan: (-scan.priority, scan.scan_id))
        return scans

    async def heartbeat(self, *, leases: Sequence[Lease], lease_s: float) -> HeartbeatResult:
        held = _held_leases(leases)
        rows = await self._fetch(HEARTBEAT, *_lease_arrays(held), float(lease_s)) if held else []
        renewed = {str(row["scan_id"]) for row in rows}
        return HeartbeatResult(
            lost=frozenset(lease.scan_id for lease in leases) - renewed,
            cancel_requested=frozenset(str(row["scan_id"]) for row in rows if row["cancel_requested"]),
        )

    async def finish(self, *, finishes: Sequence[Finish]) -> list[bool]:
        # A scan completes at most once: of two finishes for one scan, only the first counts.
        first: dict[str, Finish] = {}
        for fin in finishes:
            if is_scan_id(fin.lease.scan_id):
                first.setdefault(fin.lease.scan_id, fin)
        ordered = [first[scan_id] for scan_id in sorted(first)]
        applied: set[str] = set()
        if ordered:
            leases = [fin.lease for fin in ordered]
            rows = await self._fetch(
                FINISH,
                *_lease_arrays(leases),
                [str(fin.outcome) for fin in ordered],
                [dict(fin.result) if fin.result is not None else None for fin in ordered],
                [fin.error for fin in ordered],
                [fin.retry_at for fin in ordered],
            )
            applied = {str(row["scan_id"]) for row in rows}
        answers: list[bool] = []
        for fin in finishes:
            scan_id = fin.lease.scan_id
            answers.append(scan_id in applied and first.get(scan_id) is fin)
        return answers

    async def release(self, *, leases: Sequence[Lease]) -> int:
        held = _held_leases(leases)
        if not held:
            return 0
        rows = await self._fetch(RELEASE, *_lease_arrays(held))
        return int(rows[0]["released"])

    async def requeue_expired(self, *, limit: int = 1000) -> int:
        rows = await self._fetch(REQUEUE_EXPIRED, limit)
        # Every worker runs the reaper on a timer: a good moment to keep the count deltas short.
        with contextlib.suppress(StoreError):
            await self._fold_counts()
        return int(rows[0]["requeued"])

    async def cancel(self, *, scan_id: str) -> Scan:
        if not is_scan_id(scan_id):
            raise ScanNotFound(scan_id)
        rows = await self._fetch(CANCEL, scan_id)
        if rows:
            return _scan(rows[0])
        scan = await self.get(scan_id=scan_id)  # raises ScanNotFound
        raise ScanFinished(scan_id, scan.status)

    async def wait_for_work(self, *, timeout_s: float) -> None:
        self._require_pool()
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._listener.start()
        if not self._listener.is_listening.is_set():
            # First call, or reconnecting: wait briefly for LISTEN so a wake-up from now on is not
            # missed (the listener flags work queued while nobody listened).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listener.is_listening.wait(), min(timeout_s, UNLISTENED_POLL_S))
        # Without a LISTEN connection (database down), look often instead.
        fallback_s = self._poll_interval_s if self._listener.is_listening.is_set() else UNLISTENED_POLL_S
        wait_s = min(timeout_s, fallback_s) - (loop.time() - started)
        try:
            await asyncio.wait_for(self._work.wait(), max(0.0, wait_s))
        except TimeoutError:
            return
        finally:
            self._work.clear()

    async def _insert(self, scans: Sequence[NewScan]) -> list[Created]:
        """Insert scans in one statement (one transaction); answer in input order."""
        for scan in scans:
            if not is_scan_id(scan.scan_id):
                raise ValidationError(f"invalid scan id {scan.scan_id!r}")
        try:
            rows = await self._fetch(
                INSERT_SCANS,
                [scan.scan_id for scan in scans],
                [scan.target for scan in scans],
                [scan.scanner for scan in scans],
                [dict(scan.options) for scan in scans],
                [scan.priority for scan in scans],
                [scan.max_attempts for scan in scans],
                [scan.created_at for scan in scans],
                [scan.available_at for scan in scans],
                [scan.idempotency_key for scan in scans],
            )
        except StoreError as exc:
            if isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                raise ValidationError("duplicate scan id") from exc.__cause__
            raise
        stored = {str(row["scan_id"]): row for row in rows}
        inserted = {
            new.scan_id: accepted_scan(
                new, updated_at=stored[new.scan_id]["updated_at"], available_at=stored[new.scan_id]["available_at"]
            )
            for new in scans
            if new.scan_id in stored
        }
        by_key = {scan.idempotency_key: scan for scan in inserted.values() if scan.idempotency_key is not None}
        missing = [s.idempotency_key for s in scans if s.scan_id not in inserted and s.idempotency_key not in by_key]
        if missing:
            # Keys stored before this statement: ON CONFLICT skipped those rows, read them back.
            for row in await self._fetch(SELECT_BY_KEYS, missing):
                by_key[row["idempotency_key"]] = _scan(row)
        answers: list[Created] = []
        for new in scans:
            if new.scan_id in inserted:
                answers.append(Created(scan=inserted[new.scan_id], is_new=True))
            elif new.idempotency_key in by_key:
                answers.append(Created(scan=by_key[new.idempotency_key], is_new=False))
            else:  # the key's scan vanished between the two statements (deleted): should not happen
                raise StoreError(f"scan with idempotency key {new.idempotency_key!r} not found")
        return answers

    async def _fold_counts(self) -> None:
        await self._fetch(FOLD_COUNTS, COUNT_FOLD_LOCK_KEY)

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """Run one statement on a pooled connection; a deadlock (aborted, nothing applied) is retried."""
        pool = self._require_pool()
        for attempt in range(1, DEADLOCK_RETRIES + 1):
            try:
                with wrap_errors():
                    async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                        return await conn.fetch(query, *args)
            except StoreError as exc:
                if attempt == DEADLOCK_RETRIES or not isinstance(exc.__cause__, asyncpg.DeadlockDetectedError):
                    raise
                logger.debug("deadlock on attempt %d; retrying", attempt)
        raise AssertionError("unreachable")

    async def _connect(self) -> asyncpg.Connection[Any]:
        return await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S, server_settings=self._server_settings)

    async def _check_durability(self, conn: asyncpg.Connection[Any]) -> None:
        """Keep rule 4: never acknowledge a scan before its commit is flushed to disk."""
        row = await conn.fetchrow(DURABILITY_SETTINGS)
        assert row is not None
        if row["sync"] == "off":
            logger.warning("synchronous_commit is off on the server; scanq sessions turn it on (durable acks)")
            self._server_settings["synchronous_commit"] = "on"
        if row["fsync"] != "on":
            logger.warning("fsync is off on the PostgreSQL server: commits are not durable across a crash")

    def _require_pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        return self._pool


__all__ = ["PostgresStore", "migrate", "migrations", "wrap_errors"]
