"""Scenario ``ingest``: durable submissions over HTTP against the bare ASGI baseline, same load, same run.

Three loads, each from ``bench.loadgen`` in its own process at the same
concurrency for the same time: the bare app (``bench.bareapp``), ``POST
/scans`` with one scan, and ``POST /scans/batch`` with 100. The figure that
counts is ``single_vs_bare``: scanq's rate over the bare app's, which hides
how busy this shared machine is. Afterwards the store is read back: it must
hold at least as many scans as the load generator saw accepted (durability).
"""

from __future__ import annotations

import json
from typing import Any

from bench.context import BenchContext, fmt_ms, fmt_rate
from bench.databases import fresh_database
from bench.processes import run_loadgen, start_bare_app, start_scanq, stop_all, wait_http_ready
from scanq.store import open_store

CONCURRENCY = 64
BATCH_SIZE = 100
SINGLE_BODY = json.dumps({"target": "example.com", "scanner": "noop"}).encode()
BATCH_BODY = json.dumps({"scans": [{"target": "example.com", "scanner": "noop"}] * BATCH_SIZE}).encode()


async def run(ctx: BenchContext) -> dict[str, Any]:
    """Measure bare, single and batch; return rates, latencies and the ratio."""
    duration_s: float = ctx.pick(10.0, 1.5)
    warmup_s: float = ctx.pick(2.0, 0.5)
    concurrency: int = ctx.pick(CONCURRENCY, 16)

    async def load(port: int, *, path: str, body: bytes) -> dict[str, Any]:
        return await run_loadgen(
            port=port,
            method="POST",
            paths=[path],
            body=body,
            concurrency=concurrency,
            duration_s=duration_s,
            warmup_s=warmup_s,
            workdir=ctx.workdir,
        )

    bare = start_bare_app(log_dir=ctx.log_dir)
    try:
        await wait_http_ready(bare, path="/")
        assert bare.port is not None
        bare_result = await load(bare.port, path="/scans", body=SINGLE_BODY)
    finally:
        await stop_all([bare])

    async with fresh_database(ctx.db, label="ingest", workdir=ctx.workdir) as url:
        ingest = start_scanq("ingest", database_url=url, log_dir=ctx.log_dir)
        try:
            await wait_http_ready(ingest)
            assert ingest.port is not None
            single = await load(ingest.port, path="/scans", body=SINGLE_BODY)
            batch = await load(ingest.port, path="/scans/batch", body=BATCH_BODY)
        finally:
            await stop_all([ingest])
        async with open_store(url) as store:
            stats = await store.stats()
    stored = sum(stats.counts.values())
    accepted = _ok(single) + _ok(batch) * BATCH_SIZE
    # Only accepted submissions count: an error answer is not a stored scan.
    single["scans_per_s"] = round(_ok(single) / float(single["duration_s"]), 1)
    batch["scans_per_s"] = round(_ok(batch) * BATCH_SIZE / float(batch["duration_s"]), 1)
    ratio = float(single["scans_per_s"]) / float(bare_result["rate_per_s"]) if bare_result["rate_per_s"] else 0.0
    batch_ratio = float(batch["scans_per_s"]) / float(bare_result["rate_per_s"]) if bare_result["rate_per_s"] else 0.0
    return {
        "concurrency": concurrency,
        "duration_s": duration_s,
        "bare": bare_result,
        "single": single,
        "batch": batch,
        "batch_size": BATCH_SIZE,
        "single_vs_bare": round(ratio, 3),
        "batch_scans_vs_bare": round(batch_ratio, 3),
        "stored": stored,
        "accepted_measured": accepted,
        "is_durable_count_ok": stored >= accepted,
        "table": [
            ["bare ASGI app (req/s, p50, p99)", _row(bare_result, rate=bare_result["rate_per_s"])],
            ["POST /scans (scans/s, p50, p99)", _row(single, rate=single["scans_per_s"])],
            ["POST /scans/batch of 100 (scans/s, p50, p99)", _row(batch, rate=batch["scans_per_s"])],
            ["single / bare", f"{ratio:.1%}"],
            ["stored >= accepted (durability check)", f"{stored:,} >= {accepted:,}: {stored >= accepted}"],
        ],
    }


def _ok(result: dict[str, Any]) -> int:
    statuses: dict[str, int] = result["statuses"]
    return sum(count for status, count in statuses.items() if status.startswith("2"))


def _row(result: dict[str, Any], *, rate: float) -> str:
    errors = f", {result['errors']} errors {result['statuses']}" if result["errors"] else ""
    return f"{fmt_rate(rate)}, {fmt_ms(result['p50_ms'])}, {fmt_ms(result['p99_ms'])}{errors}"
