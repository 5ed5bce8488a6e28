"""The PostgreSQL URL: scanq's own pool parameters, the rest for asyncpg and the server."""

from __future__ import annotations

import pytest

from scanq.exceptions import ConfigError, StoreUnavailable
from scanq.store import open_store
from scanq.store.postgres import PostgresStore
from tests.servers.postgres import free_port


async def test_pool_sizes_come_from_the_url(postgres_database_url: str) -> None:
    async with PostgresStore(f"{postgres_database_url}&min_pool=1&max_pool=3") as store:
        pool = store._pool  # no public accessor: the sizes are an internal detail the URL controls
        assert pool is not None
        assert (pool.get_min_size(), pool.get_max_size()) == (1, 3)
        await store.ping()  # the other parameters (search_path) still reached the server


async def test_open_store_dispatches_postgres_urls(postgres_database_url: str) -> None:
    async with open_store(postgres_database_url.replace("postgresql://", "postgres://", 1)) as store:
        assert isinstance(store, PostgresStore)
        await store.ping()


@pytest.mark.parametrize("query", ["max_pool=many", "min_pool=-1"])
def test_bad_pool_parameters_are_config_errors(query: str) -> None:
    with pytest.raises(ConfigError, match="SCANQ_DATABASE_URL"):
        PostgresStore(f"postgresql://scanq@127.0.0.1/scanq?{query}")


async def test_opening_without_a_server_is_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        async with PostgresStore(f"postgresql://scanq@127.0.0.1:{free_port()}/scanq"):
            pass
