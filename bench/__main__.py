"""``python -m bench``: run the scenarios against one backend, print a table, write JSON.

Examples::

    python -m bench --db sqlite
    python -m bench --db postgresql://root@127.0.0.1:5432/postgres --scenarios ingest,drain
    python -m bench --db sqlite --quick --json /tmp/bench.json   # smoke run, tiny sizes
    python -m bench --db sqlite --scenarios soak --soak-plots docs/soak/sqlite   # the soak (never by default)

Each scenario makes a fresh database (a temp SQLite file, a new PostgreSQL
database dropped afterwards, a new MongoDB database dropped afterwards), starts
real ``python -m scanq`` processes on free ports and stops them. A scenario
that fails is reported as failed and the others still run; the exit code is 1
if any failed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from bench.context import BenchContext
from bench.databases import backend_of
from bench.machine import describe, load_average
from bench.processes import use_profiler
from bench.report import render_markdown
from bench.targets import check_targets

logger = logging.getLogger("bench")

_T = TypeVar("_T")

SCENARIOS = ("ingest", "ingest-auth", "drain", "fairness", "pickup", "status", "concurrency", "webhooks", "peers")
# Run only when named: the soak takes the better part of an hour (bench/soak.py).
ON_REQUEST = ("soak",)


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description="scanq benchmarks")
    parser.add_argument("--db", default="sqlite", help="sqlite, postgresql://… or mongodb://… (default: sqlite)")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma list of {', '.join(SCENARIOS + ON_REQUEST)} (default: all but {', '.join(ON_REQUEST)})",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")
    parser.add_argument("--json", type=Path, help="write the full results here")
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a new temp dir, removed after)")
    parser.add_argument(
        "--profile", type=Path, help="record every scanq process with py-spy into this directory (slows them down)"
    )
    soak = parser.add_argument_group("soak", "the soak scenario (defaults: see bench/soak.py)")
    soak.add_argument("--soak-scans", type=int, help="scans to submit (1,000,000; quick: 20,000)")
    soak.add_argument("--soak-rate", type=float, help="submissions per second, open loop (500; quick: 1000)")
    soak.add_argument("--soak-retention", help="the workers' SCANQ_RETENTION ('off': none)")
    soak.add_argument("--soak-workers", type=int, help="worker processes (2)")
    soak.add_argument("--soak-interval", type=int, help="seconds between samples (10; quick: 2)")
    soak.add_argument("--soak-plots", type=Path, help="write the PNGs here (default: the work dir; quick: none)")
    peers = parser.add_argument_group("peers", "the peers scenario (defaults: see bench/peers.py)")
    peers.add_argument("--peers-db", help="PostgreSQL server for every PostgreSQL row (default: --db, else local)")
    peers.add_argument("--peers-jobs", type=int, help="jobs each system drains (20,000; quick: 300)")
    peers.add_argument("--peers-rounds", type=int, help="times each row runs, the median counts (3; quick: 1)")
    peers.add_argument("--peers-systems", help="comma list of scanq, pgqueuer, procrastinate (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.scenario_list = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = sorted(set(args.scenario_list) - set(SCENARIOS + ON_REQUEST))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    try:
        backend_of(args.db)
    except ValueError as exc:
        parser.error(str(exc))
    return args


async def run_all(
    *, db: str, scenarios: list[str], is_quick: bool, workdir: Path, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run ``scenarios`` in order; return the whole report (machine, results, targets)."""
    ctx = BenchContext(db=db, workdir=workdir, is_quick=is_quick, options=options or {})
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench " + shlex.join(sys.argv[1:]),
        "db": _redact(db),
        "backend": backend_of(db),
        "is_quick": is_quick,
        "machine": await describe(db),
        "scenarios": {},
        "failed": {},
    }
    for name in scenarios:
        module = importlib.import_module(f"bench.{name.replace('-', '_')}")
        logger.info("scenario %s: starting (load %s)", name, load_average())
        started = time.perf_counter()
        try:
            result: dict[str, Any] = await module.run(ctx)
        except Exception as exc:
            logger.error("scenario %s failed: %s", name, exc)
            report["failed"][name] = "".join(traceback.format_exception(exc))[-4000:]
            continue
        if result.get("errors"):
            # Some of its runs failed (the peers scenario goes on past one): the run fails, the rest is kept.
            report["failed"][name] = "\n".join(result["errors"])[-4000:]
        result["elapsed_s"] = round(time.perf_counter() - started, 1)
        result["load_average_after"] = load_average()
        report["scenarios"][name] = result
        logger.info("scenario %s: done in %.1fs", name, result["elapsed_s"])
    report["machine"]["load_average_at_end"] = load_average()
    report["targets"] = check_targets(report["scenarios"], is_quick=is_quick)
    return report


def _redact(url: str) -> str:
    """Drop a password from a URL before it goes into a report."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.split("@", 1)
    return f"{scheme}://{credentials.split(':', 1)[0]}@{host}"


def _run_loop(coroutine: Coroutine[Any, Any, _T]) -> _T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    # The store's own log lines (migrations) are noise in a benchmark's output.
    logging.getLogger("scanq").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.profile is not None:
        use_profiler(args.profile)
    options = {
        name: value for name, value in vars(args).items() if name.startswith(("soak_", "peers_")) and value is not None
    }
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        report = _run_loop(
            run_all(
                db=args.db, scenarios=args.scenario_list, is_quick=args.quick, workdir=args.workdir, options=options
            )
        )
    else:
        with tempfile.TemporaryDirectory(prefix="scanq-bench-") as tmp:
            report = _run_loop(
                run_all(
                    db=args.db, scenarios=args.scenario_list, is_quick=args.quick, workdir=Path(tmp), options=options
                )
            )
    print(render_markdown(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
