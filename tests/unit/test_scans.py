"""The scan service's rules on the in-process MemoryStore: defaults, bounds, plugins, idempotency, batches, reads."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scanq.config import Settings
from scanq.exceptions import (
    IdempotencyConflict,
    ScanFinished,
    ScanNotFound,
    TargetRefused,
    UnknownScanner,
    ValidationError,
)
from scanq.ids import new_scan_id
from scanq.models import Finish, Lease, NewScan, Outcome, ScanStatus
from scanq.scanners import ScannerRegistry
from scanq.scanners.base import Scanner
from scanq.scans import (
    MAX_ATTEMPTS_LIMIT,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_OPTIONS_DEPTH,
    MAX_PRIORITY,
    MAX_SCANNER_NAME_LENGTH,
    MAX_TARGET_LENGTH,
    MIN_PRIORITY,
    ScanService,
    SubmitRequest,
)
from scanq.store.memory import MemoryStore

MAX_BATCH = 4


class HostScanner(Scanner):
    """Lowercases its target, refuses ``blocked.example`` and rejects unknown options."""

    name = "host"

    async def validate(self, *, target: str | None, options: Mapping[str, Any]) -> str | None:
        if target is None:
            raise ValidationError("the host scanner needs a target")
        if set(options) - {"ports"}:
            raise ValidationError(f"unknown host option(s): {', '.join(sorted(set(options) - {'ports'}))}")
        if target.lower() == "blocked.example":
            raise TargetRefused(f"{target} is not allowed")
        return target.lower()

    async def run(self, *, scan_id: str, target: str | None, options: Mapping[str, Any]) -> Mapping[str, Any]:
        return {}


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore(f"memory://{uuid.uuid4()}") as store:
        yield store


def make_service(store: MemoryStore, **settings: Any) -> ScanService:
    config = Settings(max_batch=MAX_BATCH, **settings)
    return ScanService(store, ScannerRegistry(config, extra={"host": HostScanner}), config)


@pytest.fixture
def service(store: MemoryStore) -> ScanService:
    return make_service(store)


async def stored_ids(store: MemoryStore) -> list[str]:
    return [s.scan_id for s in (await store.list_scans(limit=1000)).scans]


async def test_submit_applies_the_settings_defaults(store: MemoryStore) -> None:
    service = make_service(store, default_scanner="noop", max_attempts=9)

    created = await service.submit(SubmitRequest())

    scan = created.scan
    assert created.is_new
    assert uuid.UUID(scan.scan_id).version == 7
    assert (scan.status, scan.scanner, scan.max_attempts, scan.priority, scan.target) == (
        ScanStatus.ACCEPTED,
        "noop",
        9,
        0,
        None,
    )
    assert await store.get(scan_id=scan.scan_id) == scan


async def test_submit_keeps_explicit_fields_and_the_plugin_normalises_the_target(service: ScanService) -> None:
    request = SubmitRequest(target="Example.COM", scanner="host", options={"ports": [443]}, priority=-5, max_attempts=2)

    scan = (await service.submit(request)).scan

    assert scan.target == "example.com"
    assert (scan.scanner, dict(scan.options), scan.priority, scan.max_attempts) == ("host", {"ports": [443]}, -5, 2)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (SubmitRequest(priority=MAX_PRIORITY + 1), "priority must be between"),
        (SubmitRequest(priority=MIN_PRIORITY - 1), "priority must be between"),
        (SubmitRequest(max_attempts=0), "max_attempts must be between"),
        (SubmitRequest(max_attempts=MAX_ATTEMPTS_LIMIT + 1), "max_attempts must be between"),
        (SubmitRequest(target=""), "target must be"),
        (SubmitRequest(target="a" * (MAX_TARGET_LENGTH + 1)), "target must be"),
        (SubmitRequest(scanner=""), "scanner must be"),
        (SubmitRequest(scanner="s" * (MAX_SCANNER_NAME_LENGTH + 1)), "scanner must be"),
        (SubmitRequest(options=[1]), "options must be a JSON object"),  # type: ignore[arg-type]
        (SubmitRequest(options={"a": [[{"b": [[[[[[[[[[[[[[1]]]]]]]]]]]]]]}]]}), "options nest deeper than 16 levels"),
        (SubmitRequest(target="a\x00"), "target must not contain the NUL character"),
        (SubmitRequest(options={"k\x00": 1}), "options must not contain the NUL character"),
        (SubmitRequest(options={"k": {"j": "\x00"}}), "options must not contain the NUL character"),
        (SubmitRequest(options={"n": [2**63]}), "options integers must fit in 64 bits"),
        (SubmitRequest(options={"n": [-(2**63) - 1]}), "options integers must fit in 64 bits"),
        (SubmitRequest(scanner="host"), "needs a target"),
        (SubmitRequest(scanner="host", target="a.example", options={"depth": 1}), "unknown host option(s): depth"),
    ],
)
async def test_out_of_bounds_or_invalid_submissions_write_nothing(
    service: ScanService, store: MemoryStore, request_: SubmitRequest, message: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        await service.submit(request_)

    assert await stored_ids(store) == []


async def test_a_refused_target_and_an_unknown_scanner_write_nothing(service: ScanService, store: MemoryStore) -> None:
    with pytest.raises(TargetRefused, match=r"blocked\.example"):
        await service.submit(SubmitRequest(scanner="host", target="blocked.example"))
    with pytest.raises(UnknownScanner, match="unknown scanner 'nope'"):
        await service.submit(SubmitRequest(scanner="nope"))

    assert await stored_ids(store) == []


async def test_options_at_the_limits_are_accepted(service: ScanService) -> None:
    deepest: dict[str, Any] = {}
    node = deepest
    for _ in range(MAX_OPTIONS_DEPTH - 1):
        node["d"] = {}
        node = node["d"]
    options = {"ints": [2**63 - 1, -(2**63)], "flag": True, "deep": deepest["d"]}

    # noop carries any options (mock checks its own three since issue 16).
    scan = (await service.submit(SubmitRequest(scanner="noop", options=options))).scan

    assert scan.options == options


async def test_the_same_key_and_request_answers_the_stored_scan(service: ScanService, store: MemoryStore) -> None:
    first = await service.submit(SubmitRequest(target="a"), idempotency_key="key-1")
    # Defaults spelled out are the same request.
    again = await service.submit(SubmitRequest(target="a", scanner="mock", max_attempts=3), idempotency_key="key-1")

    assert first.is_new and not again.is_new
    assert again.scan == first.scan
    assert first.scan.idempotency_key == "key-1"
    assert await stored_ids(store) == [first.scan.scan_id]


@pytest.mark.parametrize(
    "changed",
    [
        SubmitRequest(target="b"),
        SubmitRequest(target="a", priority=1),
        SubmitRequest(target="a", max_attempts=1),
        SubmitRequest(target="a", scanner="noop"),
        SubmitRequest(target="a", options={"min_sleep": 0}),
    ],
)
async def test_the_same_key_with_another_request_is_a_conflict(
    service: ScanService, store: MemoryStore, changed: SubmitRequest
) -> None:
    first = await service.submit(SubmitRequest(target="a"), idempotency_key="key-1")

    with pytest.raises(IdempotencyConflict, match="key-1") as raised:
        await service.submit(changed, idempotency_key="key-1")

    assert raised.value.scan_id == first.scan.scan_id  # type: ignore[attr-defined]
    assert await stored_ids(store) == [first.scan.scan_id]


@pytest.mark.parametrize("key", ["", "k" * (MAX_IDEMPOTENCY_KEY_LENGTH + 1)])
async def test_a_bad_idempotency_key_is_refused(service: ScanService, store: MemoryStore, key: str) -> None:
    with pytest.raises(ValidationError, match="Idempotency-Key must be"):
        await service.submit(SubmitRequest(), idempotency_key=key)

    assert await stored_ids(store) == []


async def test_a_batch_is_stored_in_order(service: ScanService, store: MemoryStore) -> None:
    scans = await service.submit_many([SubmitRequest(target=f"t{i}", priority=i) for i in range(MAX_BATCH)])

    assert [s.target for s in scans] == [f"t{i}" for i in range(MAX_BATCH)]
    assert sorted(await stored_ids(store)) == sorted(s.scan_id for s in scans)


async def test_a_batch_is_all_or_none(service: ScanService, store: MemoryStore) -> None:
    batch = [SubmitRequest(), SubmitRequest(scanner="host", target="blocked.example"), SubmitRequest()]

    with pytest.raises(TargetRefused, match=r"^scans\[1\]: blocked.example"):
        await service.submit_many(batch)
    with pytest.raises(UnknownScanner, match=r"^scans\[2\]: unknown scanner"):
        await service.submit_many([SubmitRequest(), SubmitRequest(), SubmitRequest(scanner="x")])

    assert await stored_ids(store) == []


@pytest.mark.parametrize(("size", "message"), [(0, "at least one"), (MAX_BATCH + 1, f"at most {MAX_BATCH}")])
async def test_an_empty_or_oversized_batch_is_refused(
    service: ScanService, store: MemoryStore, size: int, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        await service.submit_many([SubmitRequest()] * size)

    assert await stored_ids(store) == []


async def test_cancel(service: ScanService) -> None:
    scan = (await service.submit(SubmitRequest())).scan

    cancelled = await service.cancel(scan.scan_id)
    again = await service.cancel(scan.scan_id)

    assert cancelled.status == ScanStatus.CANCELLED
    assert again == cancelled


async def test_cancelling_a_complete_scan_is_refused(service: ScanService, store: MemoryStore) -> None:
    scan = (await service.submit(SubmitRequest())).scan
    [claimed] = await store.claim(worker_id="w-1", limit=1, lease_s=30)
    lease = Lease(scan_id=scan.scan_id, worker_id="w-1", attempt=claimed.attempt)
    assert await store.finish(finishes=[Finish(lease=lease, outcome=Outcome.COMPLETE, result={})]) == [True]

    with pytest.raises(ScanFinished, match="already finished with status Complete"):
        await service.cancel(scan.scan_id)


@pytest.mark.parametrize(
    "scan_id", ["nope", "", "01900000-0000-7000-8000-00000000000A", "01900000-0000-7000-8000-000000000001"]
)
async def test_unknown_or_malformed_ids_are_not_found(service: ScanService, scan_id: str) -> None:
    with pytest.raises(ScanNotFound) as got:
        await service.get(scan_id)
    with pytest.raises(ScanNotFound):
        await service.cancel(scan_id)

    assert got.value.scan_id == scan_id


async def test_list_filters_and_checks_its_arguments(service: ScanService) -> None:
    ids = [(await service.submit(SubmitRequest())).scan.scan_id for _ in range(3)]
    await service.cancel(ids[0])

    accepted = await service.list_scans(status="Accepted")
    first = await service.list_scans(limit=2)
    rest = await service.list_scans(limit=2, cursor=first.next_cursor)

    assert [s.scan_id for s in accepted.scans] == [ids[2], ids[1]]
    assert [s.scan_id for s in first.scans + rest.scans] == list(reversed(ids))
    assert rest.next_cursor is None
    with pytest.raises(ValidationError, match=r"unknown status 'Done' \(use one of Accepted, Running"):
        await service.list_scans(status="Done")
    for limit in (0, 1001):
        with pytest.raises(ValidationError, match="limit must be between 1 and 1000"):
            await service.list_scans(limit=limit)
    with pytest.raises(ValidationError, match="invalid cursor"):
        await service.list_scans(cursor="!!")


async def test_the_cursor_carries_the_status_filter_it_continues(service: ScanService) -> None:
    ids = [(await service.submit(SubmitRequest())).scan.scan_id for _ in range(5)]
    for scan_id in ids[1::2]:
        await service.cancel(scan_id)
    cancelled = list(reversed(ids[1::2]))

    first = await service.list_scans(status="Cancelled", limit=1)
    followed = await service.list_scans(limit=1, cursor=first.next_cursor)  # status left out: still Cancelled
    repeated = await service.list_scans(status="Cancelled", limit=5, cursor=first.next_cursor)

    assert [s.scan_id for s in first.scans + followed.scans] == cancelled
    assert followed.next_cursor is None
    assert [s.scan_id for s in repeated.scans] == cancelled[1:]
    with pytest.raises(ValidationError, match="continues the list of status=Cancelled, not of status=Accepted"):
        await service.list_scans(status="Accepted", cursor=first.next_cursor)
    unfiltered = await service.list_scans(limit=1)
    with pytest.raises(ValidationError, match="continues the list of every status, not of status=Cancelled"):
        await service.list_scans(status="Cancelled", cursor=unfiltered.next_cursor)


@pytest.mark.parametrize("cursor", ["", "!!", "a" * 300, "Kjo", "WHo", "Qm9ndXM6eA"])  # "Bogus:x" last
async def test_a_cursor_scanq_did_not_make_is_refused(service: ScanService, cursor: str) -> None:
    await service.submit(SubmitRequest())
    with pytest.raises(ValidationError, match="invalid cursor"):
        await service.list_scans(cursor=cursor)


async def test_stats_count_every_status_and_age_the_oldest_accepted(service: ScanService, store: MemoryStore) -> None:
    empty = await service.stats()
    old = datetime.now(UTC) - timedelta(seconds=30)
    await store.create(scan=NewScan(scan_id=new_scan_id(), created_at=old))
    await service.submit(SubmitRequest())

    stats = await service.stats()

    assert empty.counts == dict.fromkeys(ScanStatus, 0)
    assert empty.oldest_accepted_age_s is None
    assert stats.counts == {**dict.fromkeys(ScanStatus, 0), ScanStatus.ACCEPTED: 2}
    assert stats.oldest_accepted_age_s is not None
    assert 30 <= stats.oldest_accepted_age_s < 40
