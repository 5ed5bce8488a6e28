"""Scenario ``webhooks``: delivery latency, sustained delivery rate, and what an endpoint costs the drain.

A receiver in the harness (a thread: an asyncio HTTP/1.1 server answering 204)
notes when each ``webhook-id`` arrives. The endpoint is registered over HTTP
(``POST /webhooks``) on a real ingest process; real worker processes deliver.

1. **Latency on an idle system**: noop scans submitted one at a time to one
   idle worker; each scan's delivery time minus its ``finished_at`` (the
   store's clock, read from the payload; same machine).
2. **Sustained**: scans submitted at a steady ``SUSTAINED_RATE`` per second for
   ``SUSTAINED_S`` seconds through one worker: deliveries per minute between
   the 10% and 90% marks, the latency over the run (p50, p99, max) and the
   time from the last finish to the last delivery ("behind" = it grew).
3. **Drain cost**: 20,000 queued noop scans drained by one worker without an
   endpoint and with one, interleaved (without, with, without, with): the
   ratio of the store-timestamp rates and the worker CPU per scan.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx

from bench.context import BenchContext, fmt_ms, fmt_rate, summarize_ms
from bench.databases import fresh_database
from bench.loaders import load_scans
from bench.processes import Process, free_port, start_scanq, stop_all, wait_http_ready
from bench.verify import census, wait_until_finished

SETTLE_S = 1.0
DELIVERY_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 600.0
WORKER_CONCURRENCY = 1000
SUSTAINED_RATE = 200  # scans per second: 12,000 a minute, over the 10,000 events a minute asked for
SUSTAINED_S = 60.0
SUSTAINED_BATCH = 20
# The receiver is on loopback: allow-listed (and plain http is then allowed).
WEBHOOK_SETTINGS = {"webhook_allowlist": "127.0.0.0/8"}


class Receiver:
    """A minimal HTTP/1.1 server on 127.0.0.1 in a thread of its own: notes each ``webhook-id`` and answers 204."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: dict[str, float] = {}
        self.finished_at: dict[str, float] = {}
        self.deliveries = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> Receiver:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def latencies_ms(self) -> list[float]:
        return [(self.arrivals[i] - self.finished_at[i]) * 1000.0 for i in self.arrivals if i in self.finished_at]

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = dict(line.split(":", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ":" in line)
                headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                now = time.time()
                webhook_id = headers.get("webhook-id", "")
                self.deliveries += 1
                if webhook_id not in self.arrivals:
                    self.arrivals[webhook_id] = now
                    finished = json.loads(body)["data"].get("finished_at")
                    if finished:
                        self.finished_at[webhook_id] = datetime.fromisoformat(finished).timestamp()
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # the receiver is stopping: its keep-alive connections end here
            pass
        finally:
            writer.close()


async def run(ctx: BenchContext) -> dict[str, Any]:
    """The three measurements; see the module docstring."""
    latency = await _latency(ctx, count=ctx.pick(300, 20))
    sustained = await _sustained(ctx, seconds=ctx.pick(SUSTAINED_S, 5.0))
    drain = await _drain_cost(ctx, count=ctx.pick(20_000, 1_000))
    lat, sus = latency["latency"], sustained["latency"]
    table = [
        [
            f"finish → delivered, idle, {latency['scans']} scans one at a time (p50, p99, max)",
            f"{fmt_ms(lat['p50_ms'])}, {fmt_ms(lat['p99_ms'])}, {fmt_ms(lat['max_ms'])}",
        ],
        [
            f"sustained: {sustained['submitted']:,} scans at {SUSTAINED_RATE}/s, 1 worker: deliveries a minute",
            f"{sustained['per_minute']:,.0f}/min, latency p50 {fmt_ms(sus['p50_ms'])}, p99 {fmt_ms(sus['p99_ms'])}, "
            f"last delivery {sustained['tail_s']:.2f} s after the last finish",
        ],
        [
            f"drain {drain['scans']:,} noop scans, 1 worker: with an endpoint / without (rate, CPU µs/scan)",
            f"{drain['rate_ratio']:.2f}x ({fmt_rate(drain['with_rate'])} vs {fmt_rate(drain['without_rate'])}); "
            f"CPU {drain['with_cpu_us']:.1f} vs {drain['without_cpu_us']:.1f} µs/scan",
        ],
    ]
    return {"latency_idle": latency, "sustained": sustained, "drain": drain, "table": table}


@contextmanager
def _receiver() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


async def _register(ingest: Process, receiver: Receiver) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingest.port}", timeout=30) as client:
        response = await client.post("/webhooks", json={"url": receiver.url, "description": "bench receiver"})
        response.raise_for_status()


async def _latency(ctx: BenchContext, *, count: int) -> dict[str, Any]:
    async with fresh_database(ctx.db, label="webhooks-latency", workdir=ctx.workdir) as url:
        ingest = start_scanq("ingest", database_url=url, log_dir=ctx.log_dir, settings=WEBHOOK_SETTINGS)
        worker = start_scanq("worker", database_url=url, log_dir=ctx.log_dir, settings=WEBHOOK_SETTINGS)
        try:
            await wait_http_ready(ingest)
            with _receiver() as receiver:
                await _register(ingest, receiver)
                await asyncio.sleep(SETTLE_S)
                worker.check_alive()
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingest.port}", timeout=30) as client:
                    for _ in range(count):
                        before = len(receiver.arrivals)
                        response = await client.post("/scans", json={"scanner": "noop"})
                        response.raise_for_status()
                        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
                        while len(receiver.arrivals) == before:
                            if time.monotonic() > deadline:
                                raise TimeoutError("a webhook was not delivered within 30 s")
                            await asyncio.sleep(0.001)
                        await asyncio.sleep(0.02)
                latencies = receiver.latencies_ms()
        finally:
            await stop_all([ingest, worker])
    return {"scans": count, "latency": summarize_ms(latencies)}


async def _sustained(ctx: BenchContext, *, seconds: float) -> dict[str, Any]:
    async with fresh_database(ctx.db, label="webhooks-sustained", workdir=ctx.workdir) as url:
        ingest = start_scanq("ingest", database_url=url, log_dir=ctx.log_dir, settings=WEBHOOK_SETTINGS)
        worker = start_scanq("worker", database_url=url, log_dir=ctx.log_dir, settings=WEBHOOK_SETTINGS)
        try:
            await wait_http_ready(ingest)
            with _receiver() as receiver:
                await _register(ingest, receiver)
                await asyncio.sleep(SETTLE_S)
                submitted = 0
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingest.port}", timeout=30) as client:
                    started = time.monotonic()
                    while time.monotonic() - started < seconds:
                        body = {"scans": [{"scanner": "noop"}] * SUSTAINED_BATCH}
                        response = await client.post("/scans/batch", json=body)
                        response.raise_for_status()
                        submitted += SUSTAINED_BATCH
                        await asyncio.sleep(max(0.0, started + submitted / SUSTAINED_RATE - time.monotonic()))
                deadline = time.monotonic() + DELIVERY_TIMEOUT_S * 4
                while len(receiver.arrivals) < submitted:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{len(receiver.arrivals)} of {submitted} delivered")
                    await asyncio.sleep(0.05)
                arrivals = sorted(receiver.arrivals.values())
                finishes = sorted(receiver.finished_at.values())
                latencies = receiver.latencies_ms()
        finally:
            await stop_all([ingest, worker])
    low, high = arrivals[len(arrivals) // 10], arrivals[len(arrivals) * 9 // 10]
    marked = len(arrivals) * 9 // 10 - len(arrivals) // 10
    per_minute = marked / (high - low) * 60.0 if high > low else 0.0
    return {
        "submitted": submitted,
        "seconds": seconds,
        "per_minute": round(per_minute, 1),
        "latency": summarize_ms(latencies),
        "tail_s": round(arrivals[-1] - finishes[-1], 3),
    }


async def _drain_cost(ctx: BenchContext, *, count: int) -> dict[str, Any]:
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for with_endpoint in (False, True, False, True):
        runs[with_endpoint].append(await _drain(ctx, count=count, with_endpoint=with_endpoint))

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    without_rate = mean([r["rate_per_s"] for r in runs[False]])
    with_rate = mean([r["rate_per_s"] for r in runs[True]])
    return {
        "scans": count,
        "runs": {"without": runs[False], "with": runs[True]},
        "without_rate": round(without_rate, 1),
        "with_rate": round(with_rate, 1),
        "rate_ratio": round(with_rate / without_rate, 3) if without_rate else 0.0,
        "without_cpu_us": round(mean([r["cpu_us_per_scan"] for r in runs[False]]), 2),
        "with_cpu_us": round(mean([r["cpu_us_per_scan"] for r in runs[True]]), 2),
    }


async def _drain(ctx: BenchContext, *, count: int, with_endpoint: bool) -> dict[str, float]:
    from scanq.store import open_store

    label = "webhooks-drain-with" if with_endpoint else "webhooks-drain-without"
    async with fresh_database(ctx.db, label=label, workdir=ctx.workdir) as url, open_store(url) as store:
        processes: list[Process] = []
        try:
            with _receiver() as receiver:
                if with_endpoint:
                    ingest = start_scanq("ingest", database_url=url, log_dir=ctx.log_dir, settings=WEBHOOK_SETTINGS)
                    processes.append(ingest)
                    await wait_http_ready(ingest)
                    await _register(ingest, receiver)
                await load_scans(store, count=count, scanner="noop")
                settings = {**WEBHOOK_SETTINGS, "concurrency": str(WORKER_CONCURRENCY)}
                worker = start_scanq("worker", database_url=url, log_dir=ctx.log_dir, settings=settings)
                processes.append(worker)
                await wait_until_finished(store, count=count, timeout_s=DRAIN_TIMEOUT_S, processes=[worker])
                cpu_s = worker.cpu_seconds()
                found = await census(store)
        finally:
            await stop_all(processes)
    span = found.span_s
    return {
        "rate_per_s": round(count / span, 1) if span else 0.0,
        # Start-up included (the same in both runs): this compares the two, it is not the drain's own figure.
        "cpu_us_per_scan": round(cpu_s / count * 1e6, 2),
        "delivered_during_drain": float(len(receiver.arrivals)),
    }
