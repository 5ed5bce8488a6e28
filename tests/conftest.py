"""Shared fixtures: a clean environment, and a store URL for every backend.

``database_url`` is parametrised over every backend, so any test that takes it
runs on SQLite, PostgreSQL and MongoDB. A backend whose server cannot be had
skips locally and fails under ``CI=true`` (see ``tests/servers/availability.py``).
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.servers.postgres", "tests.servers.reused_schema", "tests.servers.mongo"]

BACKENDS = ["memory", "sqlite", "postgres", "mongo"]
# pytest-timeout's limit for the MongoDB case of a backend-parametrised test (the default is 60 s: pyproject.toml).
MONGO_CASE_TIMEOUT_S = 300


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C (SIGINT) handled as in a terminal, even when the run inherited it ignored.

    A shell without job control (``./test &`` in a script, a CI runner's background step) starts the run with
    SIGINT ignored, and every process a test starts would inherit that: a test that presses Ctrl-C on one
    (``scanq submit --wait``, ``scanq stats --watch``) would then wait forever. A handled signal is reset to its
    default when a child execs, so the children get the SIGINT a user's terminal gives them.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests never see the developer's scanq settings."""
    for name in list(os.environ):
        if name.startswith("SCANQ_") and not name.startswith("SCANQ_TEST_"):
            monkeypatch.delenv(name)
    for name in ("INGEST_PORT", "STATUS_PORT", "MIN_SLEEP", "MAX_SLEEP", "CHANCE_OF_FAILURE", "MONGO_PORT"):
        monkeypatch.delenv(name, raising=False)
    yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The MongoDB case of a backend-parametrised test is ``slow``, with a longer time limit.

    SecantusDB, the MongoDB of the tests, is a pure-Python server: the contract suite's MongoDB cases cost
    about twice the CPU (test process and server) of its memory, SQLite and PostgreSQL cases together, and
    on a busy machine the server gets its share of the cores like any other process. The heaviest case (16
    claimers racing for 120 scans) took 11 s beside four CPU-bound processes and passed pytest-timeout's
    60 s only sometimes under coverage with more load: the MongoDB cases get ``MONGO_CASE_TIMEOUT_S``
    instead (a hang still fails; a test with its own, longer limit keeps it).

    ``slow``: the quick loop (``-m "not slow"``) leaves them out. The MongoDB store's own tests
    (``test_mongo_*.py``, which take ``mongo_database_url``) stay in the quick loop; ``./test`` and CI run
    everything.
    """
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("database_url") == "mongo":
            item.add_marker(pytest.mark.slow)
            own = item.get_closest_marker("timeout")
            if own is None or (own.args and own.args[0] < MONGO_CASE_TIMEOUT_S):
                item.add_marker(pytest.mark.timeout(MONGO_CASE_TIMEOUT_S), append=False)


def sqlite_database_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'scanq.db'}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store URL on each backend; the backend's fixture cleans it up."""
    backend: str = request.param
    if backend == "memory":
        return f"memory://{uuid.uuid4()}"
    if backend == "sqlite":
        return sqlite_database_url(tmp_path)
    url: str = request.getfixturevalue("postgres_backend_url" if backend == "postgres" else f"{backend}_database_url")
    return url


@pytest.fixture
def postgres_backend_url(postgres_database_url: str) -> str:
    """``database_url`` on PostgreSQL: a fresh schema per test. The contract and integration suites reuse one
    schema instead (their ``conftest.py``); acceptance tests keep this, their processes may outlive a test."""
    return postgres_database_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite store URL, for tests that need only the embedded backend."""
    return sqlite_database_url(tmp_path)
