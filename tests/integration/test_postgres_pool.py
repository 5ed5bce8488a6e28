"""The store's pool (``connection.FairPool``): connections in the order asked for, given back whole.

asyncpg's own pool lets a request that arrives while a woken waiter has not yet run take the
connection, and the waiter goes to the back of the line: under steady contention a few waited
seconds (the status bench's PostgreSQL tail). These tests hold the pool's promises without timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from scanq.store.postgres.connection import SERVER_SETTINGS, FairPool, Pool, close_pool, create_pool

POOL_SIZE = 2
CLIENTS = 12
ROUNDS = 40


@pytest.fixture
async def pool(postgres_database_url: str) -> AsyncIterator[Pool]:
    # Every connection open from the start: a grant that waits for a new connection is not a wait in line.
    created = await create_pool(
        postgres_database_url, min_size=POOL_SIZE, max_size=POOL_SIZE, server_settings=SERVER_SETTINGS
    )
    assert isinstance(created, FairPool)
    try:
        yield created
    finally:
        await close_pool(created)


async def test_no_one_is_passed_in_line(pool: Pool) -> None:
    """Each acquire is granted before any acquire that started after it had to wait: at most CLIENTS grants pass."""
    grants = 0
    waited: list[int] = []

    async def client() -> None:
        nonlocal grants
        for _ in range(ROUNDS):
            asked_at = grants
            async with pool.acquire(timeout=30) as conn:
                waited.append(grants - asked_at)
                grants += 1
                await conn.fetchval("SELECT 1")

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    assert len(waited) == CLIENTS * ROUNDS
    # First come, first served: while one waits, each other client is served at most once before it.
    assert max(waited) <= CLIENTS


async def test_a_newcomer_does_not_take_a_waiters_connection(pool: Pool) -> None:
    order: list[str] = []
    held = [await pool.acquire(timeout=5) for _ in range(POOL_SIZE)]

    async def take(name: str) -> None:
        async with pool.acquire(timeout=5) as conn:
            order.append(name)
            await conn.fetchval("SELECT 1")

    waiter = asyncio.create_task(take("waiter"))
    await asyncio.sleep(0.05)  # the waiter is in line
    newcomer = asyncio.create_task(take("newcomer"))  # scheduled before the release below wakes the waiter
    await pool.release(held.pop())
    await asyncio.gather(waiter, newcomer)
    assert order == ["waiter", "newcomer"]
    for conn in held:
        await pool.release(conn)


async def test_the_wait_in_line_is_bounded_by_the_timeout(pool: Pool) -> None:
    held = [await pool.acquire(timeout=5) for _ in range(POOL_SIZE)]
    with pytest.raises(TimeoutError):
        async with pool.acquire(timeout=0.05):
            pass
    for conn in held:
        await pool.release(conn)
    # The timed-out waiter left no turn behind it: every connection can be taken again.
    again = [await pool.acquire(timeout=5) for _ in range(POOL_SIZE)]
    for conn in again:
        await pool.release(conn)


async def test_a_second_release_frees_no_extra_turn(pool: Pool) -> None:
    conn = await pool.acquire(timeout=5)
    await pool.release(conn)
    await pool.release(conn)  # asyncpg ignores it; so does the line
    held = [await pool.acquire(timeout=5) for _ in range(POOL_SIZE)]
    with pytest.raises(TimeoutError):
        await pool.acquire(timeout=0.05)
    for held_conn in held:
        await pool.release(held_conn)


async def test_a_connection_released_in_a_transaction_is_rolled_back(pool: Pool) -> None:
    conn = await pool.acquire(timeout=5)
    transaction = conn.transaction()
    await transaction.start()
    await conn.execute("CREATE TEMP TABLE scratch (x int)")
    await pool.release(conn)  # asyncpg's own release: ROLLBACK before the connection goes back
    for _ in range(POOL_SIZE):
        async with pool.acquire(timeout=5) as again:
            assert not again.is_in_transaction()
            assert await again.fetchval("SELECT to_regclass('pg_temp.scratch')") is None


async def test_a_connection_is_free_again_when_the_block_ends(pool: Pool) -> None:
    for _ in range(3 * POOL_SIZE):
        async with pool.acquire(timeout=5) as conn:
            assert await conn.fetchval("SELECT 1") == 1
    assert pool.get_idle_size() == pool.get_size()
