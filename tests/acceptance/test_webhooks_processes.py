"""Webhooks end to end: real ingest and worker processes, a real receiver verifying with ``standardwebhooks``.

The receiver (``tests/webhook_receiver.py``) counts a delivery only if its
signature verifies with the Standard Webhooks reference library. Each test
registers an endpoint over HTTP, submits scans over HTTP and waits until every
scan's terminal event has arrived, on SQLite and on PostgreSQL:

- every scan ends in exactly one event whose type matches its final status, and
  no delivery fails verification;
- the receiver is down for a while (connections refused) and the delivering
  worker is killed with SIGKILL in the middle: once a new worker runs and the
  receiver is back, every event arrives (duplicates allowed, deduplicated by
  ``webhook-id``; none lost);
- one-off callbacks: each scan submitted with a ``callback_url`` ends in one
  event at its own URL, signed with the tenant's callback secret; a scan
  without one makes none.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from scanq.store import open_store
from tests.acceptance.conftest import Spawn, free_port, wait_http_ready
from tests.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DEADLINE_S = 120.0
TERMINAL_EVENT = {"Complete": "scan.completed", "Error": "scan.failed", "Cancelled": "scan.cancelled"}


@dataclass
class Service:
    url: str
    ingest: str
    worker_env: dict[str, str]


@pytest.fixture
def service(spawn: Spawn, database_url: str) -> Iterator[Service]:
    port = free_port()
    common = {
        "SCANQ_DATABASE_URL": database_url,
        # The receiver listens on loopback: allow-listed, and plain http is allowed only for allow-listed addresses.
        "SCANQ_WEBHOOK_ALLOWLIST": "127.0.0.0/8",
        "SCANQ_WEBHOOK_BACKOFF_BASE_SECONDS": "0.2",
    }
    ingest = f"http://127.0.0.1:{port}"
    wait_http_ready(f"{ingest}/readyz", process=spawn("ingest", env={**common, "SCANQ_INGEST_PORT": str(port)}))
    worker_env = {
        **common,
        "SCANQ_MOCK_MIN_SLEEP": "0",
        "SCANQ_MOCK_MAX_SLEEP": "0.05",
        "SCANQ_MOCK_FAILURE_RATE": "0.2",
        "SCANQ_LEASE_SECONDS": "3",
        "SCANQ_HEARTBEAT_SECONDS": "1",
        # Short attempts make short delivery leases: the killed worker's deliveries come back sooner.
        "SCANQ_WEBHOOK_CONNECT_TIMEOUT_SECONDS": "1",
        "SCANQ_WEBHOOK_TIMEOUT_SECONDS": "2",
    }
    yield Service(url=database_url, ingest=ingest, worker_env=worker_env)


def register(ingest: str, receiver: WebhookReceiver) -> str:
    response = httpx.post(f"{ingest}/webhooks", json={"url": receiver.url, "description": "test receiver"}, timeout=30)
    assert response.status_code == 201, response.text
    endpoint = response.json()
    receiver.secrets.append(endpoint["secret"])
    endpoint_id: str = endpoint["endpoint_id"]
    return endpoint_id


def submit(ingest: str, count: int) -> list[str]:
    response = httpx.post(f"{ingest}/scans/batch", json={"scans": [{} for _ in range(count)]}, timeout=60)
    assert response.status_code == 202, response.text
    return [scan["scan_id"] for scan in response.json()["scans"]]


def final_statuses(url: str, scan_ids: list[str]) -> dict[str, str]:
    async def read() -> dict[str, str]:
        async with open_store(url) as store:
            return {scan_id: (await store.get(scan_id=scan_id)).status.value for scan_id in scan_ids}

    return asyncio.run(read())


def terminal_scans(receiver: WebhookReceiver) -> set[str]:
    return set().union(*receiver.scans_by_type().values()) if receiver.snapshot() else set()


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_every_scan_ends_in_one_verified_event_of_its_status(spawn: Spawn, service: Service) -> None:
    receiver = WebhookReceiver(port=free_port())
    receiver.start()
    try:
        register(service.ingest, receiver)
        spawn("worker", env=service.worker_env)
        scan_ids = submit(service.ingest, 60)
        cancelled = scan_ids[-1]
        httpx.post(f"{service.ingest}/scans/{cancelled}/cancel", timeout=30)
        receiver.wait_for(
            lambda r: terminal_scans(r) >= set(scan_ids), timeout_s=DEADLINE_S, what="every scan's terminal event"
        )
        statuses = final_statuses(service.url, scan_ids)
    finally:
        receiver.stop()

    assert receiver.rejected == 0
    by_type = receiver.scans_by_type()
    for scan_id, status in statuses.items():
        assert scan_id in by_type[TERMINAL_EVENT[status]], (scan_id, status)
    assert set(by_type) <= set(TERMINAL_EVENT.values()), "only the default events (the scan's end) were subscribed"
    for item in receiver.snapshot():
        assert item.body["data"]["status"] == statuses[item.body["data"]["scan_id"]]
        assert item.body["type"] == TERMINAL_EVENT[item.body["data"]["status"]]
    # At-least-once: a retry may repeat an id, but every id names one event of one scan.
    ids_per_scan = {(item.webhook_id, item.body["data"]["scan_id"]) for item in receiver.snapshot()}
    assert len({webhook_id for webhook_id, _ in ids_per_scan}) == len(ids_per_scan)


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_receiver_down_and_worker_killed_lose_no_event(spawn: Spawn, service: Service) -> None:
    receiver = WebhookReceiver(port=free_port())  # registered but not started: connections are refused
    endpoint_id = register(service.ingest, receiver)
    first = spawn("worker", env=service.worker_env)
    scan_ids = submit(service.ingest, 200)

    # Wait until deliveries have been tried and failed against the dead receiver, then kill the worker mid-retry.
    deadline = time.monotonic() + DEADLINE_S
    while True:
        page = httpx.get(f"{service.ingest}/webhooks/{endpoint_id}/deliveries?limit=1000", timeout=30).json()
        tried = [d for d in page["deliveries"] if d["attempts"] >= 1]
        if len(tried) >= 20:
            break
        assert time.monotonic() < deadline, f"no failed attempts seen: {page}"
        time.sleep(0.2)
    assert all(d["status"] != "delivered" for d in tried)
    first.signal(signal.SIGKILL)
    first.wait(30)

    receiver.start()
    try:
        spawn("worker", env=service.worker_env)
        receiver.wait_for(
            lambda r: terminal_scans(r) >= set(scan_ids), timeout_s=DEADLINE_S, what="every event after the outage"
        )
    finally:
        receiver.stop()
    assert receiver.rejected == 0
    assert terminal_scans(receiver) == set(scan_ids)
    assert len(receiver.per_id()) == len(scan_ids), "one event id per scan's end"


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_each_callback_url_gets_its_scans_end_once_and_scans_without_one_none(spawn: Spawn, service: Service) -> None:
    """One-off callbacks: per-scan URLs (two paths of one receiver), signed with the secret of
    ``GET /webhooks/callbacks``; scans without a callback_url make no delivery; the deliveries list shows them."""
    shown = httpx.get(f"{service.ingest}/webhooks/callbacks", timeout=30)
    assert shown.status_code == 200, shown.text
    callbacks = shown.json()
    assert (callbacks["endpoint_id"], callbacks["url"]) == ("callbacks", None)
    receiver = WebhookReceiver(port=free_port(), secrets=[callbacks["secret"]])
    receiver.start()
    try:
        paths = {"/alpha": 12, "/beta?ticket=7": 12}
        by_path: dict[str, list[str]] = {}
        for path, count in paths.items():
            body = {"scans": [{"callback_url": receiver.url_for(path)} for _ in range(count)]}
            response = httpx.post(f"{service.ingest}/scans/batch", json=body, timeout=60)
            assert response.status_code == 202, response.text
            by_path[path] = [scan["scan_id"] for scan in response.json()["scans"]]
        silent = submit(service.ingest, 12)  # no callback_url: no callback
        refused = httpx.post(f"{service.ingest}/scans", json={"callback_url": "https://10.0.0.1/cb"}, timeout=30)
        assert refused.status_code == 422 and "callback_url" in refused.text
        spawn("worker", env=service.worker_env)
        wanted = {scan_id for ids in by_path.values() for scan_id in ids}
        receiver.wait_for(lambda r: terminal_scans(r) >= wanted, timeout_s=DEADLINE_S, what="every scan's callback")
        deadline = time.monotonic() + DEADLINE_S
        while set(final_statuses(service.url, silent).values()) & {"Accepted", "Running"}:
            assert time.monotonic() < deadline, "the scans without a callback did not end"
            time.sleep(0.2)
        time.sleep(1.0)  # a callback for them would have come by now
        statuses = final_statuses(service.url, [*wanted, *silent])
        listed = httpx.get(f"{service.ingest}/webhooks/callbacks/deliveries?limit=1000", timeout=30).json()
    finally:
        receiver.stop()

    assert receiver.rejected == 0
    received = receiver.snapshot()
    assert terminal_scans(receiver) == wanted, "no callback for a scan without a callback_url"
    for item in received:
        scan_id = item.body["data"]["scan_id"]
        assert item.path == next(path for path, ids in by_path.items() if scan_id in ids)
        assert item.body["type"] == TERMINAL_EVENT[statuses[scan_id]]
        assert item.body["data"]["callback_url"] == receiver.url_for(item.path)
    # At least once, and exactly once per event id: each id names one scan's one terminal event.
    assert len(receiver.per_id()) == len(wanted)
    assert len({(item.webhook_id, item.body["data"]["scan_id"]) for item in received}) == len(wanted)
    deliveries = listed["deliveries"]
    assert {d["event"]["scan_id"] for d in deliveries} == wanted
    assert all(d["endpoint_id"] == "callbacks" and d["status"] == "delivered" for d in deliveries)
    assert all(
        d["url"] == receiver.url_for(p)
        for p, ids in by_path.items()
        for d in deliveries
        if d["event"]["scan_id"] in ids
    )
