"""``python -m bench.peers_pgqueuer_worker``: one pgqueuer worker process with a no-op entrypoint.

What ``pgq run app:factory --batch-size N`` does (``pgqueuer.run`` is the
function that command calls, on uvloop as the CLI does), through pgqueuer's
documented API only: a factory yielding ``PgQueuer.from_asyncpg_connection``
(asyncpg, one connection per manager: the driver and setup pgqueuer's
performance guide recommends for a ``QueueManager``). ``--managers M`` runs M
of them in this one process, each with its own connection, as pgqueuer's own
``tools/benchmark.py`` does with ``--dequeue M``. SIGTERM or SIGINT stops
them all (pgqueuer flushes its buffered status log on the way out).

The database comes from ``BENCH_PEER_DSN``, never the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg
import pgqueuer
from pgqueuer import PgQueuer
from pgqueuer.models import Job

DSN_ENV = "BENCH_PEER_DSN"
ENTRYPOINT = "noop"


def factory(dsn: str) -> Callable[[], AbstractAsyncContextManager[PgQueuer]]:
    """A ``pgq run`` factory: one asyncpg connection, one ``PgQueuer`` with the no-op entrypoint."""

    @asynccontextmanager
    async def create() -> AsyncIterator[PgQueuer]:
        connection = await asyncpg.connect(dsn)
        try:
            pgq = PgQueuer.from_asyncpg_connection(connection)

            @pgq.entrypoint(ENTRYPOINT)
            async def noop(job: Job) -> None:
                return None

            yield pgq
        finally:
            await connection.close()

    return create


async def serve(*, dsn: str, batch_size: int, managers: int) -> None:
    """Run ``managers`` queue managers until SIGTERM/SIGINT."""
    shutdown = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, shutdown.set)
    await asyncio.gather(
        *(pgqueuer.run(factory(dsn), batch_size=batch_size, shutdown=shutdown) for _ in range(managers))
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers_pgqueuer_worker")
    parser.add_argument("--batch-size", type=int, default=10, help="jobs per dequeue (pgq run --batch-size)")
    parser.add_argument("--managers", type=int, default=1, help="queue managers in this process, a connection each")
    args = parser.parse_args(argv)
    dsn = os.environ[DSN_ENV]
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(dsn=dsn, batch_size=args.batch_size, managers=args.managers))
    else:
        uvloop.run(serve(dsn=dsn, batch_size=args.batch_size, managers=args.managers))


if __name__ == "__main__":
    main()
