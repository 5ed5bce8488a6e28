"""Scenario ``status``: read latency of the status service at 10k and at 1M stored scans.

The store is filled with ``bench.loaders`` (realistic mix: 90% Complete, 4%
Error, 1% Cancelled, 2% Running, 3% Accepted), one ``scanq status`` process is
started, and the load generator (own process) runs for a fixed time on each of
the following, first with one connection (latency alone), then by id and list
again with 64 (``CONCURRENT_CLIENTS``: throughput, and the latency 64 clients
see, queueing included), and by id and list with 64 once more on a second service of
``STATUS_PROCESSES`` processes sharing the port (``scanq status --processes 2``):

- ``by_id``: ``GET /{id}`` over a sample of stored ids spread over the table;
- ``list``: ``GET /scans?limit=50`` cycled with ``?status=Complete`` and a deep
  ``?cursor=`` (the middle of the table);
- ``stats``: ``GET /stats``.

On PostgreSQL the database is vacuumed and checkpointed after loading (``bench.loaders.settle``), as
autovacuum would soon do on its own after a million updates.

Each run also records the CPU the status process (processes) used per answered
request (``cpu_us_per_request``, warm-up included in both counts): unlike latency, it
hardly moves when other processes load the machine. Each 64-client run is made
again with wrk (``wrk -t1 -c64``, the same paths in turn; ``bench.wrk``) as a
second judge: a load generator in C leaves the status process more of the two
cores than ``bench.loadgen`` does, which shows how much of the tail is the
generator's. ``BENCH_STATUS_SIZES``
(a comma list, e.g. ``100000``) replaces the sizes, for quicker iterations.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from bench.context import BenchContext, fmt_ms
from bench.databases import fresh_database
from bench.loaders import load_scans, mix_statuses, settle
from bench.processes import (
    Process,
    children_cpu_s,
    run_loadgen,
    start_scanq,
    stop_all,
    wait_children_started,
    wait_http_ready,
)
from bench.wrk import ensure_wrk, get_script, run_wrk
from scanq.cursors import encode_page_cursor
from scanq.store import open_store
from scanq.store.base import encode_cursor

LIST_LIMIT = 50
LATENCY_CONCURRENCY = 1
CONCURRENT_CLIENTS = 64
CONCURRENT_READS = ("by_id", "list")
# The second service: this many status processes on one port (on 2 cores they share them with the load generator).
STATUS_PROCESSES = 2
SIZES_ENV = "BENCH_STATUS_SIZES"


def sizes(ctx: BenchContext) -> list[int]:
    """The table sizes to measure: ``BENCH_STATUS_SIZES`` when set, else 10k and 1M (a smoke run: 2,000)."""
    given = os.environ.get(SIZES_ENV, "").strip()
    if given:
        return [int(size.replace("_", "")) for size in given.split(",") if size.strip()]
    chosen: list[int] = ctx.pick([10_000, 1_000_000], [2_000])
    return chosen


async def run(ctx: BenchContext) -> dict[str, Any]:
    """Measure by id, list and stats at each size."""
    result: dict[str, Any] = {"table": []}
    # A quick run uses wrk when it is there but installs nothing.
    wrk = await asyncio.to_thread(ensure_wrk, may_install=not ctx.is_quick)
    for size in sizes(ctx):
        measured = await _at_size(ctx, size=size, wrk=wrk)
        result[f"at_{size}"] = measured
        for name in ("by_id", "list", "stats"):
            row = measured[name]
            result["table"].append(
                [
                    f"{size:,} scans: {name} (p50, p99)",
                    f"{fmt_ms(row['p50_ms'])}, {fmt_ms(row['p99_ms'])} ({row['rate_per_s']:,.0f} req/s, 1 client)",
                ]
            )
        for suffix, label in (("", ""), (f"_x{STATUS_PROCESSES}", f", {STATUS_PROCESSES} status processes")):
            for name in CONCURRENT_READS:
                row = measured[f"{name}_{CONCURRENT_CLIENTS}{suffix}"]
                result["table"].append(
                    [
                        f"{size:,} scans: {name}, {CONCURRENT_CLIENTS} clients{label} (p50, p99)",
                        f"{fmt_ms(row['p50_ms'])}, {fmt_ms(row['p99_ms'])} ({row['rate_per_s']:,.0f} req/s, "
                        f"{row['cpu_us_per_request']:,.0f} µs CPU each)",
                    ]
                )
                judged = measured.get(f"{name}_{CONCURRENT_CLIENTS}{suffix}_wrk")
                result["table"].append(
                    [
                        f"{size:,} scans: {name}, {CONCURRENT_CLIENTS} clients{label}, wrk -t1 (p50, p99)",
                        "wrk unavailable"
                        if judged is None
                        else f"{fmt_ms(judged['p50_ms'])}, {fmt_ms(judged['p99_ms'])} "
                        f"({judged['rate_per_s']:,.0f} req/s, {judged['errors']} errors, "
                        f"{judged['cpu_us_per_request']:,.0f} µs CPU each)",
                    ]
                )
    return result


async def _at_size(ctx: BenchContext, *, size: int, wrk: str | None) -> dict[str, Any]:
    duration_s: float = ctx.pick(3.0, 0.5)
    warmup_s: float = ctx.pick(0.5, 0.2)
    async with fresh_database(ctx.db, label=f"status{size}", workdir=ctx.workdir) as url:
        async with open_store(url) as store:
            started = time.perf_counter()
            sample = await load_scans(store, count=size, sample_every=max(1, size // 2000))
            loaded_s = time.perf_counter() - started
            mixed = await mix_statuses(store, count=size)
            mixed_s = time.perf_counter() - started - loaded_s
        settled = await settle(url)
        middle = sorted(sample)[len(sample) // 2]
        paths = {
            "by_id": [f"/{scan_id}" for scan_id in sample],
            "list": [
                f"/scans?limit={LIST_LIMIT}",
                f"/scans?status=Complete&limit={LIST_LIMIT}",
                # The API's cursor: the store's, with the (empty) status filter it continues.
                f"/scans?limit={LIST_LIMIT}&cursor={encode_page_cursor(encode_cursor(middle), status=None)}",
            ],
            "stats": ["/stats"],
        }
        measured: dict[str, Any] = {
            "scans": size,
            "load_s": round(loaded_s, 2),
            "load_rate_per_s": round(size / loaded_s, 1) if loaded_s else 0.0,
            "mix_s": round(mixed_s, 2),
            "mix": mixed,
            "settled_with": settled,
        }
        status = start_scanq("status", database_url=url, log_dir=ctx.log_dir)
        try:
            await wait_http_ready(status)
            runs = [(name, group, LATENCY_CONCURRENCY) for name, group in paths.items()]
            runs += [(f"{name}_{CONCURRENT_CLIENTS}", paths[name], CONCURRENT_CLIENTS) for name in CONCURRENT_READS]
            for key, group, concurrency in runs:
                measured[key] = await _measure(
                    status,
                    group,
                    concurrency,
                    shared=False,
                    duration_s=duration_s,
                    warmup_s=warmup_s,
                    workdir=ctx.workdir,
                )
            if wrk is not None:
                for name in CONCURRENT_READS:
                    measured[f"{name}_{CONCURRENT_CLIENTS}_wrk"] = await _judge(
                        wrk, status, paths[name], shared=False, duration_s=duration_s, workdir=ctx.workdir
                    )
        finally:
            await stop_all([status])
        settings = {"status_processes": str(STATUS_PROCESSES), "log_level": "INFO"}
        shared = start_scanq("status", database_url=url, log_dir=ctx.log_dir, settings=settings)
        try:
            await wait_http_ready(shared)
            await wait_children_started(shared, service="status", count=STATUS_PROCESSES)
            for name in CONCURRENT_READS:
                key = f"{name}_{CONCURRENT_CLIENTS}_x{STATUS_PROCESSES}"
                measured[key] = await _measure(
                    shared,
                    paths[name],
                    CONCURRENT_CLIENTS,
                    shared=True,
                    duration_s=duration_s,
                    warmup_s=warmup_s,
                    workdir=ctx.workdir,
                )
                if wrk is not None:
                    measured[f"{key}_wrk"] = await _judge(
                        wrk, shared, paths[name], shared=True, duration_s=duration_s, workdir=ctx.workdir
                    )
        finally:
            await stop_all([shared])
    return measured


def _cpu_s(status: Process, *, shared: bool) -> float:
    """CPU seconds used so far by the status process, or by its children (``shared``: several processes)."""
    return sum(children_cpu_s(status.pid).values()) if shared else status.cpu_seconds()


async def _judge(
    wrk: str, status: Process, paths: list[str], *, shared: bool, duration_s: float, workdir: Path
) -> dict[str, Any]:
    """One ``wrk -t1 -c64`` run over ``paths`` in turn, with the CPU the status side used per answer."""
    assert status.port is not None
    script = get_script(paths=paths, workdir=workdir)
    cpu_before = _cpu_s(status, shared=shared)
    row = await run_wrk(
        wrk, port=status.port, path="/", script=script, connections=CONCURRENT_CLIENTS, duration_s=duration_s
    )
    used = _cpu_s(status, shared=shared) - cpu_before
    row["cpu_us_per_request"] = round(used / row["requests"] * 1e6, 1) if row["requests"] else 0.0
    return row


async def _measure(
    status: Process,
    paths: list[str],
    concurrency: int,
    *,
    shared: bool,
    duration_s: float,
    warmup_s: float,
    workdir: Path,
) -> dict[str, Any]:
    """One load generator run against ``status``, with the CPU its process (``shared``: children) used per answer."""
    assert status.port is not None

    cpu_before = _cpu_s(status, shared=shared)
    row = await run_loadgen(
        port=status.port,
        paths=paths,
        concurrency=concurrency,
        duration_s=duration_s,
        warmup_s=warmup_s,
        workdir=workdir,
    )
    # The load generator counts the measured requests only: scale to the warm-up as well.
    answered = float(str(row["rate_per_s"])) * (duration_s + warmup_s)
    used = _cpu_s(status, shared=shared) - cpu_before
    row["cpu_us_per_request"] = round(used / answered * 1e6, 1) if answered else 0.0
    return row
