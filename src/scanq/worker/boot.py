"""The worker process: signals, the metrics server, a store opened patiently, and ``--check``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from scanq.collector import calm_collector
from scanq.config import Settings
from scanq.exceptions import StoreUnavailable
from scanq.metrics import WorkerMetrics, make_registry, serve_metrics
from scanq.scanners import ScannerRegistry
from scanq.store import Store, open_store
from scanq.worker.loop import Worker, make_worker_id
from scanq.worker.retry import call_patiently

logger = logging.getLogger("scanq.worker")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run_worker(settings: Settings, *, burst: bool = False) -> Worker | None:
    """Open the store and run one worker until SIGINT/SIGTERM (or drained, with ``burst``); return it.

    A store that cannot be reached at start is retried with backoff (a worker
    may well start before its database); a signal meanwhile returns None.

    Args:
        settings: the process settings.
        burst: drain the queue and return instead of waiting for more work.
    """
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    worker: Worker | None = None

    def on_signal() -> None:
        stopped.set()
        if worker is not None:
            worker.stop()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal)
    try:
        store = await _open_store_patiently(settings.database_url, stopped=stopped)
        if store is None:
            return None
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(store.aclose)
            worker_id = make_worker_id()
            metrics = None
            if settings.metrics_port:
                registry = make_registry()
                metrics = WorkerMetrics(
                    registry, worker_id=worker_id, in_flight=lambda: worker.running if worker else 0
                )
                await stack.enter_async_context(serve_metrics(registry, host=settings.host, port=settings.metrics_port))
            worker = Worker(
                store, ScannerRegistry(settings), settings, worker_id=worker_id, burst=burst, metrics=metrics
            )
            if stopped.is_set():
                worker.stop()
            # A worker keeps a few container objects per running scan: with the collector's default
            # threshold its passes traversed all of them every few dozen scans (a fifth of a drain's CPU).
            calm_collector()
            await worker.run()
            return worker
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


async def _open_store_patiently(url: str, *, stopped: asyncio.Event) -> Store | None:
    """An open store for ``url``, retrying while it is unavailable; None if ``stopped`` is set first."""

    async def open_once() -> Store:
        store = open_store(url)
        await store.open()
        return store

    return await call_patiently(open_once, operation="open", retry_on=StoreUnavailable, stop=stopped)


async def check_store(settings: Settings) -> bool:
    """True when the store at ``settings.database_url`` opens and answers a ping (``scanq worker --check``)."""
    try:
        async with open_store(settings.database_url) as store:
            await store.ping()
    except Exception as exc:
        logger.error("store unreachable: %s", exc)
        return False
    return True


__all__ = ["check_store", "run_worker"]
