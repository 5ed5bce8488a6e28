"""The webhook body: the scan as the status API renders it, its event's type and time, bounded in size."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import msgspec

from scanq.ids import new_scan_id
from scanq.models import Finish, Lease, NewScan, Outcome, Scan, ScanEvent, ScanStatus
from scanq.store.memory import MemoryStore
from scanq.views import scan_out
from scanq.webhooks.payload import MAX_BODY_BYTES, build_body, encode_body

AT = datetime(2026, 11, 29, 12, 30, 15, 250000, tzinfo=UTC)


def event(scan_id: str, status: ScanStatus = ScanStatus.COMPLETE) -> ScanEvent:
    return ScanEvent(event_id="7", scan_id=scan_id, tenant="acme", status=status, attempt=1, at=AT)


async def stored_scan(store: MemoryStore, result: dict[str, object]) -> str:
    scan_id = new_scan_id()
    await store.create(scan=NewScan(scan_id=scan_id, created_at=datetime.now(UTC), tenant="acme", target="x.example"))
    assert len(await store.claim(worker_id="w", limit=1, lease_s=30)) == 1
    await store.finish(
        finishes=[
            Finish(lease=Lease(scan_id=scan_id, worker_id="w", attempt=1), outcome=Outcome.COMPLETE, result=result)
        ]
    )
    return scan_id


async def test_the_body_is_the_type_the_event_time_and_the_scan_as_the_api_shows_it() -> None:
    async with MemoryStore(f"memory://{uuid.uuid4()}") as store:
        scan_id = await stored_scan(store, {"findings": [{"id": "hsts-missing"}]})
        scan = await store.get(scan_id=scan_id)

        body = json.loads(await build_body(store, event(scan_id)))

    assert body["type"] == "scan.completed"
    assert datetime.fromisoformat(body["timestamp"]) == AT
    assert body["data"] == msgspec.json.decode(msgspec.json.encode(scan_out(scan)))
    assert body["data"]["result"] == {"findings": [{"id": "hsts-missing"}]}
    assert body["data"]["status"] == "Complete" and body["data"]["tenant"] == "acme"


async def test_a_scan_that_is_gone_is_sent_as_its_id_status_and_tenant() -> None:
    async with MemoryStore(f"memory://{uuid.uuid4()}") as store:
        body = json.loads(await build_body(store, event("0190a6c2-5b1e-7c3a-9d2e-3f4a5b6c7d8e", ScanStatus.ERROR)))

    assert body == {
        "type": "scan.failed",
        "timestamp": body["timestamp"],
        "data": {"scan_id": "0190a6c2-5b1e-7c3a-9d2e-3f4a5b6c7d8e", "status": "Error", "tenant": "acme"},
    }


async def test_an_outsized_result_is_replaced_by_a_truncation_mark() -> None:
    async with MemoryStore(f"memory://{uuid.uuid4()}") as store:
        scan_id = await stored_scan(store, {"blob": "x" * (MAX_BODY_BYTES + 1)})
        small_id = await stored_scan(store, {"blob": "x" * 1000})

        big = await build_body(store, event(scan_id))
        small = await build_body(store, event(small_id))

    assert len(big) <= MAX_BODY_BYTES
    assert json.loads(big)["data"]["result"] == {"truncated": True}
    assert json.loads(big)["data"]["scan_id"] == scan_id
    assert json.loads(small)["data"]["result"] == {"blob": "x" * 1000}


def test_outsized_options_and_error_are_cut_too_when_the_result_was_not_enough() -> None:
    now = datetime.now(UTC)
    scan = Scan(
        scan_id=new_scan_id(),
        status=ScanStatus.ERROR,
        target="x.example",
        scanner="mock",
        options={"pad": "o" * MAX_BODY_BYTES},
        priority=0,
        attempt=1,
        max_attempts=3,
        created_at=now,
        updated_at=now,
        available_at=now,
        tenant="acme",
        error="e" * MAX_BODY_BYTES,
    )

    body = encode_body(event(scan.scan_id, ScanStatus.ERROR), scan_out(scan))

    assert len(body) <= MAX_BODY_BYTES
    data = json.loads(body)["data"]
    assert data["options"] == {"truncated": True} and data["result"] == {"truncated": True}
    assert len(data["error"]) == 1000
