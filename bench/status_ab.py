"""An A/B of status reads: two versions of scanq's source, alternating rounds, over one database.

``python -m bench.status_ab --before /tmp/status-before/src [--after src] --db sqlite --size 100000 --rounds 4``

One database is filled as ``bench.status`` fills it (``bench.loaders``), then one ``scanq status``
process per version (``PYTHONPATH`` pointing at its ``src``) serves it: reads do not change it, so both
read the same rows. Each round runs every read (by id, a list page) with ``bench.loadgen`` at 64
connections against both versions, in ABBA order (round 1: before, after; round 2: after, before; …),
and records per load the reads per second, p50 and p99, and the CPU the status process spent per read:
all threads, and its event-loop thread alone (the main thread); SQLite's reader threads are the
difference. On a machine other jobs load, only the CPU figures and the paired ratios compare, and only
within the run. ``--profile DIR`` records each process with py-spy (``python -m bench.profiles``).
Both versions read the one database, so they must have the same schema version, and the harness (which
fills it with the scanq it imports) too: put one version's ``src`` first on ``PYTHONPATH`` when the working
tree's schema has moved on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from bench.databases import fresh_database
from bench.ingest_ab import VARIANTS, paired_ratios, thread_cpu_s, variant_medians
from bench.loaders import load_scans, mix_statuses, settle
from bench.machine import load_average
from bench.processes import Process, run_loadgen, start_scanq, stop_all, use_profiler, wait_http_ready
from bench.status import LIST_LIMIT
from scanq.cursors import encode_page_cursor
from scanq.store import open_store
from scanq.store.base import encode_cursor

CONCURRENCY = 64
READS = ("by_id", "list")


async def _paths(url: str, size: int) -> dict[str, list[str]]:
    async with open_store(url) as store:
        sample = await load_scans(store, count=size, sample_every=max(1, size // 2000))
        await mix_statuses(store, count=size)
    await settle(url)
    middle = sorted(sample)[len(sample) // 2]
    return {
        "by_id": [f"/{scan_id}" for scan_id in sample],
        "list": [
            f"/scans?limit={LIST_LIMIT}",
            f"/scans?status=Complete&limit={LIST_LIMIT}",
            f"/scans?limit={LIST_LIMIT}&cursor={encode_page_cursor(encode_cursor(middle), status=None)}",
        ],
    }


async def measure(
    sources: dict[str, Path],
    *,
    db: str,
    size: int,
    rounds: int,
    reads: Sequence[str],
    duration_s: float,
    warmup_s: float,
    workdir: Path,
) -> dict[str, Any]:
    """Run the rounds; return every load's figures, the medians and the paired ratios per read."""
    log_dir = workdir / "logs"
    rows: list[dict[str, Any]] = []
    async with fresh_database(db, label="status_ab", workdir=workdir) as url:
        paths = await _paths(url, size)
        services: dict[str, Process] = {}
        try:
            for variant in VARIANTS:  # one by one, so that a failed start still stops the first
                services[variant] = start_scanq(
                    "status", database_url=url, log_dir=log_dir / variant, source=sources[variant]
                )
            for service in services.values():
                await wait_http_ready(service)
            for round_ in range(rounds):
                order = VARIANTS if round_ % 2 == 0 else tuple(reversed(VARIANTS))
                for read in reads:
                    for variant in order:
                        rows.append(
                            await _one(
                                services[variant],
                                paths[read],
                                round_=round_ + 1,
                                variant=variant,
                                read=read,
                                duration_s=duration_s,
                                warmup_s=warmup_s,
                                workdir=workdir,
                            )
                        )
                        print(json.dumps(rows[-1]), flush=True)
        finally:
            await stop_all(list(services.values()))
    summary = {read: _summary([row for row in rows if row["read"] == read]) for read in reads}
    return {"rows": rows, "summary": summary}


async def _one(
    service: Process,
    paths: list[str],
    *,
    round_: int,
    variant: str,
    read: str,
    duration_s: float,
    warmup_s: float,
    workdir: Path,
) -> dict[str, Any]:
    assert service.port is not None
    cpu_before = service.cpu_seconds()
    loop_before = thread_cpu_s(service.pid, service.pid)
    load = load_average()
    result = await run_loadgen(
        port=service.port,
        paths=paths,
        concurrency=CONCURRENCY,
        duration_s=duration_s,
        warmup_s=warmup_s,
        workdir=workdir,
    )
    statuses = cast(dict[str, int], result["statuses"])
    if set(statuses) != {"200"}:
        raise RuntimeError(f"{variant} {read}: not every read was answered 200: {statuses}")
    rate = float(str(result["rate_per_s"]))
    served = rate * (duration_s + warmup_s)  # the warm-up's reads were served too
    return {
        "round": round_,
        "read": read,
        "variant": variant,
        "rate_per_s": round(rate, 1),
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "cpu_us": round((service.cpu_seconds() - cpu_before) / served * 1e6, 1),
        "loop_cpu_us": round((thread_cpu_s(service.pid, service.pid) - loop_before) / served * 1e6, 1),
        "load": load,
    }


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("rate_per_s", "p50_ms", "p99_ms", "cpu_us", "loop_cpu_us")
    medians = {variant: variant_medians(rows, variant, keys) for variant in VARIANTS}
    return {"medians": medians, "paired": paired_ratios(rows, keys)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.status_ab", description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the src/ directory of the code before")
    parser.add_argument("--after", type=Path, default=Path(__file__).resolve().parent.parent / "src")
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--reads", default=",".join(READS), help="comma list of by_id, list")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--profile", type=Path, help="record every status process with py-spy into this directory")
    parser.add_argument("--json", type=Path, help="write the rows and the summary here")
    args = parser.parse_args(argv)
    if args.profile:
        use_profiler(args.profile)
    reads = [read for read in args.reads.split(",") if read]
    with tempfile.TemporaryDirectory(prefix="scanq-status-ab-") as workdir:
        result = asyncio.run(
            measure(
                {"before": args.before.resolve(), "after": args.after.resolve()},
                db=args.db,
                size=args.size,
                rounds=args.rounds,
                reads=reads,
                duration_s=args.duration,
                warmup_s=args.warmup,
                workdir=Path(workdir),
            )
        )
    print(json.dumps(result["summary"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
