"""procrastinate in the ``peers`` scenario: N no-op jobs deferred in bulk, one worker process, every job checked after.

Set-up follows procrastinate's documentation: ``apply_schema`` (the
``procrastinate schema --apply`` of its CLI), then ``batch_defer`` in chunks.
The worker is ``procrastinate worker --concurrency C`` on
``bench.peers_procrastinate_app``, logging warnings only (as the other
systems' workers here).

How procrastinate records a finished job: its row in ``procrastinate_jobs``
stays, with ``status = 'succeeded'`` (the worker's default ``delete_jobs`` is
``never``), and triggers write ``deferred``, ``started`` and ``succeeded``
rows to ``procrastinate_events``. The done-count is the succeeded rows; after
the drain every job must be succeeded with those three events.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

import asyncpg

from bench.context import BenchContext
from bench.databases import fresh_database
from bench.peers_measure import follow_drain, summarize
from bench.peers_procrastinate_app import APP_PATH, DSN_ENV, POOL_SIZE_ENV, TASK_NAME, make_app
from bench.processes import start_program

DEFER_CHUNK = 5000
# The worker's own connections besides the jobs' (the LISTEN connection, heartbeats, abort polling).
EXTRA_CONNECTIONS = 2
HISTORY = "yes: every job row kept (succeeded), with deferred, started and succeeded events"
EVENTS = ("deferred", "started", "succeeded")
DONE_COUNT_SQL = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
STATUS_COUNTS_SQL = "SELECT status::text AS k, count(*) AS n FROM procrastinate_jobs GROUP BY 1"
EVENT_COUNTS_SQL = "SELECT type::text AS k, count(*) AS n FROM procrastinate_events GROUP BY 1"


async def drain_procrastinate(
    ctx: BenchContext, *, server: str, jobs: int, concurrency: int, timeout_s: float
) -> dict[str, Any]:
    """Drain ``jobs`` no-op jobs with one procrastinate worker process on a fresh database of ``server``.

    Args:
        server: a PostgreSQL URL (a database is created there and dropped after).
        concurrency: ``procrastinate worker --concurrency``.
    """
    async with fresh_database(server, label="peers_procrastinate", workdir=ctx.workdir) as url:
        app = make_app(url)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            task = app.tasks[TASK_NAME]
            load_started = time.perf_counter()
            done = 0
            while done < jobs:
                size = min(DEFER_CHUNK, jobs - done)
                await task.batch_defer_async(*({} for _ in range(size)))
                done += size
            load_s = time.perf_counter() - load_started
        connection = await asyncpg.connect(url)
        try:
            argv = [sys.executable, "-m", "procrastinate", "--app", APP_PATH, "--log-level", "warning"]
            argv += ["worker", "--concurrency", str(concurrency)]
            env = {DSN_ENV: url, POOL_SIZE_ENV: str(concurrency + EXTRA_CONNECTIONS)}
            worker = start_program("procrastinate", argv, env=env, log_dir=ctx.log_dir)
            try:
                trace = await follow_drain(
                    process=worker,
                    count_done=lambda: connection.fetchval(DONE_COUNT_SQL),
                    total=jobs,
                    timeout_s=timeout_s,
                    database_url=url,
                )
            finally:
                await worker.stop()
            statuses = await connection.fetch(STATUS_COUNTS_SQL)
            events = await connection.fetch(EVENT_COUNTS_SQL)
        finally:
            await connection.close()
    job_rows = Counter({row["k"]: int(row["n"]) for row in statuses})
    event_rows = Counter({row["k"]: int(row["n"]) for row in events})
    return {
        **summarize(trace),
        "load_s": round(load_s, 2),
        "verification": {"jobs": dict(job_rows), "events": dict(event_rows)},
        "is_verified": job_rows == Counter(succeeded=jobs) and event_rows == Counter(dict.fromkeys(EVENTS, jobs)),
        "history": HISTORY,
    }
