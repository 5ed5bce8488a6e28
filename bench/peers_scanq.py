"""scanq in the ``peers`` scenario: N noop scans queued, one ``scanq worker`` process, every scan read back after."""

from __future__ import annotations

import time
from typing import Any

from bench.context import BenchContext
from bench.databases import backend_of, fresh_database
from bench.loaders import load_scans
from bench.peers_measure import follow_drain, summarize
from bench.processes import start_scanq
from bench.verify import census
from scanq.models import ScanStatus
from scanq.store import Store, open_store

HISTORY = "yes: every scan kept, its history closed by a Complete entry"


async def drain_scanq(ctx: BenchContext, *, db: str, jobs: int, concurrency: int, timeout_s: float) -> dict[str, Any]:
    """Drain ``jobs`` noop scans with one worker on a fresh database of ``db``; the measured row.

    Args:
        db: ``sqlite`` or a PostgreSQL server URL (a database is created there and dropped after).
        concurrency: the worker's ``SCANQ_CONCURRENCY``.
    """
    backend = backend_of(db)
    async with fresh_database(db, label=f"peers_scanq_{backend}", workdir=ctx.workdir) as url:
        async with open_store(url) as store:
            load_started = time.perf_counter()
            await load_scans(store, count=jobs, scanner="noop")
            load_s = time.perf_counter() - load_started
            worker = start_scanq(
                "worker", database_url=url, log_dir=ctx.log_dir, settings={"concurrency": str(concurrency)}
            )
            try:
                trace = await follow_drain(
                    process=worker,
                    count_done=lambda: _complete(store),
                    total=jobs,
                    timeout_s=timeout_s,
                    database_url=url,
                )
            finally:
                await worker.stop()
            found = await census(store)
    complete = found.statuses.get(str(ScanStatus.COMPLETE), 0)
    return {
        **summarize(trace),
        "load_s": round(load_s, 2),
        "verification": {
            "scans": found.total,
            "statuses": dict(found.statuses),
            "with_bad_history": found.with_bad_history,
        },
        "is_verified": found.total == jobs and complete == jobs and found.with_bad_history == 0,
        "history": HISTORY,
    }


async def _complete(store: Store) -> int:
    return (await store.stats()).counts.get(ScanStatus.COMPLETE, 0)
