"""One migrated PostgreSQL schema that a test session's contract and integration tests take turns on.

Creating and migrating a schema per test costs about a quarter of a second of server
work (catalog writes, WAL, fsync); those suites have hundreds of PostgreSQL cases.
Instead each pytest process (each xdist worker: one session database each) migrates two
schemas once: ``pristine``, which no test touches, and the working schema the tests
get. After each test the working schema is put back as the migrations left it, rows
and sequences alike, in one transaction: every table emptied, children before parents,
the seed rows of the migrations copied back from ``pristine``, every sequence set to
``pristine``'s value. A check on the same connection then compares the two schemas'
catalogs and row counts; should anything differ or fail (a test changed the schema, a
process it left behind holds a lock), the working schema is abandoned and a fresh one
made, so the next test still starts from a migrated, empty schema.

``postgres_reused_url`` gives it. The contract and integration suites' backend-parametrised
tests take it through ``database_url`` (``postgres_backend_url`` in their ``conftest.py``):
they reach the database through scanq's own code, in process, with every store closed by the
time the test's fixtures are torn down. Tests that read plans, costs or the catalog ask for
``postgres_database_url`` and keep a fresh schema each, as do the acceptance tests, whose
processes could outlive a test.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import asyncpg
import pytest

from tests.servers.postgres import CONNECT_TIMEOUT_S, PostgresServer, run_async

logger = logging.getLogger(__name__)

# A process a failed test left behind may hold a lock: give up on the schema rather than wait.
RESET_LOCK_TIMEOUT_MS = 2_000

# Tables ordered so that a table that references another comes first (emptying it first never trips a key).
_TABLES_SQL = """
SELECT c.relname,
       coalesce(array_agg(r.relname) FILTER (WHERE r.relname IS NOT NULL AND r.oid <> c.oid), '{}') AS refs
FROM pg_class c
LEFT JOIN pg_constraint f ON f.conrelid = c.oid AND f.contype = 'f'
LEFT JOIN pg_class r ON r.oid = f.confrelid
WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p')
GROUP BY c.relname
"""
_SEQUENCES_SQL = "SELECT relname FROM pg_class WHERE relnamespace = $1::regnamespace AND relkind = 'S'"
# What a test could change besides rows: the relations, their columns and the functions of the schema.
_CATALOG_SQL = """
SELECT coalesce(string_agg(concat_ws(':', c.relname, c.relkind, a.attname, t.typname), ','
                           ORDER BY c.relname, a.attnum), '')
       || '|' || coalesce((SELECT string_agg(p.proname || ':' || md5(p.prosrc), ',' ORDER BY p.proname, p.oid)
                           FROM pg_proc p WHERE p.pronamespace = $1::regnamespace), '')
FROM pg_class c
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_type t ON t.oid = a.atttypid
WHERE c.relnamespace = $1::regnamespace
"""


def _quoted(*names: str) -> str:
    return ".".join('"' + name.replace('"', '""') + '"' for name in names)


def _children_first(references: dict[str, list[str]]) -> list[str]:
    ordered: list[str] = []
    placed: set[str] = set()

    def place(table: str, path: tuple[str, ...]) -> None:
        if table in placed or table in path:  # a reference cycle: its order is left to the fallback
            return
        for child in sorted(t for t, refs in references.items() if table in refs):
            place(child, (*path, table))
        placed.add(table)
        ordered.append(table)

    for table in sorted(references):
        place(table, ())
    return ordered


class ReusedSchema:
    """A migrated schema on ``server``, put back as migrated after each test by ``reset()``.

    Args:
        server: the session's server and database.
    """

    def __init__(self, server: PostgresServer) -> None:
        self._server = server
        self.pristine, _ = server.create_schema()
        self.name, self.url = server.create_schema()
        self._abandoned: list[str] = []
        self._reset_sql, self._check_sql = run_async(self._statements)

    async def _statements(self) -> tuple[str, str]:
        conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
        try:
            rows = await conn.fetch(_TABLES_SQL, self.pristine)
            tables = _children_first({row["relname"]: list(row["refs"]) for row in rows})
            seeded = [
                t for t in tables if await conn.fetchval(f"SELECT EXISTS (SELECT FROM {_quoted(self.pristine, t)})")
            ]
            sequences = [row["relname"] for row in await conn.fetch(_SEQUENCES_SQL, self.pristine)]
        finally:
            await conn.close()
        # Placeholders, filled in at each reset: a replacement working schema has another name.
        work, pristine = "{work}", "{pristine}"
        reset = [f"SET LOCAL lock_timeout = '{RESET_LOCK_TIMEOUT_MS}ms'"]
        reset += [f"DELETE FROM {_quoted(work, t)}" for t in tables]
        reset += [f"INSERT INTO {_quoted(work, t)} SELECT * FROM {_quoted(pristine, t)}" for t in reversed(seeded)]
        reset += [
            f"SELECT setval('{_quoted(work, s)}', last_value, is_called) FROM {_quoted(pristine, s)}" for s in sequences
        ]
        same_rows = [
            f"(SELECT count(*) FROM {_quoted(work, t)}) = (SELECT count(*) FROM {_quoted(pristine, t)})" for t in tables
        ]
        same_catalog = f"({_CATALOG_SQL.replace('$1', repr(work))}) = ({_CATALOG_SQL.replace('$1', repr(pristine))})"
        return ";\n".join(reset), "SELECT " + " AND ".join([same_catalog, *same_rows])

    def reset(self) -> None:
        """Put the working schema back as the migrations left it; replace it should that fail."""
        try:
            is_clean = run_async(self._reset)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            logger.warning("could not reset the test schema %s, making another: %s", self.name, exc)
            is_clean = False
        if not is_clean:
            self._abandoned.append(self.name)
            self.name, self.url = self._server.create_schema()

    async def _reset(self) -> bool:
        conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S)
        try:
            async with conn.transaction():
                await conn.execute(self._reset_sql.replace("{work}", self.name).replace("{pristine}", self.pristine))
            check = self._check_sql.replace("{work}", self.name).replace("{pristine}", self.pristine)
            return bool(await conn.fetchval(check))
        finally:
            await conn.close()

    def drop(self) -> None:
        """Drop every schema this made (the session database is dropped too, unless it is shared)."""
        for name in (*self._abandoned, self.name, self.pristine):
            self._server.drop_schema(name)


@pytest.fixture(scope="session")
def postgres_reused_schema(postgres_server: PostgresServer) -> Iterator[ReusedSchema]:
    """The session's (each xdist worker's) reused schema; dropped at the end."""
    schema = ReusedSchema(postgres_server)
    try:
        yield schema
    finally:
        schema.drop()


@pytest.fixture
def postgres_reused_url(postgres_reused_schema: ReusedSchema) -> Iterator[str]:
    """A store URL on an empty migrated schema, like ``postgres_database_url``, but the session's one, put
    back as migrated after the test (or replaced, should that fail)."""
    yield postgres_reused_schema.url
    postgres_reused_schema.reset()
