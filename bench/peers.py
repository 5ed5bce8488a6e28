"""Scenario ``peers``: scanq against pgqueuer and procrastinate, same PostgreSQL server, same run, same measure.

For every system and setting: a fresh database, N no-op jobs queued in bulk,
ONE worker process of that system, the done-count sampled from the database
every 50 ms from here, and the rate taken between the 10% and 90% marks
(``bench/peers_measure.py``: start-up is left out for all alike), with the
worker's CPU per job over the same window. After each drain every job is
checked (scanq: every scan Complete with its history closed; the peers: all
jobs done, their history rows as the system writes them).

Rows: scanq on that PostgreSQL server and on SQLite (one worker,
``SCANQ_CONCURRENCY=1000`` as in ``drain``); pgqueuer with batch sizes 10,
100 and 1000 and with 5 queue managers in the process (its own benchmark's
``--dequeue 5``); procrastinate with ``--concurrency`` 10 and 50. Each
setting runs ``--peers-rounds`` times (3), in alternating order so that drift
in the machine's load hits every row alike; a row's rate is the median.
"Best pgqueuer" is its fastest row; the targets are scanq / best pgqueuer.

The PostgreSQL server: ``--peers-db``, else ``--db`` when it is PostgreSQL,
else ``postgresql://root@127.0.0.1:5432/postgres``. pgqueuer and
procrastinate come with the ``peers`` extra (``pip install -e '.[peers]'``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import statistics
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.context import BenchContext, fmt_rate
from bench.databases import backend_of

logger = logging.getLogger(__name__)

DEFAULT_SERVER = "postgresql://root@127.0.0.1:5432/postgres"
PEER_PACKAGES = ("pgqueuer", "procrastinate")
SCANQ_CONCURRENCY = 1000
PGQUEUER_SETTINGS = ((10, 1), (100, 1), (1000, 1), (10, 5), (100, 5))  # (batch size, queue managers)
PROCRASTINATE_CONCURRENCY = (10, 50)
QUICK_PGQUEUER_SETTINGS = ((100, 1),)
QUICK_PROCRASTINATE_CONCURRENCY = (10,)
DRAIN_TIMEOUT_S = 600.0
QUICK_DRAIN_TIMEOUT_S = 120.0
TARGET_RATIO = 1.6

Drain = Callable[[BenchContext, str, int, float], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, kw_only=True)
class Row:
    """One system with one setting: what the table shows and how to drain it."""

    system: str
    setting: str
    backend: str
    drain: Drain


async def run(ctx: BenchContext) -> dict[str, Any]:
    """Drain every row ``rounds`` times; return each run, the medians, the ratios and the table."""
    _require_peers()
    server = peers_server(ctx)
    jobs: int = ctx.options.get("peers_jobs") or ctx.pick(20_000, 300)
    rounds: int = ctx.options.get("peers_rounds") or ctx.pick(3, 1)
    timeout_s: float = ctx.pick(DRAIN_TIMEOUT_S, QUICK_DRAIN_TIMEOUT_S)
    version = await _server_version(server)  # an unreachable server fails the scenario before any work
    systems = ctx.options.get("peers_systems")
    rows = [row for row in plan(is_quick=ctx.is_quick) if not systems or row.system in systems.split(",")]
    if not rows:
        raise ValueError(f"--peers-systems {systems!r} names none of scanq, {', '.join(PEER_PACKAGES)}")
    runs: dict[str, list[dict[str, Any]]] = {_key(row): [] for row in rows}
    errors: list[str] = []
    for round_index in range(rounds):
        for row in rows if round_index % 2 == 0 else rows[::-1]:
            logger.info("peers: %s %s (round %d of %d)", row.system, row.setting, round_index + 1, rounds)
            started = time.perf_counter()
            try:
                measured = await row.drain(ctx, server, jobs, timeout_s)
            except Exception as exc:
                logger.error("peers: %s %s failed: %s", row.system, row.setting, exc)
                errors.append(f"{row.system} {row.setting}: " + "".join(traceback.format_exception(exc))[-2000:])
                measured = {"error": f"{type(exc).__name__}: {exc}"[:500], "is_verified": False}
            measured["elapsed_s"] = round(time.perf_counter() - started, 1)
            runs[_key(row)].append(measured)
    results = [_aggregate(row, runs[_key(row)]) for row in rows]
    return {
        "jobs": jobs,
        "rounds": rounds,
        "postgresql": version,
        "versions": {name: importlib.metadata.version(name) for name in ("scanq", *PEER_PACKAGES)},
        "rows": results,
        **ratios(results),
        "is_verified": all(result["is_verified"] for result in results),
        "errors": errors,
        "table": summary_table(results),
        "tables": [peers_table(results, jobs=jobs, rounds=rounds)],
    }


def plan(*, is_quick: bool) -> list[Row]:
    """Every row of the scenario (fewer in a quick run: one setting per system)."""
    from bench.peers_pgqueuer import drain_pgqueuer
    from bench.peers_procrastinate import drain_procrastinate
    from bench.peers_scanq import drain_scanq

    def scanq(backend: str) -> Drain:
        async def drain(ctx: BenchContext, server: str, jobs: int, timeout_s: float) -> dict[str, Any]:
            db = server if backend == "postgres" else "sqlite"
            return await drain_scanq(ctx, db=db, jobs=jobs, concurrency=SCANQ_CONCURRENCY, timeout_s=timeout_s)

        return drain

    def pgqueuer(batch_size: int, managers: int) -> Drain:
        async def drain(ctx: BenchContext, server: str, jobs: int, timeout_s: float) -> dict[str, Any]:
            return await drain_pgqueuer(
                ctx, server=server, jobs=jobs, batch_size=batch_size, managers=managers, timeout_s=timeout_s
            )

        return drain

    def procrastinate(concurrency: int) -> Drain:
        async def drain(ctx: BenchContext, server: str, jobs: int, timeout_s: float) -> dict[str, Any]:
            return await drain_procrastinate(
                ctx, server=server, jobs=jobs, concurrency=concurrency, timeout_s=timeout_s
            )

        return drain

    rows = [
        Row(system="scanq", setting=f"concurrency {SCANQ_CONCURRENCY}", backend="postgres", drain=scanq("postgres")),
        Row(system="scanq", setting=f"concurrency {SCANQ_CONCURRENCY}", backend="sqlite", drain=scanq("sqlite")),
    ]
    for batch_size, managers in QUICK_PGQUEUER_SETTINGS if is_quick else PGQUEUER_SETTINGS:
        setting = f"batch {batch_size}" + (f", {managers} managers" if managers > 1 else "")
        rows.append(Row(system="pgqueuer", setting=setting, backend="postgres", drain=pgqueuer(batch_size, managers)))
    for concurrency in QUICK_PROCRASTINATE_CONCURRENCY if is_quick else PROCRASTINATE_CONCURRENCY:
        rows.append(
            Row(
                system="procrastinate",
                setting=f"concurrency {concurrency}",
                backend="postgres",
                drain=procrastinate(concurrency),
            )
        )
    return rows


def peers_server(ctx: BenchContext) -> str:
    """The PostgreSQL server every PostgreSQL row runs on (see the module docstring)."""
    explicit: str | None = ctx.options.get("peers_db")
    if explicit:
        return explicit
    return ctx.db if backend_of(ctx.db) == "postgres" else DEFAULT_SERVER


def ratios(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The best pgqueuer row, and scanq's PostgreSQL and SQLite rates over it (None when a side has no rate)."""
    pgqueuer = [result for result in results if result["system"] == "pgqueuer" and result["rate_per_s"]]
    best = max(pgqueuer, key=lambda result: result["rate_per_s"], default=None)
    found: dict[str, Any] = {"best_pgqueuer": None if best is None else best["setting"]}
    for backend in ("postgres", "sqlite"):
        rate = next((r["rate_per_s"] for r in results if r["system"] == "scanq" and r["backend"] == backend), 0.0)
        found[f"scanq_{backend}_vs_pgqueuer"] = round(rate / best["rate_per_s"], 3) if best and rate else None
    return found


def _aggregate(row: Row, measured: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [run["rate_per_s"] for run in measured if "rate_per_s" in run]
    cpus = [run["cpu_us_per_job"] for run in measured if "cpu_us_per_job" in run]
    server_cpus = [run["server_cpu_us_per_job"] for run in measured if "server_cpu_us_per_job" in run]
    return {
        "system": row.system,
        "setting": row.setting,
        "backend": row.backend,
        "rate_per_s": round(statistics.median(rates), 1) if rates else 0.0,
        "rate_min_per_s": min(rates, default=0.0),
        "rate_max_per_s": max(rates, default=0.0),
        "cpu_us_per_job": round(statistics.median(cpus), 2) if cpus else 0.0,
        "server_cpu_us_per_job": round(statistics.median(server_cpus), 2) if server_cpus else 0.0,
        "history": next((run["history"] for run in measured if "history" in run), ""),
        "is_verified": bool(measured) and all(run.get("is_verified") for run in measured),
        "runs": measured,
    }


def summary_table(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The rows ``python -m bench`` puts in its main table: scanq over the best pgqueuer, the best of each peer."""
    found = ratios(results)
    best = {
        system: max((r for r in results if r["system"] == system), key=lambda r: r["rate_per_s"], default=None)
        for system in PEER_PACKAGES
    }
    pgqueuer_rate = best["pgqueuer"]["rate_per_s"] if best["pgqueuer"] else 0.0
    table = []
    for backend, name in (("postgres", "PostgreSQL"), ("sqlite", "SQLite")):
        ratio = found[f"scanq_{backend}_vs_pgqueuer"]
        scanq = next((r for r in results if r["system"] == "scanq" and r["backend"] == backend), None)
        if scanq is None:  # left out with --peers-systems
            continue
        rates = fmt_rate(scanq["rate_per_s"]) + (f" vs {fmt_rate(pgqueuer_rate)}" if pgqueuer_rate else "")
        table.append(
            [
                f"scanq on {name} / best pgqueuer ({found['best_pgqueuer'] or 'none measured'}), 1 worker process",
                ("—" if ratio is None else f"{ratio:.2f}x") + f" ({rates})",
            ]
        )
    for system, result in best.items():
        if result is not None:
            rate = fmt_rate(result["rate_per_s"]) if result["rate_per_s"] else "FAILED"
            table.append([f"best {system} ({result['setting']})", rate])
    return table


def peers_table(results: Sequence[dict[str, Any]], *, jobs: int, rounds: int) -> dict[str, Any]:
    """Every row: system, setting, rate (median, range), ratio to the best pgqueuer, CPU per job, history kept."""
    best = max((r["rate_per_s"] for r in results if r["system"] == "pgqueuer"), default=0.0)
    lines = []
    for result in results:
        database = "SQLite" if result["backend"] == "sqlite" else "PostgreSQL"
        rate = fmt_rate(result["rate_per_s"])
        if rounds > 1:
            rate += f" ({result['rate_min_per_s']:,.0f}-{result['rate_max_per_s']:,.0f})"
        lines.append(
            [
                result["system"],
                f"{result['setting']}, {database}",
                rate if result["rate_per_s"] else "FAILED",
                f"{result['rate_per_s'] / best:.2f}x" if best else "—",
                f"{result['cpu_us_per_job']:.1f}",
                f"{result['server_cpu_us_per_job']:.1f}",
                result["history"] or "—",
                "yes" if result["is_verified"] else "**no**",
            ]
        )
    return {
        "title": f"peers: {jobs:,} no-op jobs, one worker process, rate between the 10% and 90% marks"
        + (f", median of {rounds} rounds (min-max)" if rounds > 1 else ""),
        "columns": [
            "system",
            "setting",
            "jobs/s",
            "x best pgqueuer",
            "worker CPU µs/job",
            "PostgreSQL CPU µs/job",
            "history kept",
            "verified",
        ],
        "rows": lines,
    }


def _key(row: Row) -> str:
    return f"{row.system}/{row.backend}/{row.setting}"


def _require_peers() -> None:
    missing = [name for name in PEER_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise RuntimeError(f"the peers scenario needs {', '.join(missing)}: pip install -e '.[peers]'")


async def _server_version(server: str) -> str:
    connection = await asyncpg.connect(server)
    try:
        version: str = await connection.fetchval("SHOW server_version")
        return version
    finally:
        await connection.close()
