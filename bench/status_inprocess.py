"""The status app's own CPU per read, in-process: no uvicorn, no socket, a real SQLite store.

``python -m bench.status_inprocess --db /tmp/status.db [--size 100000] [--reads by_id,list] [--rounds 5]``
fills the SQLite file once (``bench.loaders``, as ``bench.status`` does; an existing file is reused),
then calls the status app's ASGI entry directly with the scopes uvicorn would pass, from
``--concurrency`` tasks at once (64, as the 64-client benchmark), and prints the process CPU time per read
(every thread: the event loop's and SQLite's readers), the median of the rounds. That is scanq's part
of a read (the app, the service, the store's hand-off and query, the answer) without uvicorn's, the
edge's or the socket's. An A/B of two source trees runs it under each ``PYTHONPATH``
(``PYTHONPATH=/tmp/before/src python -m bench.status_inprocess …``), alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.types import Message

from bench.loaders import load_scans, mix_statuses
from bench.status import LIST_LIMIT
from scanq.api import create_status_app
from scanq.config import Settings
from scanq.cursors import encode_page_cursor
from scanq.store import open_store
from scanq.store.base import encode_cursor

WARMUP_READS = 2000
HEADERS = [(b"host", b"127.0.0.1:10551"), (b"user-agent", b"bench"), (b"accept", b"*/*")]


def read_scope(target: str) -> dict[str, Any]:
    """The ASGI scope uvicorn would pass for ``GET target`` from 127.0.0.1 to the status port."""
    path, _, query = target.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 10551),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": HEADERS,
        "state": {},
    }


async def fill(url: str, size: int, sample_file: Path) -> list[str]:
    """The sample of stored ids (the file's, when it was filled before)."""
    if sample_file.exists():
        return sample_file.read_text().split()
    async with open_store(url) as store:
        sample = await load_scans(store, count=size, sample_every=max(1, size // 2000))
        await mix_statuses(store, count=size)
    sample_file.write_text("\n".join(sample))
    return sample


async def measure(
    *,
    db: Path,
    size: int,
    reads: Sequence[str],
    requests: int,
    rounds: int,
    concurrency: int,
    warmup: int = WARMUP_READS,
) -> dict[str, list[float]]:
    """CPU µs per read of each round, per kind of read."""
    url = f"sqlite:///{db}"
    sample = await fill(url, size, db.with_suffix(".ids"))
    middle = sorted(sample)[len(sample) // 2]
    targets = {
        "by_id": [f"/{scan_id}" for scan_id in sample],
        "by_id_long": [f"/scans/{scan_id}" for scan_id in sample],
        "list": [
            f"/scans?limit={LIST_LIMIT}",
            f"/scans?status=Complete&limit={LIST_LIMIT}",
            f"/scans?limit={LIST_LIMIT}&cursor={encode_page_cursor(encode_cursor(middle), status=None)}",
        ],
    }
    statuses: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(sent: Message) -> None:
        if sent["type"] == "http.response.start":
            statuses.append(sent["status"])

    result: dict[str, list[float]] = {}
    async with open_store(url) as store:
        app = create_status_app(Settings(database_url=url), store=store)

        async def client(paths: list[str], start: int, count: int) -> None:
            for n in range(count):
                await app(read_scope(paths[(start + n * 7) % len(paths)]), receive, send)

        async def run(paths: list[str], total: int) -> None:
            each = max(1, total // concurrency)
            await asyncio.gather(*(client(paths, k * 31, each) for k in range(concurrency)))

        for read in reads:
            paths = targets[read]
            await run(paths, warmup)
            per_read: list[float] = []
            for _ in range(rounds):
                statuses.clear()
                started = time.process_time()
                await run(paths, requests)
                per_read.append((time.process_time() - started) / len(statuses) * 1e6)
                if set(statuses) != {200}:
                    raise RuntimeError(f"not every read was answered 200: {sorted(set(statuses))}")
            result[read] = per_read
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.status_inprocess", description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="the SQLite file (filled on first use)")
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--reads", default="by_id,list", help="comma list of by_id, by_id_long, list")
    parser.add_argument("--requests", type=int, default=6400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    reads = [read for read in args.reads.split(",") if read]
    result = asyncio.run(
        measure(
            db=args.db.resolve(),
            size=args.size,
            reads=reads,
            requests=args.requests,
            rounds=args.rounds,
            concurrency=args.concurrency,
        )
    )
    for read, rounds in result.items():
        shown = ", ".join(f"{r:.1f}" for r in rounds)
        print(f"{read}: {statistics.median(rounds):.1f} µs CPU per read (rounds: {shown})")


if __name__ == "__main__":
    main()
