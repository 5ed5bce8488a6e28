"""PostgreSQL for tests (placeholder until the PostgreSQL backend lands)."""

from __future__ import annotations

import pytest

from tests.servers.availability import backend_unavailable


@pytest.fixture
def postgres_database_url() -> str:
    backend_unavailable("the PostgreSQL store is not built yet")
