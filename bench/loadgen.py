"""A closed-loop HTTP/1.1 load generator, run in its own process: ``python -m bench.loadgen …``.

Why not only ``wrk``: it is one more system package to install, and its Lua
hooks make per-request bodies and latency export awkward; the ingest scenario
still runs it as a second judge (``bench/wrk.py``). This client is raw
asyncio ``Protocol`` code on uvloop with keep-alive connections and
pre-encoded requests, so its cost per request is a few microseconds: on this
2-core box it saturates one core at well above the rate of the servers it
measures (check with the ``bare`` row of the ingest scenario, which it drives
at the same concurrency). Each of ``--concurrency`` connections keeps exactly
one request in flight (no pipelining), as wrk does.

Output: one JSON object on stdout (see ``LoadResult``): requests, errors by
status, the measured duration and latency percentiles in milliseconds.
Responses must carry ``Content-Length`` (uvicorn always sends it for the
bodies measured here).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import sys
import time
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

CONNECT_TIMEOUT_S = 5.0
MAX_HEADER_BYTES = 65536


@dataclass(slots=True)
class LoadResult:
    """What one run measured; latencies in milliseconds."""

    requests: int
    errors: int
    duration_s: float
    rate_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 for none)."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[index])


def build_request(
    *, method: str, host: str, port: int, path: str, body: bytes, content_type: str, headers: Sequence[str] = ()
) -> bytes:
    """One pre-encoded HTTP/1.1 keep-alive request; ``headers`` are extra ``Name: value`` lines."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive", *headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Recorder:
    """Shared counters; latencies only count while ``is_measuring`` (after the warm-up)."""

    def __init__(self) -> None:
        self.is_measuring = False
        self.is_stopping = False
        self.latencies_ns = array("q")
        self.statuses: Counter[int] = Counter()


class _Connection(asyncio.Protocol):
    """One keep-alive connection with one request in flight at a time."""

    def __init__(self, requests: Iterator[bytes], recorder: _Recorder, done: asyncio.Future[None]) -> None:
        self._requests = requests
        self._recorder = recorder
        self._done = done
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._expected: int | None = None  # total response length once the header is parsed
        self._status = 0
        self._sent_ns = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._send()

    def _send(self) -> None:
        assert self._transport is not None
        if self._recorder.is_stopping:
            self._transport.close()
            return
        self._sent_ns = time.perf_counter_ns()
        self._transport.write(next(self._requests))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._expected is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEADER_BYTES:
                    self._fail(ValueError("response header too large"))
                return
            self._status, length = _parse_head(bytes(self._buffer[:end]))
            self._expected = end + 4 + length
        if len(self._buffer) < self._expected:
            return
        if len(self._buffer) > self._expected:
            self._fail(ValueError("unexpected bytes after a response (pipelining is not used)"))
            return
        self._buffer.clear()
        self._expected = None
        self._complete()
        self._send()

    def _complete(self) -> None:
        recorder = self._recorder
        if recorder.is_measuring:
            recorder.latencies_ns.append(time.perf_counter_ns() - self._sent_ns)
            recorder.statuses[self._status] += 1

    def _fail(self, exc: Exception) -> None:
        if not self._done.done():
            self._done.set_exception(exc)
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            if self._recorder.is_stopping:
                self._done.set_result(None)
            else:
                self._done.set_exception(exc or ConnectionError("server closed the connection"))


def _parse_head(head: bytes) -> tuple[int, int]:
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return status, int(value.strip())
    raise ValueError(f"response without Content-Length: {lines[0]!r}")


async def run_load(
    *,
    host: str,
    port: int,
    requests: Sequence[bytes],
    concurrency: int,
    duration_s: float,
    warmup_s: float,
) -> LoadResult:
    """Drive ``concurrency`` connections for ``warmup_s`` + ``duration_s``; measure only the last ``duration_s``.

    Args:
        requests: encoded requests, cycled (each connection starts at a different offset).
    """
    loop = asyncio.get_running_loop()
    recorder = _Recorder()
    done: list[asyncio.Future[None]] = []
    transports: list[asyncio.BaseTransport] = []
    for index in range(concurrency):
        future: asyncio.Future[None] = loop.create_future()
        offset = index * len(requests) // max(concurrency, 1)
        cycle = itertools.cycle([*requests[offset:], *requests[:offset]])
        transport, _ = await asyncio.wait_for(
            loop.create_connection(functools.partial(_Connection, cycle, recorder, future), host, port),
            CONNECT_TIMEOUT_S,
        )
        transports.append(transport)
        done.append(future)
    await asyncio.sleep(warmup_s)
    recorder.is_measuring = True
    started = time.perf_counter()
    await _sleep_or_fail(duration_s, done)
    recorder.is_measuring = False
    duration = time.perf_counter() - started
    recorder.is_stopping = True
    for open_transport in transports:
        open_transport.close()
    await asyncio.gather(*done, return_exceptions=True)
    latencies = sorted(value / 1e6 for value in recorder.latencies_ns)
    errors = sum(count for status, count in recorder.statuses.items() if not 200 <= status < 300)
    return LoadResult(
        requests=len(latencies),
        errors=errors,
        duration_s=round(duration, 3),
        rate_per_s=round(len(latencies) / duration, 1) if duration else 0.0,
        p50_ms=round(percentile(latencies, 0.50), 3),
        p90_ms=round(percentile(latencies, 0.90), 3),
        p99_ms=round(percentile(latencies, 0.99), 3),
        max_ms=round(latencies[-1], 3) if latencies else 0.0,
        statuses={str(status): count for status, count in sorted(recorder.statuses.items())},
    )


async def _sleep_or_fail(duration_s: float, done: list[asyncio.Future[None]]) -> None:
    """Sleep ``duration_s``, but raise at once if a connection failed."""
    finished, _ = await asyncio.wait(done, timeout=duration_s, return_when=asyncio.FIRST_EXCEPTION)
    for future in finished:
        future.result()


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--path", action="append", help="request path; repeat to cycle through several")
    parser.add_argument("--paths-file", type=Path, help="file with one request path per line, cycled")
    parser.add_argument("--body-file", type=Path, help="request body (sent with every request)")
    parser.add_argument("--content-type", default="application/json")
    parser.add_argument("--header", action="append", default=[], help="extra 'Name: value' header; repeatable")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run one load and print its ``LoadResult`` as JSON."""
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    paths: list[str] = list(args.path or [])
    if args.paths_file is not None:
        paths += [line for line in args.paths_file.read_text().splitlines() if line]
    body = args.body_file.read_bytes() if args.body_file is not None else b""
    requests = [
        build_request(
            method=args.method,
            host=args.host,
            port=args.port,
            path=path,
            body=body,
            content_type=args.content_type,
            headers=args.header,
        )
        for path in (paths or ["/"])
    ]
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    result = runner(
        run_load(
            host=args.host,
            port=args.port,
            requests=requests,
            concurrency=args.concurrency,
            duration_s=args.duration,
            warmup_s=args.warmup,
        )
    )
    json.dump(result.to_json(), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
