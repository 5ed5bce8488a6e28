"""A fresh, empty store URL per scenario, removed afterwards.

- ``sqlite``: a new file in the run's work directory (deleted with it).
- ``postgresql://…``: ``CREATE DATABASE`` a uniquely named database on that
  server, ``DROP DATABASE … WITH (FORCE)`` after.
- ``mongodb://…``: a uniquely named database on that server, dropped after.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def backend_of(db: str) -> str:
    """``sqlite``, ``postgres`` or ``mongo`` for a ``--db`` value."""
    scheme = db.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgres"
    if scheme in ("mongodb", "mongodb+srv"):
        return "mongo"
    raise ValueError(f"--db must be sqlite, postgresql://… or mongodb://… (got {db!r})")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@asynccontextmanager
async def fresh_database(db: str, *, label: str, workdir: Path) -> AsyncIterator[str]:
    """Yield the URL of a new empty database for one scenario; drop it on exit.

    Args:
        db: the ``--db`` value.
        label: a short name for the scenario (part of the database name).
        workdir: the run's scratch directory (SQLite files go there).
    """
    name = f"scanq_bench_{label}_{secrets.token_hex(4)}"
    backend = backend_of(db)
    if backend == "sqlite":
        path = workdir / f"{name}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    if backend == "postgres":
        import asyncpg

        admin = await asyncpg.connect(db)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
            try:
                yield _with_database(db, name)
            finally:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        return
    import pymongo

    try:
        yield _with_database(db, name)
    finally:
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(db)
        try:
            await asyncio.to_thread(client.drop_database, name)
        finally:
            client.close()
