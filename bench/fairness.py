"""Scenario ``fairness``: a small tenant behind a big one's backlog, and what fair share and the per-target cap cost.

Pickup: tenant A holds ``BACKLOG`` Accepted no-op scans and one worker drains
them at full speed; once it is busy, tenant B submits ``LATE`` scans. Each of
B's scans waits from its ``created_at`` to its ``started_at`` (both by the
store's clock): without fair share it would wait for A's whole backlog, with
it B's scans take the next claims. The target: B's p99 at most 1 s.

Cost: one worker drains ``DRAIN`` no-op scans three ways, alternating, in
the same run (four rounds): one tenant without target hosts (the baseline), ten tenants
(fair keys interleave them), and one tenant whose scans name 1,000 target hosts
under the worker's default cap of 2 Running per host. The figures that count
are the ratios to the baseline (targets: at least 0.90 and 0.85).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from bench.context import BenchContext, fmt_rate
from bench.databases import fresh_database
from bench.processes import Process, start_scanq, stop_all
from bench.verify import census, wait_until_finished
from scanq.ids import new_scan_id
from scanq.models import NewScan, Scan, ScanStatus
from scanq.store import Store, open_store

WORKER_CONCURRENCY = 1000
CHUNK = 5000
DRAIN_TIMEOUT_S = 600.0
POLL_S = 0.05
TARGET_HOSTS = 1000
TENANTS = 10
MAX_PICKUP_P99_S = 1.0
MIN_TENANTS_RATIO = 0.90
MIN_CAP_RATIO = 0.85


async def run(ctx: BenchContext) -> dict[str, Any]:
    backlog: int = ctx.pick(50_000, 3_000)
    late: int = ctx.pick(100, 20)
    drain: int = ctx.pick(20_000, 2_000)
    rounds: int = ctx.pick(4, 1)
    pickup = await _pickup(ctx, backlog=backlog, late=late)
    rates: dict[str, list[float]] = {"one tenant": [], f"{TENANTS} tenants": [], f"{TARGET_HOSTS} hosts, cap 2": []}
    for _ in range(rounds):
        for shape in rates:
            rates[shape].append(await _drain(ctx, count=drain, shape=shape))
    medians = {shape: statistics.median(values) for shape, values in rates.items()}
    base = medians["one tenant"]
    tenants_ratio = medians[f"{TENANTS} tenants"] / base if base else 0.0
    cap_ratio = medians[f"{TARGET_HOSTS} hosts, cap 2"] / base if base else 0.0
    return {
        "backlog": backlog,
        "late": late,
        "pickup": pickup,
        "drain_scans": drain,
        "drain_rates": rates,
        "tenants_vs_one": round(tenants_ratio, 3),
        "cap_vs_none": round(cap_ratio, 3),
        "table": [
            [
                f"B's {late} scans behind A's {backlog:,}: pickup p50 / p99 / max",
                f"{pickup['p50_s']:.3f} s / {pickup['p99_s']:.3f} s / {pickup['max_s']:.3f} s "
                f"(p99 at most {MAX_PICKUP_P99_S:g} s wanted)",
            ],
            *[
                [f"drain {drain:,} noop scans, {shape} (median scans/s)", f"{fmt_rate(medians[shape])} of {values}"]
                for shape, values in rates.items()
            ],
            [f"{TENANTS} tenants / one tenant", f"{tenants_ratio:.1%} (at least {MIN_TENANTS_RATIO:.0%} wanted)"],
            [f"cap on {TARGET_HOSTS} hosts / no hosts", f"{cap_ratio:.1%} (at least {MIN_CAP_RATIO:.0%} wanted)"],
        ],
    }


def _scans(count: int, *, tenant: str = "default", hosts: int = 0, offset: int = 0) -> list[NewScan]:
    now = datetime.now(UTC)
    return [
        NewScan(
            scan_id=new_scan_id(),
            created_at=now,
            scanner="noop",
            tenant=tenant,
            target_key=f"host{(offset + i) % hosts}.example" if hosts else None,
        )
        for i in range(count)
    ]


async def _pickup(ctx: BenchContext, *, backlog: int, late: int) -> dict[str, Any]:
    async with fresh_database(ctx.db, label="fair_pickup", workdir=ctx.workdir) as url:
        async with open_store(url) as store:
            for start in range(0, backlog, CHUNK):
                await store.create_many(scans=_scans(min(CHUNK, backlog - start), tenant="A"))
            worker = start_scanq(
                "worker", database_url=url, log_dir=ctx.log_dir, settings={"concurrency": str(WORKER_CONCURRENCY)}
            )
            try:
                # B arrives once the worker is busy with A's backlog (a tenth of it done).
                await _wait_finished(store, at_least=backlog // 10, worker=worker)
                late_ids = []
                for _ in range(late):  # one by one, each stamped when it is submitted
                    (scan,) = _scans(1, tenant="B")
                    late_ids.append((await store.create(scan=scan)).scan.scan_id)
                b = await _wait_started(store, late_ids, worker=worker)
                a_left = (await store.stats(tenant="A")).counts[ScanStatus.ACCEPTED]
            finally:
                await stop_all([worker])
    waits = sorted((scan.started_at - scan.created_at).total_seconds() for scan in b if scan.started_at)
    return {
        "p50_s": round(statistics.median(waits), 4),
        "p99_s": round(waits[min(len(waits) - 1, int(len(waits) * 0.99))], 4),
        "max_s": round(waits[-1], 4),
        "a_still_waiting_when_b_done": a_left,
        "is_within_target": waits[min(len(waits) - 1, int(len(waits) * 0.99))] <= MAX_PICKUP_P99_S,
    }


async def _wait_finished(store: Store, *, at_least: int, worker: Process) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        counts = (await store.stats()).counts
        if sum(n for status, n in counts.items() if status.is_terminal) >= at_least:
            return
        worker.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did not start on the backlog: {dict(counts)}")
        await _sleep()


async def _wait_started(store: Store, scan_ids: list[str], *, worker: Process) -> list[Scan]:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        scans = [await store.get(scan_id=scan_id) for scan_id in scan_ids]
        if all(scan.started_at is not None for scan in scans):
            return scans
        worker.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError("the late tenant's scans never started")
        await _sleep()


async def _sleep() -> None:
    await asyncio.sleep(POLL_S)


async def _drain(ctx: BenchContext, *, count: int, shape: str) -> float:
    async with fresh_database(ctx.db, label="fair_drain", workdir=ctx.workdir) as url:
        async with open_store(url) as store:
            for start in range(0, count, CHUNK):
                size = min(CHUNK, count - start)
                if shape.endswith("tenants"):
                    # Round-robin over the tenants, as many clients submitting at once would.
                    batch = [
                        scan
                        for i in range(TENANTS)
                        for scan in _scans(size // TENANTS + (i < size % TENANTS), tenant=f"t{i}")
                    ]
                elif shape.startswith(str(TARGET_HOSTS)):
                    batch = _scans(size, hosts=TARGET_HOSTS, offset=start)
                else:
                    batch = _scans(size)
                await store.create_many(scans=batch)
            worker = start_scanq(
                "worker", database_url=url, log_dir=ctx.log_dir, settings={"concurrency": str(WORKER_CONCURRENCY)}
            )
            try:
                await wait_until_finished(store, count=count, timeout_s=DRAIN_TIMEOUT_S, processes=[worker])
            finally:
                await stop_all([worker])
            found = await census(store)
    if found.statuses.get("Complete", 0) != count or found.with_bad_history:
        raise RuntimeError(f"{shape}: not every scan completed once: {dict(found.statuses)}")
    return round(count / found.span_s, 1) if found.span_s else 0.0
