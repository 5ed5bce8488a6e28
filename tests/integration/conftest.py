"""Fixtures of the integration suite.

Its backend-parametrised tests (``database_url``) run scanq in process, the API apps and the worker,
and are done with their stores when their fixtures are torn down: on PostgreSQL they take turns on
one migrated schema per pytest process, put back as migrated after each test
(``tests/servers/reused_schema.py``). Tests of PostgreSQL's own behaviour (plans, costs, the schema)
ask for ``postgres_database_url`` and keep a fresh schema each.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def postgres_backend_url(postgres_reused_url: str) -> str:
    """``database_url`` on PostgreSQL: the session's reused schema."""
    return postgres_reused_url
