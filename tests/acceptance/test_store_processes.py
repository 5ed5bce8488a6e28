"""Several processes on one store: they open a new database together, then claim without taking a scan twice.

Real ``python -c`` processes started by ``start_python``, so every one is killed at teardown even when a
check fails.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections import Counter

import asyncpg
import pytest

from scanq.store.postgres import PostgresStore, migrate, migrations
from tests.acceptance.conftest import StartPython

pytestmark = pytest.mark.slow

PROCESS_TIMEOUT_S = 50.0

SQLITE_CLAIM_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from datetime import UTC, datetime
    from scanq.ids import new_scan_id
    from scanq.models import NewScan
    from scanq.store import open_store

    async def main(url, name, per_process, processes):
        async with open_store(url) as store:
            for _ in range(per_process):
                await store.create(scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)))
            deadline = time.monotonic() + 30
            while sum((await store.stats()).counts.values()) < per_process * processes:
                assert time.monotonic() < deadline, "the other processes never created their scans"
                await asyncio.sleep(0.01)
            mine = []
            while batch := await store.claim(worker_id=name, limit=3, lease_s=60):
                mine += [scan.scan_id for scan in batch]
            print(json.dumps(mine))

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    """
)

POSTGRES_OPENERS = 4
POSTGRES_OPEN_SCRIPT = """
import asyncio, sys
from scanq.store.postgres import PostgresStore

async def main() -> None:
    async with PostgresStore(sys.argv[1], min_pool=1, max_pool=1) as store:
        print(store.schema_version)

asyncio.run(main())
"""


def test_processes_opening_one_new_file_each_claim_distinct_scans(sqlite_url: str, start_python: StartPython) -> None:
    processes, per_process = 4, 40
    children = [
        start_python("-c", SQLITE_CLAIM_SCRIPT, sqlite_url, f"p{i}", str(per_process), str(processes))
        for i in range(processes)
    ]
    claimed: Counter[str] = Counter()
    for child in children:
        out, err = child.communicate(timeout=PROCESS_TIMEOUT_S)
        assert child.returncode == 0, err
        claimed.update(json.loads(out))

    assert len(claimed) == processes * per_process
    assert set(claimed.values()) == {1}


async def test_concurrent_opens_from_processes_and_pools_all_succeed(
    postgres_empty_database_url: str, start_python: StartPython
) -> None:
    url = postgres_empty_database_url
    processes = [start_python("-c", POSTGRES_OPEN_SCRIPT, url) for _ in range(POSTGRES_OPENERS)]

    async def open_in_process() -> int:
        async with PostgresStore(url, min_pool=1, max_pool=1) as store:
            return store.schema_version

    versions = await asyncio.gather(*(open_in_process() for _ in range(POSTGRES_OPENERS)))
    for process in processes:
        out, err = await asyncio.to_thread(process.communicate, timeout=PROCESS_TIMEOUT_S)
        assert process.returncode == 0, err
        assert out.strip() == str(migrations()[-1][0])
    assert set(versions) == {migrations()[-1][0]}
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM scanq_migrations") == len(migrations())
        assert await migrate(conn) == migrations()[-1][0]
    finally:
        await conn.close()
