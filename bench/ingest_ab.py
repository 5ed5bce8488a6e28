"""An A/B of durable single submissions: two versions of scanq's source, alternating rounds, in one run.

``python -m bench.ingest_ab --before /tmp/ingest-before/src [--after src] --db sqlite --rounds 4``

Each version runs as its own ingest process (``PYTHONPATH`` pointing at its ``src``) on a fresh database
of its own, beside the bare ASGI app (``bench.bareapp``). Every round loads the bare app, then both
versions, in ABBA order (round 1: before, after; round 2: after, before; …), with ``bench.loadgen``
(``POST /scans`` with one scan, 64 connections). Per load it records the submissions per second, the
ratio to the bare app's rate in the same round (and the bare app's CPU per request), and the CPU the
ingest process spent per accepted scan: all threads, and its event-loop thread alone (the main thread,
``/proc/PID/task/PID``), which is what the answer path costs; SQLite's writer thread is the difference.
On a machine other jobs load, only these ratios and CPU figures compare, and only within the run: the
medians are the result. ``--batch 100`` loads ``POST /scans/batch`` with that many scans a request
instead (the rates and CPU figures are then per scan; the bare app's rate stays per request).
``--profile DIR`` also records each process with py-spy (``python -m bench.profiles --by-module``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.databases import fresh_database
from bench.machine import load_average
from bench.processes import (
    CLOCK_TICKS_PER_S,
    run_loadgen,
    start_bare_app,
    start_scanq,
    stop_all,
    use_profiler,
    wait_http_ready,
)

CONCURRENCY = 64
ITEM = {"target": "example.com", "scanner": "noop"}
BODY = json.dumps(ITEM).encode()
VARIANTS = ("before", "after")
MEDIAN_KEYS = ("scans_per_s", "bare_per_s", "vs_bare", "bare_cpu_us", "cpu_us", "loop_cpu_us", "p50_ms", "p99_ms")
PAIRED_KEYS = ("scans_per_s", "cpu_us", "loop_cpu_us")


def thread_cpu_s(pid: int, tid: int) -> float:
    """CPU seconds (user + system) of one thread of ``pid`` so far; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def batch_body(size: int) -> bytes:
    """``POST /scans/batch``'s body with ``size`` scans (the ``ingest`` scenario's batch)."""
    return json.dumps({"scans": [ITEM] * size}).encode()


async def _load(
    port: int, *, duration_s: float, warmup_s: float, workdir: Path, path: str = "/scans", body: bytes = BODY
) -> dict[str, Any]:
    return await run_loadgen(
        port=port,
        method="POST",
        paths=[path],
        body=body,
        concurrency=CONCURRENCY,
        duration_s=duration_s,
        warmup_s=warmup_s,
        workdir=workdir,
    )


def _accepted(result: dict[str, Any]) -> int:
    statuses: dict[str, int] = result["statuses"]
    return sum(n for status, n in statuses.items() if status.startswith("2"))


async def measure(
    sources: dict[str, Path],
    *,
    db: str,
    rounds: int,
    duration_s: float,
    warmup_s: float,
    workdir: Path,
    batch: int | None = None,
) -> dict[str, Any]:
    """Run the rounds; return every load's figures and the medians per variant (per scan with ``batch``)."""
    path, body, scans_per_request = ("/scans", BODY, 1) if batch is None else ("/scans/batch", batch_body(batch), batch)
    log_dir = workdir / "logs"
    rows: list[dict[str, Any]] = []
    async with (
        fresh_database(db, label="ab_before", workdir=workdir) as before_url,
        fresh_database(db, label="ab_after", workdir=workdir) as after_url,
    ):
        urls = {"before": before_url, "after": after_url}
        services = {
            variant: start_scanq(
                "ingest", database_url=urls[variant], log_dir=log_dir / variant, source=sources[variant]
            )
            for variant in VARIANTS
        }
        bare = start_bare_app(log_dir=log_dir)
        try:
            await wait_http_ready(bare, path="/")
            for service in services.values():
                await wait_http_ready(service)
            for round_ in range(rounds):
                assert bare.port is not None
                bare_cpu = bare.cpu_seconds()
                bare_result = await _load(bare.port, duration_s=duration_s, warmup_s=warmup_s, workdir=workdir)
                bare_served = bare_result["requests"] * (duration_s + warmup_s) / duration_s
                bare_cpu_us = round((bare.cpu_seconds() - bare_cpu) / bare_served * 1e6, 1)
                order = VARIANTS if round_ % 2 == 0 else tuple(reversed(VARIANTS))
                for variant in order:
                    service = services[variant]
                    assert service.port is not None
                    cpu_before = service.cpu_seconds()
                    loop_before = thread_cpu_s(service.pid, service.pid)
                    load = load_average()
                    result = await _load(
                        service.port, duration_s=duration_s, warmup_s=warmup_s, workdir=workdir, path=path, body=body
                    )
                    if _accepted(result) != sum(result["statuses"].values()):
                        raise RuntimeError(f"{variant}: not every submission was accepted: {result['statuses']}")
                    accepted = _accepted(result) * scans_per_request
                    # The warm-up's requests were served too: the CPU is over every request of the load.
                    served = accepted * (duration_s + warmup_s) / duration_s
                    rate = accepted / float(result["duration_s"])
                    rows.append(
                        {
                            "round": round_ + 1,
                            "variant": variant,
                            "scans_per_s": round(rate, 1),
                            "bare_per_s": bare_result["rate_per_s"],
                            "vs_bare": round(rate / float(bare_result["rate_per_s"]), 3),
                            "bare_cpu_us": bare_cpu_us,
                            "cpu_us": round((service.cpu_seconds() - cpu_before) / served * 1e6, 1),
                            "loop_cpu_us": round(
                                (thread_cpu_s(service.pid, service.pid) - loop_before) / served * 1e6, 1
                            ),
                            "p50_ms": result["p50_ms"],
                            "p99_ms": result["p99_ms"],
                            "load": load,
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            await stop_all([*services.values(), bare])
    medians = {variant: variant_medians(rows, variant, MEDIAN_KEYS) for variant in VARIANTS}
    return {"rows": rows, "medians": medians, "paired": paired_ratios(rows, PAIRED_KEYS)}


def variant_medians(rows: list[dict[str, Any]], variant: str, keys: Sequence[str]) -> dict[str, float]:
    """The median of each of ``keys`` over ``variant``'s rows (every A/B tool's)."""
    mine = [row for row in rows if row["variant"] == variant]
    return {key: round(statistics.median(float(row[key]) for row in mine), 3) for key in keys}


def paired_ratios(rows: list[dict[str, Any]], keys: Sequence[str]) -> dict[str, float]:
    """Medians of after / before within each round: what the round's own conditions cancel out of."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["variant"]] = row
    pairs = [pair for pair in by_round.values() if len(pair) == len(VARIANTS)]
    return {
        f"{key}_after_over_before": round(statistics.median(p["after"][key] / p["before"][key] for p in pairs), 3)
        for key in keys
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_ab", description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the src/ directory of the code before")
    parser.add_argument("--after", type=Path, default=Path(__file__).resolve().parent.parent / "src")
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--batch", type=int, help="load POST /scans/batch with this many scans a request")
    parser.add_argument("--profile", type=Path, help="record every ingest process with py-spy into this directory")
    parser.add_argument("--json", type=Path, help="write the rows and medians here")
    args = parser.parse_args(argv)
    if args.profile:
        use_profiler(args.profile)
    with tempfile.TemporaryDirectory(prefix="scanq-ab-") as workdir:
        result = asyncio.run(
            measure(
                {"before": args.before.resolve(), "after": args.after.resolve()},
                db=args.db,
                rounds=args.rounds,
                duration_s=args.duration,
                warmup_s=args.warmup,
                workdir=Path(workdir),
                batch=args.batch,
            )
        )
    print(json.dumps({"medians": result["medians"], "paired": result["paired"]}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
