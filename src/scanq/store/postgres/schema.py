"""The schema: numbered migrations applied under an advisory lock, and the server's durability checked at open."""

from __future__ import annotations

import logging
import zlib

from scanq.exceptions import StoreError
from scanq.store.postgres.connection import Connection
from scanq.store.postgres.statements import DURABILITY_SETTINGS, sql_dir

logger = logging.getLogger(__name__)

# Advisory lock key: a stable number derived from a name, so it does not collide with other apps by accident.
MIGRATION_LOCK_KEY = zlib.crc32(b"scanq.migrations")

MIGRATION_TABLE = """
CREATE TABLE IF NOT EXISTS scanq_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def migrations() -> list[tuple[int, str, str]]:
    """The numbered schema migrations shipped with scanq: (version, name, sql), in order."""
    found: list[tuple[int, str, str]] = []
    for entry in sql_dir().iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name.removesuffix(".sql"), entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(conn: Connection) -> int:
    """Apply missing migrations under an advisory lock; return the schema version.

    An up-to-date schema is recognised without the lock or any write (so a
    read replica opens too). Otherwise the lock is transaction-scoped:
    processes that start together queue on it, and each one after the first
    finds the migrations already recorded. A schema newer than this scanq's is
    refused (``StoreError``).
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
        # A newer scanq's rows may say things this one cannot read (migration 9: the current attempt
        # lives in columns, not in history): refuse, as the SQLite store does.
        raise StoreError(
            f"database schema version {max(applied)} is newer than this scanq ({newest_known}):"
            " run the scanq version that migrated it"
        )
    return max(applied, default=0)


async def _applied_versions(conn: Connection) -> set[int]:
    if await conn.fetchval("SELECT to_regclass('scanq_migrations')") is None:
        return set()
    return {row["version"] for row in await conn.fetch("SELECT version FROM scanq_migrations")}


async def durable_settings(conn: Connection) -> dict[str, str]:
    """Session settings that keep rule 4 (never acknowledge a scan before its commit is on disk).

    Turns ``synchronous_commit`` back on for scanq's sessions when the server has
    it off; a server without ``fsync`` cannot be fixed from a session, only
    reported.
    """
    row = await conn.fetchrow(DURABILITY_SETTINGS)
    assert row is not None
    settings: dict[str, str] = {}
    if row["sync"] == "off":
        logger.warning("synchronous_commit is off on the server; scanq sessions turn it on (durable acks)")
        settings["synchronous_commit"] = "on"
    if row["fsync"] != "on":
        logger.warning("fsync is off on the PostgreSQL server: commits are not durable across a crash")
    return settings


__all__ = ["MIGRATION_LOCK_KEY", "durable_settings", "migrate", "migrations"]
