"""PostgreSQL under delete-based retention: do autovacuum and retention keep the table and its indexes flat?

Scans are inserted, claimed and finished at ``--rate`` per second through ``PostgresStore``
(``create_many``, ``claim``, ``finish``: the queue's real statements) while the worker's own
retention loop (``scanq.worker.retention.retention_loop``) deletes Complete scans older than
``--retention-s``. Every ``--sample-s`` it records the table's heap and total size, the claim
index, the retention index and the primary key, live and dead tuples, autovacuum runs, and the
p50/p99 of the claim and finish calls of that interval. docs/postgres.md quotes a run.

    .venv/bin/python -m bench.retention_pg --db postgresql://root@127.0.0.1:5432/postgres \\
        --rate 500 --retention-s 60 --minutes 6 --json /tmp/retention.json

The run gets a fresh database, dropped afterwards. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from bench.databases import fresh_database
from scanq.ids import new_scan_id
from scanq.metrics import WorkerMetrics, make_registry
from scanq.models import Finish, Lease, NewScan, Outcome, ScanStatus
from scanq.retention import RetentionPolicy
from scanq.store.postgres import PostgresStore
from scanq.worker.retention import retention_loop

TICKS_PER_S = 10
SIZES = """
SELECT pg_relation_size('scans') AS heap, pg_total_relation_size('scans') AS total,
       pg_relation_size('scans_claimable') AS claim_index, pg_relation_size('scans_finished') AS finished_index,
       pg_relation_size('scans_pkey') AS primary_key, s.n_live_tup AS live, s.n_dead_tup AS dead,
       s.autovacuum_count AS autovacuums, (SELECT count(*) FROM scans) AS rows
FROM pg_stat_user_tables AS s WHERE s.relname = 'scans'
"""


@dataclass
class Sample:
    """One interval of the run."""

    t_s: float
    rows: int
    heap_mib: float
    total_mib: float
    claim_index_kib: float
    finished_index_mib: float
    primary_key_mib: float
    live: int
    dead: int
    autovacuums: int
    finished: int
    pruned: int
    claim_p50_ms: float
    claim_p99_ms: float
    finish_p99_ms: float


@dataclass
class Load:
    """What the load loop did since the last sample."""

    finished: int = 0
    claim_ms: list[float] = field(default_factory=list)
    finish_ms: list[float] = field(default_factory=list)

    def take(self) -> Load:
        taken = Load(self.finished, self.claim_ms, self.finish_ms)
        self.finished, self.claim_ms, self.finish_ms = 0, [], []
        return taken


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load_loop(store: PostgresStore, *, rate: int, load: Load) -> None:
    """Create, claim and finish ``rate`` scans a second, in ``TICKS_PER_S`` slices."""
    loop = asyncio.get_running_loop()
    per_tick = max(1, rate // TICKS_PER_S)
    next_tick = loop.time()
    while True:
        news = [NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), scanner="noop") for _ in range(per_tick)]
        await store.create_many(scans=news)
        started = time.perf_counter()
        claimed = await store.claim(worker_id="bench", limit=per_tick, lease_s=60)
        load.claim_ms.append((time.perf_counter() - started) * 1000)
        finishes = [
            Finish(
                lease=Lease(scan_id=s.scan_id, worker_id="bench", attempt=s.attempt),
                outcome=Outcome.COMPLETE,
                result={},
            )
            for s in claimed
        ]
        started = time.perf_counter()
        applied = await store.finish(finishes=finishes)
        load.finish_ms.append((time.perf_counter() - started) * 1000)
        load.finished += sum(applied)
        next_tick += 1 / TICKS_PER_S
        await asyncio.sleep(max(0.0, next_tick - loop.time()))


def pruned_so_far(metrics: WorkerMetrics) -> int:
    return int(metrics.pruned.labels(status=ScanStatus.COMPLETE.value)._value.get())


async def run(db: str, *, rate: int, retention_s: float, minutes: float, sample_s: float) -> list[Sample]:
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory() as workdir:
        async with fresh_database(db, label="retention", workdir=Path(workdir)) as url:
            async with PostgresStore(url) as store:
                metrics = WorkerMetrics(make_registry(process_metrics=False), worker_id="bench", in_flight=lambda: 0)
                policy = RetentionPolicy(ages={ScanStatus.COMPLETE: timedelta(seconds=retention_s)})
                load = Load()
                tasks = [
                    asyncio.create_task(load_loop(store, rate=rate, load=load)),
                    asyncio.create_task(retention_loop(store=store, policy=policy, owner="bench", metrics=metrics)),
                ]
                conn = await asyncpg.connect(url)
                began = time.monotonic()
                pruned_before = 0
                try:
                    while time.monotonic() - began < minutes * 60:
                        await asyncio.sleep(sample_s)
                        row = await conn.fetchrow(SIZES)
                        assert row is not None
                        taken = load.take()
                        pruned = pruned_so_far(metrics)
                        samples.append(
                            Sample(
                                t_s=round(time.monotonic() - began, 1),
                                rows=row["rows"],
                                heap_mib=round(row["heap"] / 2**20, 2),
                                total_mib=round(row["total"] / 2**20, 2),
                                claim_index_kib=round(row["claim_index"] / 2**10, 1),
                                finished_index_mib=round(row["finished_index"] / 2**20, 2),
                                primary_key_mib=round(row["primary_key"] / 2**20, 2),
                                live=row["live"],
                                dead=row["dead"],
                                autovacuums=row["autovacuums"],
                                finished=taken.finished,
                                pruned=pruned - pruned_before,
                                claim_p50_ms=round(statistics.median(taken.claim_ms or [0.0]), 2),
                                claim_p99_ms=round(percentile(taken.claim_ms, 0.99), 2),
                                finish_p99_ms=round(percentile(taken.finish_ms, 0.99), 2),
                            )
                        )
                        pruned_before = pruned
                        print(markdown_row(samples[-1]), flush=True)
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    await conn.close()
    return samples


def markdown_header() -> str:
    names = list(Sample.__dataclass_fields__)
    return "| " + " | ".join(names) + " |\n|" + "---|" * len(names)


def markdown_row(sample: Sample) -> str:
    return "| " + " | ".join(str(value) for value in asdict(sample).values()) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.retention_pg", description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="postgresql://root@127.0.0.1:5432/postgres")
    parser.add_argument("--rate", type=int, default=500, help="scans created and finished per second")
    parser.add_argument("--retention-s", type=float, default=60.0, help="Complete scans are kept this long")
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="write the samples here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(markdown_header(), flush=True)
    samples = asyncio.run(
        run(args.db, rate=args.rate, retention_s=args.retention_s, minutes=args.minutes, sample_s=args.sample_s)
    )
    if args.json:
        meta: dict[str, Any] = {"rate": args.rate, "retention_s": args.retention_s, "minutes": args.minutes}
        args.json.write_text(json.dumps({"run": meta, "samples": [asdict(s) for s in samples]}, indent=1))


if __name__ == "__main__":
    main()
