"""Storage backends, chosen by URL scheme."""

from __future__ import annotations

from typing import Any

from scanq.exceptions import ConfigError
from scanq.store.base import Store

SQLITE_SCHEMES = ("sqlite",)
POSTGRES_SCHEMES = ("postgresql", "postgres")
MONGO_SCHEMES = ("mongodb", "mongodb+srv")


def open_store(url: str, **options: Any) -> Store:
    """Build the backend for ``url`` (not yet connected: use ``async with open_store(url) as store``).

    Args:
        url: ``sqlite:///path/scanq.db``, ``postgresql://…`` or ``mongodb://…``; ``memory://NAME`` for tests.
        options: backend-specific keyword options (pool sizes, wake-up intervals).
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        from scanq.store.memory import MemoryStore

        return MemoryStore(url)
    if scheme in SQLITE_SCHEMES:
        from scanq.store.sqlite import SQLiteStore

        return SQLiteStore(url, **options)
    if scheme in POSTGRES_SCHEMES:
        from scanq.store.postgres import PostgresStore

        return PostgresStore(url, **options)
    if scheme in MONGO_SCHEMES:
        from scanq.store.mongo import MongoStore

        return MongoStore(url, **options)
    raise ConfigError(f"SCANQ_DATABASE_URL: unsupported scheme {scheme!r} (use sqlite://, postgresql:// or mongodb://)")


__all__ = ["Store", "open_store"]
