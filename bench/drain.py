"""Scenario ``drain``: N no-op scans queued first, then 1 (and then 2) worker processes empty the queue.

The queue is filled through ``create_many`` (not HTTP), then the workers are
started. Two rates: ``rate_per_s`` by the store's own timestamps (first
``started_at`` to last ``finished_at``: what the workers did, without process
start-up) and ``wall_rate_per_s`` from spawning the workers until the
harness saw every scan finished. Every scan is then read back: all must be
Complete with a closing ``Complete`` history entry.

Both rates move by ±30% on a loaded machine, so the workers' CPU time is
reported too (from ``/proc``, read when the drain is seen finished):
``cpu_us_per_scan`` is the CPU the worker processes spent per scan after their
first claim (their start-up, measured at the first claim seen, is left out).
Compare versions by it, interleaved runs, rather than by a wall-clock rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from bench.context import BenchContext, fmt_rate
from bench.databases import fresh_database
from bench.loaders import load_scans
from bench.processes import Process, start_scanq, stop_all
from bench.verify import census, wait_until_finished
from scanq.models import ScanStatus
from scanq.store import Store, open_store

WORKER_CONCURRENCY = 1000
DRAIN_TIMEOUT_S = 600.0
# How often the start-up probe looks for the first claim (only until it sees one).
FIRST_CLAIM_POLL_S = 0.01


async def run(ctx: BenchContext) -> dict[str, Any]:
    """Drain with one worker, then with two; return both runs."""
    count: int = ctx.pick(20_000, 2_000)
    result: dict[str, Any] = {"scans": count, "worker_concurrency": WORKER_CONCURRENCY, "table": []}
    for workers in (1, 2):
        run_result = await _drain(ctx, count=count, workers=workers)
        result[f"workers_{workers}"] = run_result
        ok = run_result["is_verified"]
        result["table"].append(
            [
                f"{count:,} noop scans, {workers} worker process{'es' if workers > 1 else ''}",
                f"{fmt_rate(run_result['rate_per_s'])} (wall {fmt_rate(run_result['wall_rate_per_s'])}), "
                f"CPU {run_result['cpu_us_per_scan']:.1f} µs/scan, verified: {ok}",
            ]
        )
    return result


async def _drain(ctx: BenchContext, *, count: int, workers: int) -> dict[str, Any]:
    async with fresh_database(ctx.db, label=f"drain{workers}", workdir=ctx.workdir) as url:
        async with open_store(url) as store:
            load_started = time.perf_counter()
            await load_scans(store, count=count, scanner="noop")
            load_s = time.perf_counter() - load_started
            settings = {"concurrency": str(WORKER_CONCURRENCY)}
            spawned_at = time.time()
            processes = [
                start_scanq("worker", database_url=url, log_dir=ctx.log_dir, settings=settings) for _ in range(workers)
            ]
            startup_probe = asyncio.create_task(_cpu_at_first_claim(store, processes, count=count))
            try:
                seen_at = await wait_until_finished(store, count=count, timeout_s=DRAIN_TIMEOUT_S, processes=processes)
                # Before the stop: shutting down is not draining.
                worker_cpu_s = sum(process.cpu_seconds() for process in processes)
                startup_cpu_s = await startup_probe
            finally:
                startup_probe.cancel()
                await stop_all(processes)
            found = await census(store)
    complete = found.statuses.get("Complete", 0)
    is_verified = found.total == count and complete == count and found.with_bad_history == 0
    span = found.span_s
    return {
        "workers": workers,
        "load_s": round(load_s, 2),
        "load_rate_per_s": round(count / load_s, 1) if load_s else 0.0,
        "span_s": round(span, 3),
        "rate_per_s": round(count / span, 1) if span else 0.0,
        "wall_s": round(seen_at - spawned_at, 3),
        "wall_rate_per_s": round(count / (seen_at - spawned_at), 1),
        "statuses": dict(found.statuses),
        "with_bad_history": found.with_bad_history,
        "worker_cpu_s": round(worker_cpu_s, 3),
        "startup_cpu_s": round(startup_cpu_s, 3),
        "cpu_us_per_scan": round((worker_cpu_s - startup_cpu_s) / count * 1e6, 2),
        "is_verified": is_verified,
    }


async def _cpu_at_first_claim(store: Store, processes: Sequence[Process], *, count: int) -> float:
    """The workers' CPU seconds (start-up: interpreter, imports, store open) when the first claim shows in ``stats``."""
    while True:
        stats = await store.stats()
        if stats.counts.get(ScanStatus.ACCEPTED, 0) < count:
            return sum(process.cpu_seconds() for process in processes)
        await asyncio.sleep(FIRST_CLAIM_POLL_S)
