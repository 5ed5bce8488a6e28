"""MongoDB for tests: a real server over the wire protocol, one fresh database per test.

Where the server comes from, first match wins:

1. ``SCANQ_TEST_MONGO_URL`` (a real ``mongod`` replica set or ``mongos``; a standalone server
   runs all but the tests that need change streams or transactions, see docs/mongodb.md);
2. SecantusDB (PyPI ``secantusdb``: a MongoDB wire-protocol server on WiredTiger) started
   once per session on a free port in a temp dir. By default it advertises itself as a
   one-node replica set, so change streams and transactions work;
3. none: skip locally, fail under ``CI=true``.

Each test gets a uuid-named database, dropped at teardown. SecantusDB is a correctness
surrogate, not a fast server: tests keep their data small.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from tests.servers.availability import backend_unavailable

LOCAL_HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
# A free port can be taken by another process (another xdist worker's server) before the server binds it.
START_ATTEMPTS = 3
STOP_TIMEOUT_S = 10.0
PROBE_INTERVAL_S = 0.1
PROBE_TIMEOUT_MS = 500
TEST_DATABASE_PREFIX = "scanq_test_"


@dataclass(frozen=True)
class MongoServer:
    """A server the tests may use: its base URL and what it is."""

    url: str
    description: str


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCAL_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def with_database(url: str, database: str, *, query: str | None = None) -> str:
    """``url`` pointing at ``database`` on the same server (``query`` replaces the options when given)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}", query=parts.query if query is None else query))


def is_answering(url: str) -> bool:
    try:
        client: MongoClient[dict[str, object]] = MongoClient(
            url, serverSelectionTimeoutMS=PROBE_TIMEOUT_MS, connectTimeoutMS=PROBE_TIMEOUT_MS
        )
        with client:
            client.admin.command("ping")
    except PyMongoError:
        return False
    return True


def secantus_version() -> str:
    from importlib.metadata import version

    return version("secantusdb")


def server_env() -> dict[str, str]:
    """This environment without coverage's subprocess switch: SecantusDB is no scanq code to measure.

    Under ``./test`` every Python child starts coverage; traced, this pure-Python server ran about 3x slower.
    """
    return {name: value for name, value in os.environ.items() if not name.startswith("COVERAGE_")}


@contextlib.contextmanager
def run_secantus(
    directory: Path, *, standalone: bool = False, port: int | None = None, keep_data: bool = True
) -> Iterator[MongoServer]:
    """Start SecantusDB on a free port with its data in ``directory``; stop it on exit.

    Args:
        directory: an empty directory for the data files, the (empty) config file and the log.
        standalone: advertise a standalone server (no change streams, no transactions) instead
            of a one-node replica set.
        port: the port to listen on (a restart reuses it); default a free one, and another should
            something else (another xdist worker's server) take it before the server listens.
        keep_data: stop with SIGTERM, letting the server write its data out (seconds), so a restart
            on ``directory`` finds it; ``False`` kills it at once (its data is thrown away anyway).
    """
    for attempt in range(1, START_ATTEMPTS + 1):
        chosen = port or free_port()
        process, log_path = _start_secantus(directory, standalone=standalone, port=chosen)
        try:
            url = f"mongodb://{LOCAL_HOST}:{chosen}/"
            deadline = time.monotonic() + START_TIMEOUT_S
            while not is_answering(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"SecantusDB did not start: {log_path.read_text(errors='replace')[-2000:]}")
                time.sleep(PROBE_INTERVAL_S)
        except RuntimeError:
            _stop(process)
            if port is not None or attempt == START_ATTEMPTS:
                raise
            continue
        try:
            mode = "standalone" if standalone else "one-node replica set"
            yield MongoServer(url=url, description=f"SecantusDB {secantus_version()} ({mode})")
        finally:
            _stop(process, graceful=keep_data)
        return


def _start_secantus(directory: Path, *, standalone: bool, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    config = directory / "secantusd.toml"
    config.write_text("")  # an explicit (empty) config turns off the search of ~/.secantus and /etc
    command = [
        sys.executable,
        "-m",
        "secantus",
        "--config",
        str(config),
        "--host",
        LOCAL_HOST,
        "--port",
        str(port),
        "--storage-path",
        str(directory / "data"),
        "--log-level",
        "WARNING",
    ]
    if standalone:
        command.append("--standalone")
    log_path = directory / "secantusd.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=directory, env=server_env(), stdout=log, stderr=subprocess.STDOUT)
    return process, log_path


def _stop(process: subprocess.Popen[bytes], *, graceful: bool = True) -> None:
    if graceful:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            pass
    process.kill()
    process.wait()


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[MongoServer]:
    """The session's MongoDB server (see the module docstring for where it comes from)."""
    given = os.environ.get("SCANQ_TEST_MONGO_URL")
    if given:
        if not is_answering(given):
            backend_unavailable(f"SCANQ_TEST_MONGO_URL={given} does not answer")
        yield MongoServer(url=given, description="SCANQ_TEST_MONGO_URL")
        return
    if importlib.util.find_spec("secantus") is None:
        backend_unavailable("no SCANQ_TEST_MONGO_URL and SecantusDB is not installed (pip install secantusdb)")
    with (
        tempfile.TemporaryDirectory(prefix="scanq-secantus-") as directory,
        run_secantus(Path(directory), keep_data=False) as server,
    ):
        yield server


@pytest.fixture(scope="session")
def standalone_mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    """A standalone server (no change streams, no transactions): SecantusDB with ``--standalone``."""
    if importlib.util.find_spec("secantus") is None:
        backend_unavailable("SecantusDB is not installed (pip install secantusdb)")
    with run_secantus(tmp_path_factory.mktemp("secantus-standalone"), standalone=True, keep_data=False) as server:
        yield server


@contextlib.contextmanager
def fresh_database(server: MongoServer) -> Iterator[str]:
    """A uuid-named database on ``server`` (URL with ``?collection=scans``), dropped on exit."""
    name = f"{TEST_DATABASE_PREFIX}{uuid.uuid4().hex}"
    parts = urlsplit(server.url)
    query = "&".join(option for option in (parts.query, "collection=scans") if option)
    try:
        yield with_database(server.url, name, query=query)
    finally:
        client: MongoClient[dict[str, object]] = MongoClient(server.url, serverSelectionTimeoutMS=PROBE_TIMEOUT_MS * 10)
        with client:
            client.drop_database(name)


@pytest.fixture
def mongo_database_url(mongo_server: MongoServer) -> Iterator[str]:
    """A store URL on an empty, uuid-named database of the session's MongoDB server."""
    with fresh_database(mongo_server) as url:
        yield url


@pytest.fixture
def standalone_mongo_url(standalone_mongo_server: MongoServer) -> Iterator[str]:
    """A store URL on an empty database of a standalone server."""
    with fresh_database(standalone_mongo_server) as url:
        yield url
