"""Scenario ``soak``: a million no-op scans through the real services at a steady rate, with retention on.

Processes: one ``scanq ingest``, one ``scanq status``, ``--soak-workers``
``scanq worker`` (retention set on them: ``SCANQ_RETENTION`` and
``SCANQ_RETENTION_ARCHIVE``, so the table holds a bounded window and every
pruned scan is written to the archive first). ``bench.soak_submit`` (its own
process) submits ``--soak-scans`` scans over HTTP, open loop, at
``--soak-rate`` per second, and logs every answer.

Every interval (10 s; quick: 2 s) the harness records (``bench.soak_probe``):
submit p50/p99 and schedule lag (from the submitter's log), pickup p50/p99
(``started_at`` minus ``created_at`` of a sample of the scans acknowledged in the
previous interval, read over HTTP), status-by-id, list and stats p99 (one
client), the drain rate (``GET /stats/throughput``), the database's size by
table and index (SQLite ``dbstat``; PostgreSQL relation sizes and dead
tuples), and the RSS of each process.

After the last submission the workers drain the queue; then every process is
stopped and the run is checked (``bench.soak_report``): every acknowledged id
is found Complete in the store or in the archive, none completed twice, the
last 10% of the intervals within 25% of the first 10% on every latency and
rate, and the database size levelled off. ``--quick`` (20,000 scans,
retention of seconds) runs in CI with the correctness checks only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.context import BenchContext, summarize_ms
from bench.databases import backend_of, fresh_database
from bench.machine import load_average
from bench.processes import REPO_ROOT, Process, start_scanq, stop_all, wait_http_ready
from bench.soak_probe import HttpProbe, database_sizes
from bench.soak_report import check_run, plot_samples, verify_scans
from scanq.config import Settings

logger = logging.getLogger(__name__)

FULL_SCANS, QUICK_SCANS = 1_000_000, 20_000
FULL_RATE, QUICK_RATE = 500.0, 1000.0
FULL_RETENTION = "Complete=60s,Error=60s,Cancelled=60s"
QUICK_RETENTION = "Complete=10s,Error=10s,Cancelled=10s"
FULL_INTERVAL_S, QUICK_INTERVAL_S = 10, 2
WORKERS = 2
WORKER_CONCURRENCY = 256
SUBMIT_CONNECTIONS = 128
# Reads per interval: by id (also the pickup sample), list pages, stats.
FULL_PROBES, QUICK_PROBES = (50, 20, 20), (20, 10, 10)
LIST_PATHS = ("/scans?limit=50", "/scans?status=Complete&limit=50")
DRAIN_TIMEOUT_S = 900.0
SUBMITTER_GRACE_S = 120.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class SoakOptions:
    """The run's knobs: the defaults, or ``--soak-*`` flags."""

    scans: int
    rate: float
    retention: str
    interval_s: int
    workers: int
    probes: tuple[int, int, int]
    plots: Path | None

    @classmethod
    def from_context(cls, ctx: BenchContext) -> SoakOptions:
        opts = ctx.options
        return cls(
            scans=int(opts.get("soak_scans") or ctx.pick(FULL_SCANS, QUICK_SCANS)),
            rate=float(opts.get("soak_rate") or ctx.pick(FULL_RATE, QUICK_RATE)),
            retention=str(opts.get("soak_retention") or ctx.pick(FULL_RETENTION, QUICK_RETENTION)),
            interval_s=int(opts.get("soak_interval") or ctx.pick(FULL_INTERVAL_S, QUICK_INTERVAL_S)),
            workers=int(opts.get("soak_workers") or WORKERS),
            probes=ctx.pick(FULL_PROBES, QUICK_PROBES),
            plots=Path(opts["soak_plots"]) if opts.get("soak_plots") else None,
        )


def retention_settings(retention: str, archive: Path) -> dict[str, str]:
    """The workers' retention settings, or ``{}`` while this scanq has no retention (the hook stays)."""
    names = {f.name for f in dataclasses.fields(Settings)}
    if retention.lower() in ("", "off", "none") or "retention" not in names:
        return {}
    settings = {"retention": retention}
    if "retention_archive" in names:
        settings["retention_archive"] = str(archive)
    if "event_retention_seconds" in names:
        # The event log (live streams, webhooks) keeps the same window as the scans, so it levels off too.
        settings["event_retention_seconds"] = str(_longest_seconds(retention))
    return settings


def _longest_seconds(retention: str) -> float:
    """The longest age of a ``--retention`` value (``Complete=60s,Error=2m`` → 120.0)."""
    from scanq.retention import RetentionPolicy

    policy = RetentionPolicy.parse(tuple(retention.split(",")))
    return max(age.total_seconds() for age in policy.ages.values())


class AckLog:
    """Reads the submitter's answer log as it grows: acknowledged ids, and each interval's latencies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.acknowledged: list[str] = []
        self.refused = 0
        self._offset = 0

    def read_new(self) -> tuple[list[float], list[float], list[str], int]:
        """Latencies (ms), lags (ms) and ids acknowledged since the last call, and how many were refused."""
        latencies: list[float] = []
        lags: list[float] = []
        ids: list[str] = []
        refused = 0
        try:
            with self.path.open("rb") as log:
                log.seek(self._offset)
                chunk = log.read()
        except FileNotFoundError:
            return latencies, lags, ids, refused
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next call
        self._offset += len(complete)
        for line in complete.decode().splitlines():
            _, latency, lag, status, scan_id = line.split(" ")
            if status == "202" and scan_id != "-":
                latencies.append(float(latency))
                lags.append(float(lag))
                ids.append(scan_id)
            else:
                refused += 1
        self.acknowledged.extend(ids)
        self.refused += refused
        return latencies, lags, ids, refused


async def run(ctx: BenchContext) -> dict[str, Any]:
    """Soak, verify, plot; the result holds every interval's sample and the pass/fail of each check."""
    opts = SoakOptions.from_context(ctx)
    archive = ctx.workdir / "soak-archive"
    archive.mkdir(parents=True, exist_ok=True)
    retention = retention_settings(opts.retention, archive)
    if not retention:
        logger.warning("soak: running WITHOUT retention (%s)", opts.retention if opts.retention else "not set")
    async with fresh_database(ctx.db, label="soak", workdir=ctx.workdir) as url:
        samples, submitted, processes_rss = await _soak(ctx, opts, url=url, retention=retention, archive=archive)
        verification = await verify_scans(url, acknowledged=submitted["ids"], archive=archive)
    checks = check_run(samples, verification=verification, is_quick=ctx.is_quick)
    result: dict[str, Any] = {
        "backend": backend_of(ctx.db),
        "scans": opts.scans,
        "rate_per_s": opts.rate,
        "retention": retention.get("retention"),
        "is_retention_set": bool(retention),
        "interval_s": opts.interval_s,
        "workers": opts.workers,
        "worker_concurrency": WORKER_CONCURRENCY,
        "submit": submitted["summary"],
        "refused": submitted["refused"],
        "verification": verification,
        **checks,
        "rss_peak_mb": processes_rss,
        "samples": samples,
    }
    if opts.plots is not None or not ctx.is_quick:
        out = opts.plots or ctx.workdir / "soak-plots"
        result["plots"] = plot_samples(samples, out=out, title=f"{result['backend']}, {opts.scans:,} scans")
    result["table"] = _table(result)
    return result


async def _soak(
    ctx: BenchContext, opts: SoakOptions, *, url: str, retention: dict[str, str], archive: Path
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, float]]:
    worker_settings = {"concurrency": str(WORKER_CONCURRENCY), **retention}
    ingest = start_scanq("ingest", database_url=url, log_dir=ctx.log_dir)
    status = start_scanq("status", database_url=url, log_dir=ctx.log_dir)
    await wait_http_ready(ingest, path="/readyz")  # ingest migrates the schema first
    await wait_http_ready(status, path="/readyz")
    workers = [
        start_scanq("worker", database_url=url, log_dir=ctx.log_dir, settings=worker_settings)
        for _ in range(opts.workers)
    ]
    services = [ingest, status, *workers]
    log = AckLog(ctx.workdir / "soak-acks.log")
    log.path.unlink(missing_ok=True)
    probe = HttpProbe(status.port or 0)
    samples: list[dict[str, Any]] = []
    rss_peak: dict[str, float] = {}
    submitter: asyncio.subprocess.Process | None = None
    try:
        await asyncio.sleep(1.0)
        for process in services:
            process.check_alive()
        submitter = await _start_submitter(ingest.port or 0, opts, log.path)
        started = time.time()
        previous_ids: list[str] = []
        tick = 0
        drain_deadline: float | None = None
        while True:
            tick += 1
            await asyncio.sleep(max(0.0, started + tick * opts.interval_s - time.time()))
            is_submitting = submitter.returncode is None
            latencies, lags, ids, refused = log.read_new()
            sample = await _sample(probe, opts, sample_ids=previous_ids, url=url)
            sample.update(
                t_s=round(time.time() - started, 2),
                phase="submit" if is_submitting else "drain",
                acknowledged=len(log.acknowledged),
                refused=refused,
                submit_per_s=round(len(ids) / opts.interval_s, 1),
                submit_ms=summarize_ms(latencies),
                lag_max_ms=round(max(lags, default=0.0), 1),
                rss_mb=_rss(ingest, status, workers),
                load_average=load_average(),
            )
            for name, mb in sample["rss_mb"].items():
                rss_peak[name] = max(rss_peak.get(name, 0.0), mb)
            samples.append(sample)
            logger.info(
                "soak t=%.0fs %s: acked %d, drain %.0f/s, rows %s, db %.1f MB, backlog %s",
                sample["t_s"], sample["phase"], sample["acknowledged"], sample["drain_per_s"],
                sample["rows"], sample["sizes"].get("database_bytes", 0) / 1e6, sample["backlog"],
            )  # fmt: skip
            previous_ids = ids
            for process in services:
                process.check_alive()
            if is_submitting:
                continue
            drain_deadline = drain_deadline or time.monotonic() + DRAIN_TIMEOUT_S
            if sample["backlog"] == 0 and not ids:
                break
            if time.monotonic() > drain_deadline:
                raise TimeoutError(f"the queue did not drain within {DRAIN_TIMEOUT_S:.0f}s: {sample['counts']}")
        stdout, stderr = await asyncio.wait_for(submitter.communicate(), SUBMITTER_GRACE_S)
        if submitter.returncode != 0:
            raise RuntimeError(f"submitter failed ({submitter.returncode}): {stderr.decode(errors='replace')[-2000:]}")
        log.read_new()
        summary = json.loads(stdout)
    finally:
        probe.close()
        if submitter is not None and submitter.returncode is None:
            submitter.kill()
            await submitter.wait()
        # Workers stop first (a graceful stop closes the archive file), then the services.
        await stop_all(workers)
        await stop_all([ingest, status])
    return samples, {"ids": log.acknowledged, "refused": log.refused, "summary": summary}, rss_peak


async def _start_submitter(port: int, opts: SoakOptions, out: Path) -> asyncio.subprocess.Process:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    argv = ["-m", "bench.soak_submit", "--port", str(port), "--count", str(opts.scans), "--rate", str(opts.rate)]
    argv += ["--connections", str(SUBMIT_CONNECTIONS), "--out", str(out)]
    return await asyncio.create_subprocess_exec(
        sys.executable, *argv, env=env, cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def _sample(probe: HttpProbe, opts: SoakOptions, *, sample_ids: list[str], url: str) -> dict[str, Any]:
    """One interval's reads through the status service, and the database's size."""
    by_id_count, list_count, stats_count = opts.probes
    by_id_ms: list[float] = []
    pickup_ms: list[float] = []
    pruned = 0
    for scan_id in random.sample(sample_ids, min(by_id_count, len(sample_ids))):
        code, body, ms = await probe.get(f"/scans/{scan_id}")
        by_id_ms.append(ms)
        if code == 404:
            pruned += 1  # finished and removed by retention already
            continue
        scan = json.loads(body)
        created = datetime.fromisoformat(scan["created_at"])
        # Not started yet: its wait so far is a lower bound of its pickup.
        started = datetime.fromisoformat(scan["started_at"]) if scan["started_at"] else datetime.now(created.tzinfo)
        pickup_ms.append((started - created).total_seconds() * 1000.0)
    list_ms = [(await probe.get(LIST_PATHS[i % len(LIST_PATHS)]))[2] for i in range(list_count)]
    stats_ms: list[float] = []
    stats: dict[str, Any] = {}
    for _ in range(stats_count):
        _, body, ms = await probe.get("/stats")
        stats_ms.append(ms)
        stats = json.loads(body)
    step = opts.interval_s
    code, body, throughput_ms = await probe.get(f"/stats/throughput?window={2 * step}s&step={step}s")
    buckets = json.loads(body)["buckets"] if code == 200 else []
    counts = stats.get("counts", {})
    return {
        "by_id_ms": summarize_ms(by_id_ms),
        "pickup_ms": summarize_ms(pickup_ms),
        # The raw reads too: a window's p99 is taken over all of them (50 per interval is too few for one).
        "by_id_raw_ms": [round(ms, 3) for ms in by_id_ms],
        "pickup_raw_ms": [round(ms, 3) for ms in pickup_ms],
        "pruned_when_read": pruned,
        "list_ms": summarize_ms(list_ms),
        "stats_ms": summarize_ms(stats_ms),
        "throughput_ms": round(throughput_ms, 3),
        # The last full step: scans finished in the interval that just ended.
        "drain_per_s": round(buckets[-2]["total"] / step, 1) if len(buckets) >= 2 else 0.0,
        "counts": counts,
        "rows": stats.get("total", 0),
        "backlog": counts.get("Accepted", 0) + counts.get("Running", 0),
        "sizes": await database_sizes(url),
    }


def _rss(ingest: Process, status: Process, workers: list[Process]) -> dict[str, float]:
    rss = {"ingest": ingest.rss_bytes(), "status": status.rss_bytes()}
    rss.update({f"worker{i + 1}": w.rss_bytes() for i, w in enumerate(workers)})
    return {name: round(value / 1e6, 1) for name, value in rss.items()}


def _table(result: dict[str, Any]) -> list[list[str]]:
    verification = result["verification"]
    rows = [
        [
            f"{result['scans']:,} noop scans at {result['rate_per_s']:g}/s, {result['workers']} workers, "
            f"retention {result['retention'] or 'OFF'}",
            f"acknowledged {verification['acknowledged']:,}, lost {verification['lost']}, "
            f"completed twice {verification['completed_twice']}, pruned (archived) {verification['in_archive']:,}",
        ],
    ]
    for name, check in result["stability"].items():
        verdict = "—" if check["ok"] is None else ("ok" if check["ok"] else "**no**")
        rows.append([f"{name}: first 10% → last 10%", f"{check['first']:g} → {check['last']:g} ({verdict})"])
    size = result["levels_off"]
    rows.append(["database size: middle → last 10% (MB)", f"{size['middle_mb']:g} → {size['last_mb']:g}"])
    rows.append(["passed", str(result["passed"])])
    return rows
