"""Scenario ``concurrency``: one worker running 10,000 mock scans at once.

Scans last uniform 1-5 s (mean 3 s), never fail; enough are queued that the
worker never runs dry. After a warm-up longer than the longest scan, the
number of Complete scans is read at the start and end of a measuring window:
throughput should approach concurrency / mean duration (10,000 / 3 s ≈
3,333/s). The worker's RSS is sampled from ``/proc`` all along (peak and
during the window).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.context import BenchContext, fmt_rate
from bench.databases import fresh_database
from bench.loaders import load_scans
from bench.processes import Process, start_scanq, stop_all
from scanq.models import ScanStatus
from scanq.store import Store, open_store

RSS_SAMPLE_S = 0.25
MIB = 1024 * 1024


async def run(ctx: BenchContext) -> dict[str, Any]:
    """Run the worker at full concurrency; return RSS and throughput against the ideal."""
    concurrency: int = ctx.pick(10_000, 500)
    min_s: float = ctx.pick(1.0, 0.1)
    max_s: float = ctx.pick(5.0, 0.3)
    warmup_s: float = ctx.pick(8.0, 1.0)
    window_s: float = ctx.pick(20.0, 2.0)
    mean_s = (min_s + max_s) / 2
    ideal = concurrency / mean_s
    # Enough for the whole run plus a margin, so the queue never runs dry.
    queued = int(concurrency + ideal * (warmup_s + window_s) * 1.3)
    options = {"min_sleep": min_s, "max_sleep": max_s, "failure_rate": 0.0}
    async with fresh_database(ctx.db, label="concurrency", workdir=ctx.workdir) as url:
        async with open_store(url) as store:
            await load_scans(store, count=queued, scanner="mock", options=options)
            settings = {
                "concurrency": str(concurrency),
                "mock_min_sleep": str(min_s),
                "mock_max_sleep": str(max_s),
                "mock_failure_rate": "0",
            }
            worker = start_scanq("worker", database_url=url, log_dir=ctx.log_dir, settings=settings)
            sampler = _RssSampler(worker)
            sampling = asyncio.create_task(sampler.run())
            try:
                await asyncio.sleep(warmup_s)
                worker.check_alive()
                window_peak_before = sampler.peak
                first, first_at = await _complete(store), time.monotonic()
                sampler.window_peak = 0
                await asyncio.sleep(window_s)
                last, last_at = await _complete(store), time.monotonic()
                worker.check_alive()
            finally:
                sampling.cancel()
                await stop_all([worker])
    throughput = (last - first) / (last_at - first_at)
    ratio = throughput / ideal
    peak_mb = sampler.peak / MIB
    return {
        "concurrency": concurrency,
        "scan_seconds": [min_s, max_s],
        "queued": queued,
        "window_s": window_s,
        "throughput_per_s": round(throughput, 1),
        "ideal_per_s": round(ideal, 1),
        "throughput_ratio": round(ratio, 3),
        "rss_peak_mb": round(peak_mb, 1),
        "rss_warmup_peak_mb": round(window_peak_before / MIB, 1),
        "rss_window_peak_mb": round(sampler.window_peak / MIB, 1),
        "table": [
            [
                f"{concurrency:,} concurrent mock scans of {min_s:g}-{max_s:g} s: throughput (ideal)",
                f"{fmt_rate(throughput)} ({fmt_rate(ideal)}): {ratio:.1%}",
            ],
            ["worker peak RSS", f"{peak_mb:.0f} MB"],
        ],
    }


async def _complete(store: Store) -> int:
    stats = await store.stats()
    return stats.counts.get(ScanStatus.COMPLETE, 0)


class _RssSampler:
    """Samples a process's RSS every ``RSS_SAMPLE_S``: overall peak and peak since ``window_peak`` was reset."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.peak = 0
        self.window_peak = 0

    async def run(self) -> None:
        while True:
            rss = self.process.rss_bytes()
            self.peak = max(self.peak, rss)
            self.window_peak = max(self.window_peak, rss)
            await asyncio.sleep(RSS_SAMPLE_S)
