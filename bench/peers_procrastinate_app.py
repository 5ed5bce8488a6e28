"""The procrastinate app the ``peers`` scenario's worker runs: one no-op task on a psycopg connection pool.

The worker is procrastinate's own CLI::

    python -m procrastinate --app bench.peers_procrastinate_app.app worker --concurrency C

The database comes from ``BENCH_PEER_DSN``; the pool holds
``BENCH_PEER_POOL_SIZE`` connections (the scenario sizes it to the
concurrency, so the jobs the worker runs at once never wait for a connection).
"""

from __future__ import annotations

import os

import procrastinate

DSN_ENV = "BENCH_PEER_DSN"
POOL_SIZE_ENV = "BENCH_PEER_POOL_SIZE"
DEFAULT_POOL_SIZE = 4
TASK_NAME = "noop"
APP_PATH = "bench.peers_procrastinate_app.app"


def make_app(dsn: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> procrastinate.App:
    """An app on ``dsn`` with the ``noop`` task.

    Args:
        dsn: a libpq connection string or ``postgresql://`` URL (empty: libpq's ``PG*`` variables).
        pool_size: the pool's fixed number of connections.
    """
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=dsn, min_size=pool_size, max_size=pool_size)
    )

    @app.task(name=TASK_NAME)
    async def noop() -> None:
        return None

    return app


app = make_app(os.environ.get(DSN_ENV, ""), pool_size=int(os.environ.get(POOL_SIZE_ENV, DEFAULT_POOL_SIZE)))
