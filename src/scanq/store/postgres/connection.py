"""Talking to the server: connections, the pool, one statement per round trip, and driver errors translated."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Generator, Iterator, Mapping
from typing import Any, TypeAlias

import asyncpg
import msgspec

from scanq.exceptions import StoreError, StoreUnavailable, ValidationError

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
ACQUIRE_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 30.0
PING_TIMEOUT_S = 2.0
JSON_TYPES = ("json", "jsonb")
DEADLOCK_RETRIES = 3

SERVER_SETTINGS: Mapping[str, str] = {
    "application_name": "scanq",
    # History timestamps are rendered into jsonb as text; keep them in UTC.
    "TimeZone": "UTC",
    # Every query here is short and index-driven; JIT compilation only adds latency.
    "jit": "off",
}

# asyncpg's classes are generic only in its stubs: spell the aliases as strings.
Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
Connection: TypeAlias = "asyncpg.Connection[Any]"
Lent: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"

UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
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

DATABASE_ERRORS: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, asyncpg.PostgresError)
"""Anything the driver raises about the database or the connection to it."""


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
    except UNAVAILABLE_ERRORS as exc:
        raise StoreUnavailable(f"PostgreSQL unavailable: {exc or type(exc).__name__}") from exc
    except asyncpg.PostgresError as exc:
        raise StoreError(f"PostgreSQL error: {exc}") from exc


def _json_encode(value: Any) -> str:
    return msgspec.json.encode(value).decode()


async def _init_connection(conn: Connection) -> None:
    """Exchange json and jsonb as Python objects (msgspec is several times faster than the json module).

    ``options`` is a json column: the server keeps the text msgspec wrote, so a
    float such as ``1.5e308`` or ``-0.0`` decodes to the value that was sent.
    """
    for type_name in JSON_TYPES:
        await conn.set_type_codec(
            type_name, encoder=_json_encode, decoder=msgspec.json.decode, schema="pg_catalog", format="text"
        )


async def _keep_session(conn: Connection) -> None:
    """Pool reset hook: nothing to undo (no SET, no LISTEN, only transaction-scoped locks on pool connections).

    asyncpg's default reset sends a query on every release; a rollback of an open
    transaction still happens before this hook.
    """
    del conn


async def connect(dsn: str, server_settings: Mapping[str, str]) -> Connection:
    """A connection of its own (migrations, ``LISTEN``), not from the pool: a pooled one is reset on release."""
    return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S, server_settings=dict(server_settings))


class FairPool(asyncpg.Pool):
    """asyncpg's pool, with the connections handed out in the order they were asked for.

    asyncpg waits for a free connection on an ``asyncio.Queue``: a released connection wakes the
    first waiter, but a request arriving before that waiter runs takes the connection, and the
    waiter goes back to the end of the line. With 64 concurrent readers on 10 connections a few
    requests waited that way for seconds while the median wait was 0.07 ms (the status bench).
    Here a FIFO semaphore of the pool's size stands in front: it never lets a newcomer pass a
    waiter, and whoever passes it finds a free connection, so the queue's own wait (and the task
    asyncpg starts for an acquire with a timeout) is skipped.
    """

    def __init__(self, *args: Any, max_size: int, **kwargs: Any) -> None:
        super().__init__(*args, max_size=max_size, **kwargs)
        self._gate = asyncio.Semaphore(max_size)
        self._lent: set[int] = set()  # id() of each connection acquired through the gate, not yet released

    def acquire(self, *, timeout: float | None = None) -> FairAcquire:  # type: ignore[override]
        """``async with pool.acquire(timeout=…) as conn``; ``timeout`` bounds the wait in line (TimeoutError)."""
        return FairAcquire(self, timeout)

    async def acquire_in_turn(self, timeout: float | None) -> Lent:
        """Wait for a turn (at most ``timeout`` seconds), then take the free connection."""
        gate = self._gate
        if gate.locked():
            async with asyncio.timeout(timeout):
                await gate.acquire()
        else:
            await gate.acquire()  # free: returns without suspending
        try:
            conn: Lent = await super().acquire()
        except BaseException:
            gate.release()
            raise
        self._lent.add(id(conn))
        return conn

    async def release(self, connection: Lent, *, timeout: float | None = None) -> None:
        """Give the connection back, then the turn (only once per acquire).

        asyncpg's release runs in a shielded task, so that a cancelled caller cannot keep the connection:
        the connection comes back a turn of the event loop later, idle but not free, and the task costs
        about a tenth of a by-id read. When there is nothing to wait for (no transaction to roll back,
        no cancellation in flight) the holder's release finishes without suspending, so it cannot be
        cancelled half way, and it is called directly.
        """
        try:
            idle = _idle_holder(connection)
            if idle is None:
                await super().release(connection, timeout=timeout)
            else:
                holder, conn = idle
                conn._on_release()
                await holder.release(timeout)
        finally:
            key = id(connection)
            if key in self._lent:
                self._lent.discard(key)
                self._gate.release()


def _idle_holder(connection: Lent) -> tuple[Any, Any] | None:
    """asyncpg's holder and connection behind ``connection`` when giving it back has nothing to wait for.

    None (asyncpg's own, shielded release) in a transaction, with a cancellation in flight, when it
    was released already, or if asyncpg's internals are not what this version relies on.
    """
    try:
        conn: Any = connection._con  # type: ignore[attr-defined]  # asyncpg 0.32: the proxied connection
        if conn is None or conn.is_in_transaction() or conn._protocol._is_cancelling():
            return None
        return connection._holder, conn
    except AttributeError:
        return None


class FairAcquire:
    """What ``FairPool.acquire`` returns: an async context manager, or awaitable (then ``pool.release`` it)."""

    __slots__ = ("_conn", "_pool", "_timeout")

    def __init__(self, pool: FairPool, timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._conn: Lent | None = None

    async def __aenter__(self) -> Lent:
        self._conn = await self._pool.acquire_in_turn(self._timeout)
        return self._conn

    async def __aexit__(self, *exc_info: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(conn)

    def __await__(self) -> Generator[Any, None, Lent]:
        return self._pool.acquire_in_turn(self._timeout).__await__()


async def create_pool(dsn: str, *, min_size: int, max_size: int, server_settings: Mapping[str, str]) -> Pool:
    """The bounded pool every domain operation borrows a connection from (``FairPool``: first come, first served)."""
    pool = FairPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        # asyncpg.create_pool's defaults.
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        timeout=CONNECT_TIMEOUT_S,
        command_timeout=COMMAND_TIMEOUT_S,
        server_settings=dict(server_settings),
        init=_init_connection,
        reset=_keep_session,
    )
    await pool
    return pool


async def close_pool(pool: Pool) -> None:
    """Close gracefully, or tear down when the server does not answer in time."""
    try:
        await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT_S)
    except DATABASE_ERRORS:
        pool.terminate()


async def ping(pool: Pool) -> None:
    """One trivial round trip, with a short timeout (health checks)."""
    with wrap_errors():
        async with pool.acquire(timeout=PING_TIMEOUT_S) as conn:
            await conn.fetchval("SELECT 1", timeout=PING_TIMEOUT_S)


async def fetch(pool: Pool, query: str, *args: Any) -> list[asyncpg.Record]:
    """Run one statement on a pooled connection; a deadlock (aborted, nothing applied) is retried."""
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


__all__ = [
    "DATABASE_ERRORS",
    "SERVER_SETTINGS",
    "UNAVAILABLE_ERRORS",
    "Connection",
    "FairAcquire",
    "FairPool",
    "Pool",
    "close_pool",
    "connect",
    "create_pool",
    "fetch",
    "ping",
    "wrap_errors",
]
