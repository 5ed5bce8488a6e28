"""The soak's submitter, run in its own process: ``python -m bench.soak_submit …``.

Open loop: scan ``i`` is due at ``start + i / rate`` whatever happened to the
ones before, so a slow server shows as growing latency and schedule lag
instead of a politely lower rate (a closed loop would hide it). Requests go
over ``--connections`` keep-alive HTTP/1.1 connections, one in flight per
connection; when every connection is busy a due scan waits, and that wait is
its lag. The schedule never owes more than ``MAX_DEBT_S``: past that it slips
(the lag is still recorded), so a server that was slowed down for a while
(a busy machine) is not then flooded to catch up, and the offered rate stays
at most ``rate`` all along.

Every answer becomes one line of ``--out``, flushed about twice a second so
the harness can read the file while it grows::

    <answered at, epoch s> <latency ms> <lag ms> <HTTP status> <scan id or ->

Only a 202 with a scan id is an acknowledged scan (the scan the soak must
find again). A connection the server closes or resets is reopened; the
request it carried counts as status 0 and is not retried (its scan may or
may not exist: it was never acknowledged). At the end one JSON object goes to
stdout: how many were sent, acknowledged and refused, and the mean rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import msgspec

CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0
FLUSH_EVERY_S = 0.5
MAX_DEBT_S = 1.0
MAX_HEADER_BYTES = 65536
BODY = json.dumps({"scanner": "noop", "target": "soak.example"}).encode()


class _Answer(msgspec.Struct):
    scan_id: str | None = None


_decode = msgspec.json.Decoder(_Answer).decode


class Submitter:
    """Sends ``count`` scans at ``rate`` per second and records each answer."""

    def __init__(self, *, host: str, port: int, count: int, rate: float, out: IO[str]) -> None:
        self._host = host
        self._port = port
        self._count = count
        self._rate = rate
        self._out = out
        self._next = 0
        self._start = 0.0
        self.statuses: Counter[int] = Counter()
        self.max_lag_ms = 0.0
        head = (
            f"POST /scans HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: keep-alive\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
        )
        self._request = head.encode() + BODY

    async def run(self, connections: int) -> float:
        """Submit everything; return the seconds it took."""
        self._start = time.monotonic()
        flusher = asyncio.create_task(self._flush_often())
        try:
            await asyncio.gather(*(self._connection() for _ in range(connections)))
        finally:
            flusher.cancel()
            self._out.flush()
        return time.monotonic() - self._start

    async def _flush_often(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            self._out.flush()

    async def _connection(self) -> None:
        reader, writer = await self._connect()
        try:
            while self._next < self._count:
                index = self._next
                self._next += 1
                due = self._start + index / self._rate
                debt = time.monotonic() - due - MAX_DEBT_S
                if debt > 0:
                    self._start += debt  # slip the whole schedule instead of bursting to catch up
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                sent = time.monotonic()
                lag_ms = max(0.0, (sent - due) * 1000.0)
                self.max_lag_ms = max(self.max_lag_ms, lag_ms)
                try:
                    writer.write(self._request)
                    status, body = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT_S)
                except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                    writer.close()
                    self._record(sent, lag_ms, 0, None)
                    reader, writer = await self._connect()
                    continue
                scan_id = _decode(body).scan_id if status == 202 else None
                self._record(sent, lag_ms, status, scan_id)
        finally:
            writer.close()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(self._host, self._port), CONNECT_TIMEOUT_S)

    def _record(self, sent: float, lag_ms: float, status: int, scan_id: str | None) -> None:
        now = time.monotonic()
        self.statuses[status] += 1
        self._out.write(f"{time.time():.6f} {(now - sent) * 1000.0:.3f} {lag_ms:.3f} {status} {scan_id or '-'}\n")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEADER_BYTES:
        raise ValueError("response header too large")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return status, await reader.readexactly(length)


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_submit", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True, help="scans to submit")
    parser.add_argument("--rate", type=float, required=True, help="scans per second (open loop)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", type=Path, required=True, help="one line per answer (appended)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Submit, then print a JSON summary."""
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    with args.out.open("a", buffering=1 << 20) as out:
        submitter = Submitter(host=args.host, port=args.port, count=args.count, rate=args.rate, out=out)
        elapsed = runner(submitter.run(args.connections))
    acknowledged = submitter.statuses.get(202, 0)
    summary = {
        "sent": sum(submitter.statuses.values()),
        "acknowledged": acknowledged,
        "statuses": {str(k): v for k, v in sorted(submitter.statuses.items())},
        "elapsed_s": round(elapsed, 3),
        "rate_per_s": round(acknowledged / elapsed, 1) if elapsed else 0.0,
        "max_lag_ms": round(submitter.max_lag_ms, 1),
        # How far behind its schedule the run ended: the time the server could not keep up.
        "behind_s": round(max(0.0, elapsed - args.count / args.rate), 1),
    }
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
