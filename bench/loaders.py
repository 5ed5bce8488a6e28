"""Fill a store fast, through the Store interface only (so it works on every backend).

``load_scans`` inserts with ``create_many`` in chunks (one transaction each);
``mix_statuses`` then claims and finishes the oldest scans in big batches so
a status benchmark sees a realistic table: mostly finished scans, a few
running, a tail still queued. Nothing here knows a schema: a backend whose
``create_many``/``claim``/``finish`` are slow makes the loader slow too, which
is itself worth knowing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bench.databases import backend_of
from scanq.ids import new_scan_id
from scanq.models import Finish, Lease, NewScan, Outcome
from scanq.store import Store

logger = logging.getLogger(__name__)

LOAD_CHUNK = 5000
MIX_CHUNK = 5000
LOADER_WORKER_ID = "bench-loader"
# Leases the loader holds on "Running" scans outlive any benchmark run.
LOADER_LEASE_S = 24 * 3600.0
SAMPLE_EVERY = 100
MIX_SEED = 5

# A status benchmark's table: what a queue that has been running for a while looks like.
STATUS_MIX: Mapping[str, float] = {"Complete": 0.90, "Error": 0.04, "Cancelled": 0.01, "Running": 0.02}


async def load_scans(
    store: Store,
    *,
    count: int,
    scanner: str = "noop",
    options: Mapping[str, Any] | None = None,
    chunk: int = LOAD_CHUNK,
    sample_every: int = SAMPLE_EVERY,
) -> list[str]:
    """Insert ``count`` Accepted scans; return every ``sample_every``-th id (for lookups by id).

    Args:
        store: an open store.
        count: how many scans.
        scanner: plugin name stored on each scan.
        options: plugin options stored on each scan.
        chunk: scans per ``create_many`` call (one transaction).
    """
    sample: list[str] = []
    opts = dict(options or {})
    started = time.perf_counter()
    done = 0
    while done < count:
        size = min(chunk, count - done)
        now = datetime.now(UTC)
        scans = [NewScan(scan_id=new_scan_id(), created_at=now, scanner=scanner, options=opts) for _ in range(size)]
        await store.create_many(scans=scans)
        sample.extend(scan.scan_id for scan in scans[::sample_every])
        done += size
    elapsed = time.perf_counter() - started
    logger.info("loaded %d scans in %.1fs (%.0f/s)", count, elapsed, count / elapsed if elapsed else 0.0)
    return sample


async def mix_statuses(store: Store, *, count: int, mix: Mapping[str, float] = STATUS_MIX) -> dict[str, int]:
    """Move the oldest scans out of Accepted following ``mix`` (fractions of ``count``); return what was done.

    ``Running`` scans keep a day-long lease; the rest stay Accepted.
    """
    targets = {name: int(count * fraction) for name, fraction in mix.items()}
    plan: list[str] = []
    for name in ("Complete", "Error", "Cancelled", "Running"):
        plan += [name] * targets.get(name, 0)
    # Interleave outcomes so each status is spread over the whole id range, as in a live queue.
    random.Random(MIX_SEED).shuffle(plan)
    done: dict[str, int] = dict.fromkeys(targets, 0)
    position = 0
    while position < len(plan):
        claimed = await store.claim(
            worker_id=LOADER_WORKER_ID, limit=min(MIX_CHUNK, len(plan) - position), lease_s=LOADER_LEASE_S
        )
        if not claimed:
            break
        finishes: list[Finish] = []
        for scan in claimed:
            outcome_name = plan[position]
            position += 1
            done[outcome_name] += 1
            lease = Lease(scan_id=scan.scan_id, worker_id=LOADER_WORKER_ID, attempt=scan.attempt)
            if outcome_name == "Complete":
                finishes.append(Finish(lease=lease, outcome=Outcome.COMPLETE, result={"scanner": scan.scanner}))
            elif outcome_name == "Error":
                finishes.append(Finish(lease=lease, outcome=Outcome.ERROR, error="bench: simulated failure"))
            elif outcome_name == "Cancelled":
                finishes.append(Finish(lease=lease, outcome=Outcome.CANCELLED))
        if finishes:
            await store.finish(finishes=finishes)
    return done


# How long settle waits for autovacuum workers still busy on the bench's database.
SETTLE_DEADLINE_S = 300.0
SETTLE_POLL_S = 1.0


async def settle(url: str) -> str | None:
    """Let the database catch up after a bulk load, as it would on its own shortly; say what was done.

    PostgreSQL: ``VACUUM (ANALYZE)`` every table (what autovacuum does soon after a million updates:
    until then every index walk steps over the dead versions the load left behind; the events table
    has a few million fresh rows too), a ``CHECKPOINT`` (so the checkpointer does not write the load
    out during the measurement), then wait until no autovacuum worker is busy on this database (a
    vacuum of its own that started during the load would otherwise run beside the measurement; up to
    ``SETTLE_DEADLINE_S``). SQLite and MongoDB have no such debt: nothing to do.
    """
    if backend_of(url) != "postgres":
        return None
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM (ANALYZE)")
        await conn.execute("CHECKPOINT")
        waited = 0.0
        while waited < SETTLE_DEADLINE_S and await _autovacuum_busy(conn):
            await asyncio.sleep(SETTLE_POLL_S)
            waited += SETTLE_POLL_S
    finally:
        await conn.close()
    return f"VACUUM (ANALYZE), CHECKPOINT, {waited:.0f} s waiting for autovacuum"


async def _autovacuum_busy(conn: Any) -> bool:
    busy = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE backend_type = 'autovacuum worker' AND datname = current_database()"
    )
    return bool(busy)
