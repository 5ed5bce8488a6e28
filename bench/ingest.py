"""Scenario ``ingest``: durable submissions over HTTP against the bare ASGI baseline, same load, same run.

Loads from ``bench.loadgen``, each in its own process at the same concurrency
for the same time: the bare app (``bench.bareapp``), ``POST /scans`` with one
scan and ``POST /scans/batch`` with 100 on one ingest process, then ``POST
/scans`` on two ingest processes sharing the port (``--ingest-processes 2``,
a fresh database). The figure that counts is ``single_vs_bare``: scanq's rate
over the bare app's, which hides how busy this shared machine is; the two
processes' rate over the one's is the scaling (on a 2-core machine the load
generator competes with them for the cores, so the table gives the CPU each
child used). wrk (``bench.wrk``, installed by ``scripts/ensure-wrk.sh`` when it
can be) then drives the bare app and both ingest set-ups with the same body,
``wrk -t1 -c64 -d10s``, as a second judge of the rates and the ratio.
Afterwards each store is read back: it must hold at least as many scans as
the clients saw accepted (durability).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bench.context import BenchContext, fmt_ms, fmt_rate
from bench.databases import fresh_database
from bench.processes import (
    children_cpu_s,
    run_loadgen,
    start_bare_app,
    start_scanq,
    stop_all,
    wait_children_started,
    wait_http_ready,
)
from bench.wrk import ensure_wrk, post_script, run_wrk
from scanq.store import open_store

CONCURRENCY = 64
BATCH_SIZE = 100
PROCESSES = 2
SINGLE_BODY = json.dumps({"target": "example.com", "scanner": "noop"}).encode()
BATCH_BODY = json.dumps({"scans": [{"target": "example.com", "scanner": "noop"}] * BATCH_SIZE}).encode()


async def run(ctx: BenchContext) -> dict[str, Any]:
    """Measure bare, single and batch on one process, single on two, and wrk's view; return rates and ratios."""
    duration_s: float = ctx.pick(10.0, 1.5)
    warmup_s: float = ctx.pick(2.0, 0.5)
    concurrency: int = ctx.pick(CONCURRENCY, 16)
    # A quick run uses wrk when it is there but installs nothing.
    wrk = await asyncio.to_thread(ensure_wrk, may_install=not ctx.is_quick)
    script = post_script(body=SINGLE_BODY, workdir=ctx.workdir) if wrk else None

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

    async def judge(port: int) -> dict[str, Any] | None:
        if wrk is None or script is None:
            return None
        return await run_wrk(
            wrk, port=port, path="/scans", script=script, connections=concurrency, duration_s=duration_s
        )

    bare = start_bare_app(log_dir=ctx.log_dir)
    try:
        await wait_http_ready(bare, path="/")
        assert bare.port is not None
        bare_result = await load(bare.port, path="/scans", body=SINGLE_BODY)
        bare_wrk = await judge(bare.port)
    finally:
        await stop_all([bare])

    async with fresh_database(ctx.db, label="ingest", workdir=ctx.workdir) as url:
        ingest = start_scanq("ingest", database_url=url, log_dir=ctx.log_dir)
        try:
            await wait_http_ready(ingest)
            assert ingest.port is not None
            cpu_before_1 = ingest.cpu_seconds()
            single = await load(ingest.port, path="/scans", body=SINGLE_BODY)
            cpu_used_1 = ingest.cpu_seconds() - cpu_before_1
            single_wrk = await judge(ingest.port)
            batch = await load(ingest.port, path="/scans/batch", body=BATCH_BODY)
        finally:
            await stop_all([ingest])
        stored = await _stored(url)

    async with fresh_database(ctx.db, label="ingest2", workdir=ctx.workdir) as url:
        # INFO: the children's "startup complete" lines tell when both accept (the load's connections are opened
        # once, at its start: a child still starting then would get none of them for the whole run).
        settings = {"ingest_processes": str(PROCESSES), "log_level": "INFO"}
        shared = start_scanq("ingest", database_url=url, log_dir=ctx.log_dir, settings=settings)
        try:
            await wait_http_ready(shared)
            await wait_children_started(shared, service="ingest", count=PROCESSES)
            assert shared.port is not None
            cpu_before = children_cpu_s(shared.pid)
            single_2 = await load(shared.port, path="/scans", body=SINGLE_BODY)
            cpu_used = {pid: cpu - cpu_before.get(pid, 0.0) for pid, cpu in children_cpu_s(shared.pid).items()}
            single_2_wrk = await judge(shared.port)
        finally:
            await stop_all([shared])
        stored_2 = await _stored(url)

    accepted = _ok(single) + _ok(batch) * BATCH_SIZE + _wrk_ok(single_wrk)
    accepted_2 = _ok(single_2) + _wrk_ok(single_2_wrk)
    # Only accepted submissions count: an error answer is not a stored scan.
    for result in (single, single_2):
        result["scans_per_s"] = round(_ok(result) / float(result["duration_s"]), 1)
    batch["scans_per_s"] = round(_ok(batch) * BATCH_SIZE / float(batch["duration_s"]), 1)
    ratio = _ratio(single["scans_per_s"], bare_result["rate_per_s"])
    batch_ratio = _ratio(batch["scans_per_s"], bare_result["rate_per_s"])
    scaling = _ratio(single_2["scans_per_s"], single["scans_per_s"])
    split = _split(cpu_used)
    # CPU per scan hardly moves with the machine's load: equal figures mean two processes cost no more per scan.
    loaded_s = warmup_s + duration_s
    cpu_us = {
        1: _ratio(cpu_used_1 * 1e6, single["scans_per_s"] * loaded_s),
        PROCESSES: _ratio(sum(cpu_used.values()) * 1e6, single_2["scans_per_s"] * loaded_s),
    }
    wrk_report = _wrk_report(
        bare_wrk, single_wrk, single_2_wrk, wrk=wrk, is_quick=ctx.is_quick, connections=concurrency
    )
    return {
        "concurrency": concurrency,
        "duration_s": duration_s,
        "bare": bare_result,
        "single": single,
        "batch": batch,
        "batch_size": BATCH_SIZE,
        "single_vs_bare": round(ratio, 3),
        "batch_scans_vs_bare": round(batch_ratio, 3),
        "processes_2": {
            "single": single_2,
            "vs_1_process": round(scaling, 3),
            "vs_bare": round(_ratio(single_2["scans_per_s"], bare_result["rate_per_s"]), 3),
            "children_cpu_s": {str(pid): round(cpu, 2) for pid, cpu in cpu_used.items()},
            "cpu_us_per_scan": round(cpu_us[PROCESSES], 1),
            "cpu_us_per_scan_1_process": round(cpu_us[1], 1),
            "stored": stored_2,
            "accepted_measured": accepted_2,
            "is_durable_count_ok": stored_2 >= accepted_2,
        },
        "wrk": wrk_report,
        "stored": stored,
        "accepted_measured": accepted,
        "is_durable_count_ok": stored >= accepted,
        "table": [
            ["bare ASGI app (req/s, p50, p99)", _row(bare_result, rate=bare_result["rate_per_s"])],
            ["POST /scans (scans/s, p50, p99)", _row(single, rate=single["scans_per_s"])],
            ["POST /scans/batch of 100 (scans/s, p50, p99)", _row(batch, rate=batch["scans_per_s"])],
            ["single / bare", f"{ratio:.1%}"],
            [
                f"POST /scans, {PROCESSES} ingest processes (scans/s, p50, p99)",
                _row(single_2, rate=single_2["scans_per_s"]),
            ],
            [
                f"{PROCESSES} ingest processes / 1 (same load generator, same cores)",
                f"{scaling:.2f}x; CPU of the children during the load: {split}; "
                f"CPU per scan {cpu_us[1]:.0f} µs (1 process), {cpu_us[PROCESSES]:.0f} µs ({PROCESSES})",
            ],
            *wrk_report["table"],
            [
                "stored >= accepted (durability check)",
                f"{stored:,} >= {accepted:,}: {stored >= accepted}; "
                f"{PROCESSES} processes {stored_2:,} >= {accepted_2:,}: {stored_2 >= accepted_2}",
            ],
        ],
    }


def _wrk_report(
    bare: dict[str, Any] | None,
    single: dict[str, Any] | None,
    single_2: dict[str, Any] | None,
    *,
    wrk: str | None,
    is_quick: bool,
    connections: int = CONCURRENCY,
) -> dict[str, Any]:
    """wrk's rates and ratios beside the load generator's, or why there are none."""
    label = f"wrk -t1 -c{connections}"
    if wrk is None or bare is None or single is None or single_2 is None:
        reason = "not installed (a quick run installs nothing)" if is_quick else "not installed and no root or apt"
        return {"available": False, "reason": reason, "table": [[label, f"wrk unavailable: {reason}"]]}
    ratio = _ratio(single["ok_per_s"], bare["rate_per_s"])
    scaling = _ratio(single_2["ok_per_s"], single["ok_per_s"])
    return {
        "available": True,
        "command": single["command"],
        "bare": bare,
        "single": single,
        "processes_2": single_2,
        "single_vs_bare": round(ratio, 3),
        "processes_2_vs_1": round(scaling, 3),
        "table": [
            [f"{label}: bare ASGI app (req/s, p50, p99)", _row(bare, rate=bare["rate_per_s"])],
            [f"{label}: POST /scans, 1 process (scans/s, p50, p99)", _row(single, rate=single["ok_per_s"])],
            [f"{label}: POST /scans, {PROCESSES} processes", _row(single_2, rate=single_2["ok_per_s"])],
            [f"{label}: single / bare; {PROCESSES} processes / 1", f"{ratio:.1%}; {scaling:.2f}x"],
        ],
    }


async def _stored(url: str) -> int:
    async with open_store(url) as store:
        stats = await store.stats()
    return sum(stats.counts.values())


def _split(cpu_used: dict[int, float]) -> str:
    total = sum(cpu_used.values())
    if not total:
        return "not measured"
    return " / ".join(f"{cpu:.1f} s ({cpu / total:.0%})" for cpu in sorted(cpu_used.values(), reverse=True))


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else 0.0


def _ok(result: dict[str, Any]) -> int:
    statuses: dict[str, int] = result["statuses"]
    return sum(count for status, count in statuses.items() if status.startswith("2"))


def _wrk_ok(result: dict[str, Any] | None) -> int:
    return 0 if result is None else int(result["requests"]) - int(result["raw"]["status_errors"])


def _row(result: dict[str, Any], *, rate: float) -> str:
    errors = f", {result['errors']} errors {result.get('statuses', '')}" if result["errors"] else ""
    return f"{fmt_rate(rate)}, {fmt_ms(result['p50_ms'])}, {fmt_ms(result['p99_ms'])}{errors}"
