"""MongoDB for tests (placeholder until the MongoDB backend lands)."""

from __future__ import annotations

import pytest

from tests.servers.availability import backend_unavailable


@pytest.fixture
def mongo_database_url() -> str:
    backend_unavailable("the MongoDB store is not built yet")
