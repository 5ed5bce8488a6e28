"""PostgreSQL for tests: a real server, a fresh schema per test.

Where the server comes from, first match wins:

1. ``SCANQ_TEST_POSTGRES_URL`` (CI sets it); with ``CREATEDB`` the session makes
   its own database, without it the tests share the URL's database;
2. a server at 127.0.0.1:5432 with trust auth for ``root`` or ``postgres``;
3. a throwaway cluster started from the installed binaries (``initdb``/``pg_ctl``)
   in a temp dir, as the ``postgres`` user when the tests run as root (the
   server refuses to run as root);
4. none: skip locally, fail under ``CI=true``.

The session creates one database; each test gets its own uuid-named schema
in it (``?search_path=`` in the URL), migrated, and dropped at teardown. That
costs about a tenth of ``CREATE DATABASE … TEMPLATE``, which copies the
template's catalog through the WAL. ``pg_cluster`` gives a test a cluster of
its own that it may stop and start (restart tests).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from scanq.store.postgres import migrate
from tests.servers.availability import backend_unavailable

LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 5432
LOCAL_USERS = ("root", "postgres")
CONNECT_TIMEOUT_S = 3.0
PG_CTL_TIMEOUT_S = 60
SERVER_USER = "postgres"
DROP_LOCK_TIMEOUT_MS = 10_000
# Searched after $PATH for initdb/pg_ctl (Debian keeps them out of PATH).
BINARY_DIRS = (
    "/usr/local/bin",
    "/usr/lib/postgresql/17/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/15/bin",
)

T = TypeVar("T")


def run_async(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync fixture code, in a thread with its own event loop.

    Fixtures may be set up while a test's loop exists; a separate thread never clashes with it.
    """

    async def main() -> T:
        return await make()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


def with_database(url: str, database: str, **params: str) -> str:
    """``url`` pointing at another database on the same server, with extra query parameters."""
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query), *params.items()])
    return urlunsplit(parts._replace(path=f"/{database}", query=query))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCAL_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in BINARY_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


class PostgresCluster:
    """A PostgreSQL cluster in a temp dir, owned by whoever made it: ``start()``, ``stop()``, ``url``.

    Args:
        port: the TCP port (a free one by default); kept across stop/start so URLs stay valid.
    """

    def __init__(self, *, port: int | None = None) -> None:
        initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError("initdb/pg_ctl not found")
        self._initdb, self._pg_ctl = initdb, pg_ctl
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            try:
                pwd.getpwnam(SERVER_USER)
            except KeyError:
                runuser = None
            if runuser is None:
                raise RuntimeError(f"running as root and cannot switch to a {SERVER_USER!r} user with runuser")
            self._as_user = [runuser, "-u", SERVER_USER, "--"]
        self.port = port or free_port()
        # Not under pytest's tmp_path: its 0700 parents would keep the postgres user out.
        self.directory = Path(tempfile.mkdtemp(prefix="scanq-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        if self._as_user:
            shutil.chown(self.directory, user=SERVER_USER)
        self._run(self._initdb, "-D", str(self.data), "-U", SERVER_USER, "-A", "trust", "-E", "UTF8", "--no-sync")
        self.is_running = False

    @property
    def url(self) -> str:
        return f"postgresql://{SERVER_USER}@{LOCAL_HOST}:{self.port}/postgres"

    def start(self) -> None:
        options = f"-c listen_addresses={LOCAL_HOST} -c port={self.port} -c unix_socket_directories={self.directory}"
        self._run(
            self._pg_ctl,
            *("-D", str(self.data), "-l", str(self.log), "-o", options),
            *("-w", "-t", str(PG_CTL_TIMEOUT_S), "start"),
        )
        self.is_running = True

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients, then a clean shutdown)."""
        self._run(self._pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", str(PG_CTL_TIMEOUT_S), "stop")
        self.is_running = False

    def remove(self) -> None:
        if self.is_running:
            self.stop(mode="immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self._as_user, *command], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}{log[-2000:]}")


@dataclass(frozen=True)
class PostgresServer:
    """A server the test session may use, and the session's own database on it.

    Each test gets a uuid-named schema in that database, chosen by the URL's
    ``search_path`` parameter (asyncpg sends unknown URL parameters as server
    settings), so every scanq process started with the URL lands in it.
    """

    admin_url: str
    database: str

    def create_schema(self, *, with_tables: bool = True) -> tuple[str, str]:
        """A new schema, migrated or empty (migration tests); returns its name and its store URL."""
        name = f"scanq_t_{uuid.uuid4().hex[:16]}"
        url = with_database(self.admin_url, self.database, search_path=name)
        run_async(lambda: _create_schema(url, name, with_tables=with_tables))
        return name, url

    def drop_schema(self, name: str) -> None:
        run_async(lambda: _execute(with_database(self.admin_url, self.database), _drop_schema_sql(name)))


def _drop_schema_sql(name: str) -> str:
    # A process a test left behind may still hold a lock; never hang teardown on it
    # (the whole session database is dropped WITH (FORCE) at the end anyway).
    return f"SET lock_timeout = '{DROP_LOCK_TIMEOUT_MS}ms'; DROP SCHEMA IF EXISTS \"{name}\" CASCADE"


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _create_schema(url: str, name: str, *, with_tables: bool) -> None:
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        await conn.execute(f'CREATE SCHEMA "{name}"')
        if with_tables:
            await migrate(conn)
    finally:
        await conn.close()


async def _reachable_local_url() -> str | None:
    for user in LOCAL_USERS:
        url = f"postgresql://{user}@{LOCAL_HOST}:{LOCAL_PORT}/postgres"
        try:
            conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, asyncpg.PostgresError):
            continue
        await conn.close()
        return url
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server and database (see the module docstring for where they come from)."""
    cluster: PostgresCluster | None = None
    admin_url = os.environ.get("SCANQ_TEST_POSTGRES_URL") or run_async(_reachable_local_url)
    if admin_url is None:
        try:
            cluster = PostgresCluster()
            cluster.start()
        except RuntimeError as exc:
            if cluster is not None:
                cluster.remove()
            backend_unavailable(f"no PostgreSQL server and cannot start one: {exc}")
        admin_url = cluster.url
    database = f"scanq_s_{uuid.uuid4().hex[:16]}"
    try:
        run_async(lambda: _execute(admin_url, f'CREATE DATABASE "{database}"'))
    except asyncpg.InsufficientPrivilegeError:
        # A role without CREATEDB: share the URL's own database (tests still get a schema each).
        database = urlsplit(admin_url).path.lstrip("/") or "postgres"
        yield PostgresServer(admin_url=admin_url, database=database)
        if cluster is not None:
            cluster.remove()
        return
    try:
        yield PostgresServer(admin_url=admin_url, database=database)
    finally:
        run_async(lambda: _execute(admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        if cluster is not None:
            cluster.remove()


@pytest.fixture
def postgres_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A store URL on a fresh schema with scanq's tables, dropped after the test."""
    name, url = postgres_server.create_schema()
    try:
        yield url
    finally:
        postgres_server.drop_schema(name)


@pytest.fixture
def postgres_empty_database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A store URL on a fresh empty schema (migration tests), dropped after the test."""
    name, url = postgres_server.create_schema(with_tables=False)
    try:
        yield url
    finally:
        postgres_server.drop_schema(name)


@pytest.fixture
def pg_cluster() -> Iterator[PostgresCluster]:
    """A running throwaway cluster this test owns: it may ``stop()`` and ``start()`` it."""
    try:
        cluster = PostgresCluster()
    except RuntimeError as exc:
        backend_unavailable(f"cannot start a PostgreSQL cluster: {exc}")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
