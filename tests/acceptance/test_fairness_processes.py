"""Fair share and the per-target cap with real processes on PostgreSQL.

Four ``scanq worker`` processes drain a flood of tenant A's mock scans (spread
over many target hosts, so the workers are saturated); tenant B then submits
50 scans over HTTP. B's scans take the next claims (fair share), so each one
starts within 2 s of its submission by the store's clock. Meanwhile a sampler
reads the Running scans from the store every 50 ms and counts them per target
host itself: never more than the cap.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from scanq.auth import new_token
from scanq.models import Scan, ScanStatus, Scope
from scanq.store import open_store
from tests.acceptance.conftest import Spawn, free_port, wait_http_ready

pytestmark = pytest.mark.slow

FLOOD = 20_000
LATE = 50
WORKERS = 4
CAP = 2
A_HOSTS = 2_000
B_HOSTS = 5
MAX_B_WAIT_S = 2.0
SAMPLE_EVERY_S = 0.05
DEADLINE_S = 120.0
REQUEST_TIMEOUT_S = 60.0


async def make_tokens(url: str) -> dict[str, str]:
    secrets: dict[str, str] = {}
    async with open_store(url) as store:
        for tenant in ("A", "B"):
            secret, token = new_token(tenant=tenant, scopes=frozenset({Scope.SUBMIT, Scope.READ}))
            await store.create_token(token=token)
            secrets[tenant] = secret
    return secrets


class RunningSampler:
    """Reads the Running scans every ``SAMPLE_EVERY_S`` in a thread of its own; keeps the most per host seen."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.most = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> RunningSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    async def _run(self) -> None:
        async with open_store(self.url) as store:
            while not self._stop.is_set():
                page = await store.list_scans(status=ScanStatus.RUNNING, limit=1000)
                per_host = Counter(scan.target_key for scan in page.scans if scan.target_key is not None)
                self.most = max(self.most, *per_host.values(), 0)
                self.samples += 1
                await asyncio.sleep(SAMPLE_EVERY_S)


@pytest.fixture
def services(spawn: Spawn, postgres_database_url: str) -> Iterator[tuple[str, str, dict[str, str]]]:
    url = postgres_database_url
    secrets = asyncio.run(make_tokens(url))
    port = free_port()
    # Ingest computes each scan's target host at submit time: the mock counts its targets when asked.
    env = {
        "SCANQ_DATABASE_URL": url,
        "SCANQ_AUTH": "tokens",
        "SCANQ_INGEST_PORT": str(port),
        "SCANQ_MOCK_POLITE": "true",
    }
    ingest = f"http://127.0.0.1:{port}"
    wait_http_ready(f"{ingest}/readyz", process=spawn("ingest", env=env))
    yield url, ingest, secrets


def submit_batch(ingest: str, secret: str, targets: list[str]) -> list[str]:
    response = httpx.post(
        f"{ingest}/scans/batch",
        json={"scans": [{"target": target} for target in targets]},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=REQUEST_TIMEOUT_S,
    )
    assert response.status_code == 202, response.text
    return [scan["scan_id"] for scan in response.json()["scans"]]


def test_a_late_tenant_starts_within_two_seconds_and_no_host_exceeds_the_cap(
    spawn: Spawn, services: tuple[str, str, dict[str, str]]
) -> None:
    url, ingest, secrets = services
    for start in range(0, FLOOD, 1000):
        submit_batch(ingest, secrets["A"], [f"a{(start + i) % A_HOSTS}.example" for i in range(1000)])
    worker_env = {
        "SCANQ_DATABASE_URL": url,
        "SCANQ_MOCK_MIN_SLEEP": "0.05",
        "SCANQ_MOCK_MAX_SLEEP": "0.1",
        "SCANQ_MOCK_FAILURE_RATE": "0",
        "SCANQ_MOCK_POLITE": "true",
        "SCANQ_CONCURRENCY": "50",
        "SCANQ_MAX_PER_TARGET": str(CAP),
    }
    with RunningSampler(url) as sampler:
        for _ in range(WORKERS):
            spawn("worker", env=worker_env)
        # B submits once the workers are busy with A's flood.
        deadline = time.monotonic() + DEADLINE_S
        while asyncio.run(_finished(url)) < 500:
            assert time.monotonic() < deadline, "the workers never got going"
            time.sleep(0.2)
        late = submit_batch(ingest, secrets["B"], [f"b{i % B_HOSTS}.example" for i in range(LATE)])
        while True:
            b = asyncio.run(_scans(url, late))
            if all(scan.started_at is not None for scan in b):
                break
            assert time.monotonic() < deadline, "B's scans never all started"
            time.sleep(0.2)
        a_waiting = asyncio.run(_accepted(url, "A"))

    waits = [(scan.started_at - scan.created_at).total_seconds() for scan in b if scan.started_at is not None]
    assert a_waiting > 0, "A's flood was drained before B's scans started: the test proves nothing"
    assert max(waits) <= MAX_B_WAIT_S, sorted(waits)
    assert sampler.samples > 10
    assert 0 < sampler.most <= CAP


async def _finished(url: str) -> int:
    async with open_store(url) as store:
        counts = (await store.stats()).counts
    return sum(n for status, n in counts.items() if status.is_terminal)


async def _scans(url: str, scan_ids: list[str]) -> list[Scan]:
    async with open_store(url) as store:
        return [await store.get(scan_id=scan_id) for scan_id in scan_ids]


async def _accepted(url: str, tenant: str) -> int:
    async with open_store(url) as store:
        return (await store.stats(tenant=tenant)).counts[ScanStatus.ACCEPTED]
