"""What the soak reads every interval: HTTP latencies from one keep-alive client, and the database's size.

``HttpProbe`` is a minimal HTTP/1.1 GET client (one connection, one request at
a time: latency, not throughput) that also returns the body, so the lookups by
id double as the pickup sample. ``database_sizes`` asks the database itself:

- SQLite: the file and its WAL on disk, the page and freelist counts, and per
  table and index the bytes of their pages from the ``dbstat`` virtual table
  when this SQLite was built with it;
- PostgreSQL: ``pg_database_size``, and per table ``pg_relation_size``,
  ``pg_total_relation_size``, live and dead tuples and the autovacuum count,
  and per index ``pg_relation_size`` (the claim index among them).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bench.databases import backend_of
from scanq.store.sqlite.options import sqlite_path

CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0
CLAIM_INDEX = "scans_claimable"


class HttpProbe:
    """One keep-alive connection to ``127.0.0.1:port``; ``get`` times each request in milliseconds."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> tuple[int, bytes, float]:
        """``(status, body, latency ms)``; a broken connection is reopened once, then the error propagates."""
        for is_retry in (False, True):
            if self._writer is None:
                connect = asyncio.open_connection("127.0.0.1", self._port)
                self._reader, self._writer = await asyncio.wait_for(connect, CONNECT_TIMEOUT_S)
            assert self._reader is not None and self._writer is not None
            started = time.perf_counter()
            try:
                self._writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n".encode()
                )
                status, body = await asyncio.wait_for(_read_response(self._reader), REQUEST_TIMEOUT_S)
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                self.close()
                if is_retry:
                    raise
                continue
            return status, body, (time.perf_counter() - started) * 1000.0
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return status, await reader.readexactly(length)


async def database_sizes(url: str) -> dict[str, Any]:
    """The database's size now (bytes), by table and index where the database can tell; ``{}`` for MongoDB."""
    backend = backend_of(url)
    if backend == "sqlite":
        return await asyncio.to_thread(_sqlite_sizes, sqlite_path(url))
    if backend == "postgres":
        return await _postgres_sizes(url)
    return {}


def _sqlite_sizes(path: Path) -> dict[str, Any]:
    import sqlite3

    def size(p: Path) -> int:
        try:
            return p.stat().st_size
        except FileNotFoundError:
            return 0

    sizes: dict[str, Any] = {"file_bytes": size(path), "wal_bytes": size(Path(f"{path}-wal"))}
    sizes["database_bytes"] = sizes["file_bytes"] + sizes["wal_bytes"]
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        sizes["pages_bytes"] = conn.execute("PRAGMA page_count").fetchone()[0] * page_size
        sizes["free_bytes"] = conn.execute("PRAGMA freelist_count").fetchone()[0] * page_size
        try:
            rows = conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
        except sqlite3.OperationalError:  # built without SQLITE_ENABLE_DBSTAT_VTAB
            rows = []
        sizes["objects"] = {name: int(total) for name, total in rows}
        sizes["table_bytes"] = sizes["objects"].get("scans")
        sizes["claim_index_bytes"] = sizes["objects"].get(CLAIM_INDEX)
    finally:
        conn.close()
    return sizes


async def _postgres_sizes(url: str) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        database = await conn.fetchval("SELECT pg_database_size(current_database())")
        tables = await conn.fetch(
            "SELECT relname, pg_relation_size(relid) AS heap, pg_total_relation_size(relid) AS total,"
            " n_live_tup, n_dead_tup, autovacuum_count FROM pg_stat_user_tables"
        )
        indexes = await conn.fetch(
            "SELECT relname, indexrelname, pg_relation_size(indexrelid) AS size FROM pg_stat_user_indexes"
        )
    finally:
        await conn.close()
    by_table = {
        row["relname"]: {
            "heap_bytes": row["heap"],
            "total_bytes": row["total"],
            "live_tuples": row["n_live_tup"],
            "dead_tuples": row["n_dead_tup"],
            "autovacuums": row["autovacuum_count"],
        }
        for row in tables
    }
    # With time partitions the scans table is split: add every scans* table up.
    scans = [value for name, value in by_table.items() if name == "scans" or name.startswith("scans_p")]
    return {
        "database_bytes": database,
        "tables": by_table,
        "indexes": {row["indexrelname"]: row["size"] for row in indexes},
        "table_bytes": sum(t["heap_bytes"] for t in scans),
        "table_total_bytes": sum(t["total_bytes"] for t in scans),
        "dead_tuples": sum(t["dead_tuples"] for t in scans),
        "claim_index_bytes": sum(row["size"] for row in indexes if row["indexrelname"].startswith(CLAIM_INDEX)),
    }
