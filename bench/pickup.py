"""Scenario ``pickup``: how soon an idle worker starts a scan that was just submitted.

One ingest process and idle worker processes; scans are submitted one at a
time over HTTP (``POST /scans``, noop scanner). The latency of each is the
scan's ``started_at`` (stamped by the store's clock when a worker claims it:
the worker process for SQLite, the server for PostgreSQL; same machine) minus
the wall time the harness got the submit's response. The harness waits for
the scan to finish and then a random pause, so every submit meets workers
that are truly idle (asleep in ``wait_for_work``).

The store commits (and wakes the workers) before the HTTP response reaches the
client, so a worker can start a scan before its submitter hears back: such a
latency is negative. ``from_request`` measures from sending the request
instead (always positive; it includes the ingest round trip).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx

from bench.context import BenchContext, fmt_ms, summarize_ms
from bench.databases import fresh_database
from bench.processes import start_scanq, stop_all, wait_http_ready
from scanq.store import open_store

WORKERS = 2
READ_POLL_S = 0.002
PICKUP_TIMEOUT_S = 10.0
# Between submissions: long enough that workers went back to sleep, random so no poll phase locks in.
PAUSE_RANGE_S = (0.02, 0.06)
SETTLE_S = 1.0


async def run(ctx: BenchContext) -> dict[str, Any]:
    """Submit scans one at a time and measure submit-response → started_at."""
    count: int = ctx.pick(250, 20)
    latencies_ms: list[float] = []
    from_request_ms: list[float] = []
    async with fresh_database(ctx.db, label="pickup", workdir=ctx.workdir) as url:
        ingest = start_scanq("ingest", database_url=url, log_dir=ctx.log_dir)
        workers = [start_scanq("worker", database_url=url, log_dir=ctx.log_dir) for _ in range(WORKERS)]
        try:
            await wait_http_ready(ingest)
            await asyncio.sleep(SETTLE_S)
            for worker in workers:
                worker.check_alive()
            async with (
                open_store(url) as store,
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingest.port}") as client,
            ):
                for _ in range(count):
                    sent_at = time.time()
                    response = await client.post("/scans", json={"scanner": "noop"})
                    answered_at = time.time()
                    response.raise_for_status()
                    scan_id = response.json()["scan_id"]
                    started_at = await _wait_started(store, scan_id)
                    latencies_ms.append((started_at - answered_at) * 1000.0)
                    from_request_ms.append((started_at - sent_at) * 1000.0)
                    await asyncio.sleep(random.uniform(*PAUSE_RANGE_S))
        finally:
            await stop_all([ingest, *workers])
    summary = summarize_ms(latencies_ms)
    requested = summarize_ms(from_request_ms)
    return {
        "workers": WORKERS,
        **summary,
        "from_request": requested,
        "table": [
            [
                f"submit response → started_at, {count} scans, {WORKERS} idle workers (p50, p99, max)",
                f"{fmt_ms(summary['p50_ms'])}, {fmt_ms(summary['p99_ms'])}, {fmt_ms(summary['max_ms'])}",
            ],
            [
                "submit request sent → started_at (p50, p99, max)",
                f"{fmt_ms(requested['p50_ms'])}, {fmt_ms(requested['p99_ms'])}, {fmt_ms(requested['max_ms'])}",
            ],
        ],
    }


async def _wait_started(store: Any, scan_id: str) -> float:
    """Wait until the scan is terminal (so the next submit finds idle workers); return its ``started_at``."""
    deadline = time.monotonic() + PICKUP_TIMEOUT_S
    while True:
        scan = await store.get(scan_id=scan_id)
        if scan.status.is_terminal and scan.started_at is not None:
            started: float = scan.started_at.timestamp()
            return started
        if time.monotonic() > deadline:
            raise TimeoutError(f"scan {scan_id} not picked up within {PICKUP_TIMEOUT_S:.0f}s ({scan.status})")
        await asyncio.sleep(READ_POLL_S)
