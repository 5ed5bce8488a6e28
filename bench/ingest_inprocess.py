"""The ingest app's own CPU per ``POST /scans``, in-process: no uvicorn, no socket, a store that does nothing.

``python -m bench.ingest_inprocess [--requests 10000] [--rounds 5]`` calls the ingest app's ASGI entry
directly with a prebuilt scope and body (the request ``bench.ingest`` sends), over a store whose ``create``
only builds the stored record (``accepted_scan``, as the SQLite and PostgreSQL stores do), and prints the
process CPU time per request, the median of the rounds. That is scanq's part of a request (the hot path,
cross-site rules, metrics, the service, the answer) without uvicorn's, the edge's or a database's, and it
moves little with the machine's load: an A/B of two source trees runs it under each ``PYTHONPATH``
(``PYTHONPATH=/tmp/before/src python -m bench.ingest_inprocess``), alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import Any

from starlette.types import Message

from scanq.api import create_ingest_app
from scanq.config import Settings
from scanq.models import Created, NewScan
from scanq.store.base import accepted_scan
from scanq.store.memory import MemoryStore

BODY = b'{"target": "example.com", "scanner": "noop"}'
HEADERS = [
    (b"host", b"127.0.0.1:10550"),
    (b"connection", b"keep-alive"),
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]
WARMUP_REQUESTS = 2000


class NullStore(MemoryStore):
    """A memory store whose ``create`` keeps nothing: the record a database store would answer, built."""

    async def create(self, *, scan: NewScan) -> Created:
        return Created(scan=accepted_scan(scan, updated_at=scan.created_at), is_new=True)


def http_scope(
    headers: list[tuple[bytes, bytes]] = HEADERS, *, path: str = "/scans", method: str = "POST"
) -> dict[str, Any]:
    """The ASGI scope uvicorn would pass for one request from 127.0.0.1 to the ingest port."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 10550),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "state": {},
    }


async def measure(*, requests: int, rounds: int) -> list[float]:
    """CPU µs per request of each round."""
    message: Message = {"type": "http.request", "body": BODY, "more_body": False}
    statuses: list[int] = []

    async def receive() -> Message:
        return message

    async def send(sent: Message) -> None:
        if sent["type"] == "http.response.start":
            statuses.append(sent["status"])

    async with NullStore("memory://ingest-inprocess") as store:
        app = create_ingest_app(Settings(database_url="memory://ingest-inprocess"), store=store)
        for _ in range(WARMUP_REQUESTS):
            await app(http_scope(), receive, send)
        per_request: list[float] = []
        for _ in range(rounds):
            statuses.clear()
            started = time.process_time()
            for _ in range(requests):
                await app(http_scope(), receive, send)
            per_request.append((time.process_time() - started) / requests * 1e6)
            if statuses != [202] * requests:
                raise RuntimeError(f"not every submission was accepted: {sorted(set(statuses))}")
    return per_request


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_inprocess", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rounds = asyncio.run(measure(requests=args.requests, rounds=args.rounds))
    print(f"{statistics.median(rounds):.1f} µs CPU per request (rounds: {', '.join(f'{r:.1f}' for r in rounds)})")


if __name__ == "__main__":
    main()
