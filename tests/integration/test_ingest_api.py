"""The ingest service in-process over every store: GET /, POST /scans, batches, idempotency, cancel."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from scanq.exceptions import TargetRefused, ValidationError
from scanq.ids import is_scan_id
from scanq.models import Finish, Lease, Outcome, ScanStatus
from scanq.scanners.base import Scanner
from tests.integration.apps import Services, services, snapshot

UNKNOWN_ID = "01900000-0000-7000-8000-000000000000"  # a well-formed UUIDv7 no test stores


class StrictScanner(Scanner):
    """Needs a target, lowercases it, and refuses one domain: the plugin side of submit-time validation."""

    name = "strict"

    async def validate(self, *, target: str | None, options: Mapping[str, Any]) -> str | None:
        if target is None:
            raise ValidationError("the strict scanner needs a target")
        if target.lower() == "forbidden.example":
            raise TargetRefused(f"target {target!r} is not allowed")
        return target.lower()

    async def run(self, *, scan_id: str, target: str | None, options: Mapping[str, Any]) -> Mapping[str, Any]:
        return {}


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Services]:
    async with services(database_url, scanners={"strict": StrictScanner}) as s:
        yield s


async def test_get_root_queues_a_default_scan_and_answers_its_id_as_text(api: Services) -> None:
    response = await api.ingest.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    scan_id = response.text
    assert is_scan_id(scan_id)
    assert uuid.UUID(scan_id).version == 7
    scan = await api.store.get(scan_id=scan_id)
    assert scan.status == ScanStatus.ACCEPTED
    assert scan.scanner == api.settings.default_scanner
    assert scan.max_attempts == api.settings.max_attempts
    assert scan.target is None


async def test_head_on_root_queues_nothing(api: Services) -> None:
    before = await snapshot(api.store)

    response = await api.ingest.head("/")

    assert response.status_code == 405
    assert await snapshot(api.store) == before


async def test_ids_are_time_ordered(api: Services) -> None:
    ids = [(await api.ingest.get("/")).text for _ in range(5)]

    assert ids == sorted(ids)
    assert len(set(ids)) == 5


async def test_post_scans_answers_202_with_location_and_the_scan(api: Services) -> None:
    body = {"target": "Example.COM", "scanner": "strict", "options": {"depth": 2}, "priority": 7, "max_attempts": 5}

    response = await api.ingest.post("/scans", json=body)

    assert response.status_code == 202
    scan = response.json()
    assert response.headers["location"] == f"/scans/{scan['scan_id']}"
    assert is_scan_id(scan["scan_id"])
    assert scan["status"] == "Accepted"
    assert scan["target"] == "example.com"  # normalised by the plugin
    assert scan["scanner"] == "strict"
    assert scan["options"] == {"depth": 2}
    assert scan["priority"] == 7
    assert scan["max_attempts"] == 5
    assert scan["attempt"] == 0
    assert scan["history"] == []
    assert scan["created_at"].endswith("Z")
    # The Location is the status service's path for the scan.
    shown = await api.status.get(response.headers["location"])
    assert shown.status_code == 200
    assert shown.json() == scan


async def test_post_scans_without_a_body_queues_the_default_scan(api: Services) -> None:
    for response in (await api.ingest.post("/scans"), await api.ingest.post("/scans", json={})):
        assert response.status_code == 202
        scan = response.json()
        assert scan["scanner"] == "mock"
        assert scan["target"] is None
        assert scan["priority"] == 0
        assert scan["max_attempts"] == api.settings.max_attempts


async def test_defaults_come_from_settings(database_url: str) -> None:
    async with services(database_url, default_scanner="noop", max_attempts=7) as s:
        scan = (await s.ingest.post("/scans", json={"target": "a.example"})).json()
        default = await s.store.get(scan_id=(await s.ingest.get("/")).text)

    assert (scan["scanner"], scan["max_attempts"]) == ("noop", 7)
    assert (default.scanner, default.max_attempts) == ("noop", 7)


async def test_a_replayed_idempotency_key_answers_the_same_scan(api: Services) -> None:
    body = {"target": "a.example", "priority": 3}
    first = await api.ingest.post("/scans", json=body, headers={"Idempotency-Key": "order-42"})
    after_first = await snapshot(api.store)

    again = await api.ingest.post("/scans", json=body, headers={"Idempotency-Key": "order-42"})

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert first.json()["idempotency_key"] == "order-42"
    assert await snapshot(api.store) == after_first


async def test_a_replay_after_defaults_matches_the_explicit_request(api: Services) -> None:
    key = {"Idempotency-Key": "k-defaults"}
    first = await api.ingest.post("/scans", json={"target": "a.example"}, headers=key)
    explicit = {"target": "a.example", "scanner": "mock", "priority": 0, "max_attempts": api.settings.max_attempts}

    again = await api.ingest.post("/scans", json=explicit, headers=key)

    assert again.status_code == 200
    assert again.json()["scan_id"] == first.json()["scan_id"]


async def test_a_key_reused_for_another_request_is_a_conflict(api: Services) -> None:
    first = await api.ingest.post("/scans", json={"target": "a.example"}, headers={"Idempotency-Key": "k"})
    before = await snapshot(api.store)

    response = await api.ingest.post("/scans", json={"target": "b.example"}, headers={"Idempotency-Key": "k"})

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "idempotency_conflict"
    assert "k" in error["message"] and first.json()["scan_id"] in error["message"]
    assert await snapshot(api.store) == before


async def test_different_keys_make_different_scans(api: Services) -> None:
    one = await api.ingest.post("/scans", json={}, headers={"Idempotency-Key": "one"})
    two = await api.ingest.post("/scans", json={}, headers={"Idempotency-Key": "two"})

    assert one.status_code == two.status_code == 202
    assert one.json()["scan_id"] != two.json()["scan_id"]


async def test_a_batch_is_stored_whole_in_request_order(api: Services) -> None:
    items = [{"target": f"host-{i}.example", "priority": i} for i in range(5)]

    response = await api.ingest.post("/scans/batch", json={"scans": items})

    assert response.status_code == 202
    scans = response.json()["scans"]
    assert [s["target"] for s in scans] == [i["target"] for i in items]
    assert len({s["scan_id"] for s in scans}) == 5
    stored = {s.scan_id for s in (await api.store.list_scans(limit=10)).scans}
    assert stored == {s["scan_id"] for s in scans}


async def test_cancel_an_accepted_scan_then_again(api: Services) -> None:
    scan_id = (await api.ingest.get("/")).text

    cancelled = await api.ingest.post(f"/scans/{scan_id}/cancel")
    again = await api.ingest.post(f"/scans/{scan_id}/cancel")

    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "Cancelled"
    assert cancelled.json()["finished_at"] is not None
    # Cancelling is idempotent: the second answer is the same Cancelled scan, not a 409.
    assert again.status_code == 200
    assert again.json() == cancelled.json()


async def test_cancel_a_running_scan_asks_its_worker_to_stop(api: Services) -> None:
    scan_id = (await api.ingest.get("/")).text
    [claimed] = await api.store.claim(worker_id="w-1", limit=1, lease_s=30)

    response = await api.ingest.post(f"/scans/{scan_id}/cancel")

    assert claimed.scan_id == scan_id
    assert response.status_code == 200
    assert response.json()["status"] == "Running"
    assert response.json()["cancel_requested"] is True


async def test_cancel_a_finished_scan_is_a_conflict(api: Services) -> None:
    scan_id = (await api.ingest.get("/")).text
    [claimed] = await api.store.claim(worker_id="w-1", limit=1, lease_s=30)
    lease = Lease(scan_id=scan_id, worker_id="w-1", attempt=claimed.attempt)
    assert await api.store.finish(finishes=[Finish(lease=lease, outcome=Outcome.COMPLETE, result={"ok": True})]) == [
        True
    ]

    response = await api.ingest.post(f"/scans/{scan_id}/cancel")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "scan_finished"
    assert (await api.store.get(scan_id=scan_id)).status == ScanStatus.COMPLETE


@pytest.mark.parametrize("scan_id", [UNKNOWN_ID, "not-a-uuid"])
async def test_cancel_an_unknown_scan_answers_the_not_found_body(api: Services, scan_id: str) -> None:
    response = await api.ingest.post(f"/scans/{scan_id}/cancel")

    assert response.status_code == 404
    assert response.json() == {"scan_id": scan_id, "status": "Not Found"}


async def test_health_and_readiness(api: Services) -> None:
    health = await api.ingest.get("/healthz")
    ready = await api.ingest.get("/readyz")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
