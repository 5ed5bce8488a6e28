"""pgqueuer in the ``peers`` scenario: N no-op jobs enqueued in bulk, one worker process, every job checked after.

Set-up follows pgqueuer's documentation: ``install`` (the default ``durable``
tables: logged, as scanq's), then the recommended autovacuum settings
(``pgq autovac``), then ``enqueue`` with lists (one statement per chunk, as
its own drain benchmark does). The worker is ``bench.peers_pgqueuer_worker``.

How pgqueuer records a finished job: the job's row is deleted from the queue
table and a ``successful`` row goes to ``pgqueuer_log``, which also holds the
job's ``queued`` (written by ``enqueue``) and ``picked`` (by the dequeue)
rows; the log is kept, and folded into ``pgqueuer_statistics`` every 30 s.
The done-count is the log's ``successful`` rows; after the drain the queue
table must be empty and the log must hold one row of each of those three
statuses for every job.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

import asyncpg
from pgqueuer.queries import Queries

from bench.context import BenchContext
from bench.databases import fresh_database
from bench.peers_measure import follow_drain, summarize
from bench.peers_pgqueuer_worker import DSN_ENV, ENTRYPOINT
from bench.processes import start_program

ENQUEUE_CHUNK = 5000
LOG_STATUSES = ("queued", "picked", "successful")
HISTORY = "log only: queued, picked and successful rows per job; the job row is deleted"


async def drain_pgqueuer(
    ctx: BenchContext, *, server: str, jobs: int, batch_size: int, managers: int, timeout_s: float
) -> dict[str, Any]:
    """Drain ``jobs`` no-op jobs with one pgqueuer worker process on a fresh database of ``server``.

    Args:
        server: a PostgreSQL URL (a database is created there and dropped after).
        batch_size: ``pgq run --batch-size``.
        managers: queue managers in the worker process (one connection each).
    """
    async with fresh_database(server, label="peers_pgqueuer", workdir=ctx.workdir) as url:
        connection = await asyncpg.connect(url)
        try:
            queries = Queries.from_asyncpg_connection(connection)
            await queries.install()
            await queries.optimize_autovacuum()
            load_started = time.perf_counter()
            done = 0
            while done < jobs:
                size = min(ENQUEUE_CHUNK, jobs - done)
                await queries.enqueue([ENTRYPOINT] * size, [b""] * size, [0] * size)
                done += size
            load_s = time.perf_counter() - load_started
            names = queries.qbe.settings.qualified
            queue, log = names.queue_table, names.queue_table_log
            argv = [sys.executable, "-m", "bench.peers_pgqueuer_worker"]
            argv += ["--batch-size", str(batch_size), "--managers", str(managers)]
            worker = start_program("pgqueuer", argv, env={DSN_ENV: url}, log_dir=ctx.log_dir)
            count_sql = f"SELECT count(*) FROM {log} WHERE status = 'successful'"
            try:
                trace = await follow_drain(
                    process=worker,
                    count_done=lambda: connection.fetchval(count_sql),
                    total=jobs,
                    timeout_s=timeout_s,
                    database_url=url,
                )
            finally:
                await worker.stop()
            left: int = await connection.fetchval(f"SELECT count(*) FROM {queue}")
            rows = await connection.fetch(f"SELECT status::text AS status, count(*) AS n FROM {log} GROUP BY 1")
            finished: int = await connection.fetchval(
                f"SELECT count(DISTINCT job_id) FROM {log} WHERE status = 'successful'"
            )
        finally:
            await connection.close()
    log_rows = Counter({row["status"]: int(row["n"]) for row in rows})
    return {
        **summarize(trace),
        "load_s": round(load_s, 2),
        "verification": {"left_in_queue": left, "log_rows": dict(log_rows), "distinct_successful": finished},
        "is_verified": left == 0 and finished == jobs and log_rows == Counter(dict.fromkeys(LOG_STATUSES, jobs)),
        "history": HISTORY,
    }
