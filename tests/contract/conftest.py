"""Fixtures for the store contract suite: a fresh store on each backend, and more stores on the same database.

The backend is the one parametrised fixture ``database_url`` (``tests/conftest.py``, ids ``memory``,
``sqlite``, ``postgres``, ``mongo``): ``store`` and ``open_another`` build on it, so every test in this
folder runs once per backend. Helpers shared by the test files live in ``helpers.py``.

On PostgreSQL the tests take turns on one migrated schema per pytest process, put back as the
migrations left it after each test (``tests/servers/reused_schema.py``): a fresh schema per test
cost more than most of the tests themselves.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from scanq.store import Store, open_store
from tests.contract.helpers import StoreFactory


@pytest.fixture
def postgres_backend_url(postgres_reused_url: str) -> str:
    """``database_url`` on PostgreSQL: the session's reused schema (``tests/servers/reused_schema.py``)."""
    return postgres_reused_url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """An open store on an empty database of the backend under test."""
    async with open_store(database_url) as opened:
        yield opened


@pytest.fixture
async def open_another(database_url: str) -> AsyncIterator[StoreFactory]:
    """Open more stores on the same database, as other processes would; all are closed at teardown."""
    async with contextlib.AsyncExitStack() as stack:

        async def factory() -> Store:
            return await stack.enter_async_context(open_store(database_url))

        yield factory
