"""Tenants in the scan service (callers of tenants A and B, and an admin) and the authentication settings."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from scanq.config import Settings
from scanq.exceptions import ConfigError, Forbidden, QuotaExceeded, ScanNotFound
from scanq.models import OPERATOR, Actor, Caller, Page, Scan, ScanStatus, Scope, Stats, TenantLimits
from scanq.scanners import ScannerRegistry
from scanq.scans import ScanService, SubmitRequest
from scanq.store.memory import MemoryStore

ALL = frozenset({Scope.SUBMIT, Scope.READ, Scope.CANCEL})
ALICE = Caller(tenant="tenant-a", scopes=ALL, actor=Actor(token_id="tok_a", token_name="a-ci"))
BOB = Caller(tenant="tenant-b", scopes=ALL, actor=Actor(token_id="tok_b", token_name="b-ci"))
ADMIN = Caller(tenant="ops", scopes=frozenset({Scope.ADMIN}), actor=Actor(token_id="tok_admin"))


class CountingStore(MemoryStore):
    """Counts every read a refused call could have made."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.reads = 0

    async def get(self, *, scan_id: str, tenant: str | None = None) -> Scan:
        self.reads += 1
        return await super().get(scan_id=scan_id, tenant=tenant)

    async def list_scans(
        self, *, status: ScanStatus | None = None, limit: int = 50, cursor: str | None = None, tenant: str | None = None
    ) -> Page:
        self.reads += 1
        return await super().list_scans(status=status, limit=limit, cursor=cursor, tenant=tenant)

    async def stats(self, *, tenant: str | None = None) -> Stats:
        self.reads += 1
        return await super().stats(tenant=tenant)


@pytest.fixture
async def store() -> AsyncIterator[CountingStore]:
    async with CountingStore(f"memory://{uuid.uuid4()}") as store:
        yield store


@pytest.fixture
def service(store: MemoryStore) -> ScanService:
    config = Settings(default_scanner="noop", max_batch=10)
    return ScanService(store, ScannerRegistry(config), config)


def without(caller: Caller, scope: Scope) -> Caller:
    return Caller(tenant=caller.tenant, scopes=caller.scopes - {scope}, actor=caller.actor)


async def everything(store: MemoryStore) -> dict[str, Scan]:
    """Every stored scan by id, read straight from the store (no tenant filter)."""
    return {scan.scan_id: scan for scan in (await MemoryStore.list_scans(store, limit=1000)).scans}


async def ids(page: Awaitable[Page]) -> set[str]:
    return {scan.scan_id for scan in (await page).scans}


async def submit(service: ScanService, caller: Caller, count: int = 1) -> list[Scan]:
    return [(await service.submit(SubmitRequest(), caller=caller)).scan for _ in range(count)]


# -- submissions ---------------------------------------------------------------------------------


async def test_a_submission_gets_the_callers_tenant_and_token(service: ScanService, store: MemoryStore) -> None:
    scan = (await service.submit(SubmitRequest(), caller=ALICE)).scan

    assert (scan.tenant, scan.submitted_by) == ("tenant-a", ALICE.actor)
    assert (await store.get(scan_id=scan.scan_id)).submitted_by == Actor(token_id="tok_a", token_name="a-ci")


async def test_a_batch_gets_the_callers_tenant_and_token(service: ScanService) -> None:
    scans = await service.submit_many([SubmitRequest(), SubmitRequest()], caller=BOB)

    assert {(scan.tenant, scan.submitted_by) for scan in scans} == {("tenant-b", BOB.actor)}


async def test_an_admin_submits_to_its_own_tenant(service: ScanService) -> None:
    (scan,) = await submit(service, ADMIN)

    assert scan.tenant == "ops"


async def test_the_operator_submits_to_the_default_tenant_without_a_token(service: ScanService) -> None:
    (scan,) = await submit(service, OPERATOR)

    assert (scan.tenant, scan.submitted_by) == ("default", None)


# -- another tenant's scans ----------------------------------------------------------------------


async def test_another_tenants_scan_is_not_found(service: ScanService) -> None:
    (scan,) = await submit(service, ALICE)

    with pytest.raises(ScanNotFound) as refused:
        await service.get(scan.scan_id, caller=BOB)

    assert refused.value.scan_id == scan.scan_id
    assert (await service.get(scan.scan_id, caller=ALICE)).scan_id == scan.scan_id


async def test_another_tenants_scan_cannot_be_cancelled_and_stays_as_it_was(
    service: ScanService, store: MemoryStore
) -> None:
    (scan,) = await submit(service, ALICE)

    with pytest.raises(ScanNotFound):
        await service.cancel(scan.scan_id, caller=BOB)

    after = await store.get(scan_id=scan.scan_id)
    assert after == scan
    assert (after.status, after.cancel_requested, after.cancelled_by) == (ScanStatus.ACCEPTED, False, None)


async def test_lists_and_stats_cover_the_callers_tenant_only(service: ScanService) -> None:
    mine = {scan.scan_id for scan in await submit(service, ALICE, 2)}
    theirs = {scan.scan_id for scan in await submit(service, BOB, 3)}

    assert await ids(service.list_scans(caller=ALICE)) == mine
    assert await ids(service.list_scans(caller=BOB)) == theirs
    assert (await service.stats(caller=ALICE)).counts[ScanStatus.ACCEPTED] == 2
    assert (await service.stats(caller=BOB)).counts[ScanStatus.ACCEPTED] == 3


async def test_a_list_page_by_page_stays_in_the_callers_tenant(service: ScanService) -> None:
    mine = {scan.scan_id for scan in await submit(service, ALICE, 3)}
    await submit(service, BOB, 3)

    first = await service.list_scans(limit=2, caller=ALICE)
    assert first.next_cursor is not None
    second = await service.list_scans(limit=2, cursor=first.next_cursor, caller=ALICE)

    assert {scan.scan_id for scan in first.scans + second.scans} == mine
    assert second.next_cursor is None


async def test_asking_for_another_tenant_is_forbidden(service: ScanService, store: CountingStore) -> None:
    await submit(service, ALICE)
    reads = store.reads

    with pytest.raises(Forbidden, match="admin"):
        await service.list_scans(tenant="tenant-a", caller=BOB)
    with pytest.raises(Forbidden, match="admin"):
        await service.stats(tenant="tenant-a", caller=BOB)
    with pytest.raises(Forbidden, match="admin"):
        await service.throughput(window_s=60, step_s=10, tenant="tenant-a", caller=BOB)

    assert store.reads == reads


async def test_asking_for_ones_own_tenant_by_name_is_fine(service: ScanService) -> None:
    await submit(service, ALICE)
    (own,) = await submit(service, BOB)

    assert await ids(service.list_scans(tenant="tenant-b", caller=BOB)) == {own.scan_id}
    assert (await service.stats(tenant="tenant-b", caller=BOB)).counts[ScanStatus.ACCEPTED] == 1


async def test_an_admin_sees_every_tenant_and_filters_by_one(service: ScanService) -> None:
    alices = {scan.scan_id for scan in await submit(service, ALICE, 2)}
    bobs = {scan.scan_id for scan in await submit(service, BOB, 1)}

    assert await ids(service.list_scans(caller=ADMIN)) == alices | bobs
    assert await ids(service.list_scans(tenant="tenant-a", caller=ADMIN)) == alices
    assert await ids(service.list_scans(tenant="tenant-b", caller=ADMIN)) == bobs
    assert (await service.stats(caller=ADMIN)).counts[ScanStatus.ACCEPTED] == 3
    assert (await service.stats(tenant="tenant-a", caller=ADMIN)).counts[ScanStatus.ACCEPTED] == 2
    assert (await service.get(next(iter(bobs)), caller=ADMIN)).tenant == "tenant-b"


async def test_an_admin_cancels_any_tenants_scan_and_is_recorded(service: ScanService) -> None:
    (scan,) = await submit(service, ALICE)

    cancelled = await service.cancel(scan.scan_id, caller=ADMIN)

    assert (cancelled.status, cancelled.tenant, cancelled.cancelled_by) == (
        ScanStatus.CANCELLED,
        "tenant-a",
        ADMIN.actor,
    )


async def test_a_cancel_records_who_cancelled(service: ScanService, store: MemoryStore) -> None:
    (scan,) = await submit(service, ALICE)

    await service.cancel(scan.scan_id, caller=ALICE)

    stored = await store.get(scan_id=scan.scan_id)
    assert (stored.status, stored.cancelled_by) == (ScanStatus.CANCELLED, ALICE.actor)


async def test_cancelling_twice_answers_the_cancelled_scan(service: ScanService) -> None:
    (scan,) = await submit(service, ALICE)
    await service.cancel(scan.scan_id, caller=ALICE)

    again = await service.cancel(scan.scan_id, caller=ALICE)

    assert (again.status, again.cancelled_by) == (ScanStatus.CANCELLED, ALICE.actor)
    with pytest.raises(ScanNotFound):
        await service.cancel(scan.scan_id, caller=BOB)


# -- scopes --------------------------------------------------------------------------------------


async def test_submitting_without_the_submit_scope_is_forbidden_and_writes_nothing(
    service: ScanService, store: MemoryStore
) -> None:
    caller = without(ALICE, Scope.SUBMIT)

    with pytest.raises(Forbidden, match="'submit'"):
        await service.submit(SubmitRequest(), idempotency_key="k", caller=caller)
    with pytest.raises(Forbidden, match="'submit'"):
        await service.submit_many([SubmitRequest()], caller=caller)

    assert await everything(store) == {}


async def test_cancelling_without_the_cancel_scope_is_forbidden_and_changes_nothing(
    service: ScanService, store: MemoryStore
) -> None:
    await submit(service, ALICE)
    before = await everything(store)

    with pytest.raises(Forbidden, match="'cancel'"):
        await service.cancel(next(iter(before)), caller=without(ALICE, Scope.CANCEL))

    assert await everything(store) == before


@pytest.mark.parametrize(
    "read",
    [
        lambda service, scan_id, caller: service.get(scan_id, caller=caller),
        lambda service, scan_id, caller: service.list_scans(caller=caller),
        lambda service, scan_id, caller: service.stats(caller=caller),
        lambda service, scan_id, caller: service.throughput(window_s=60, step_s=10, caller=caller),
    ],
    ids=["get", "list", "stats", "throughput"],
)
async def test_reading_without_the_read_scope_is_forbidden_before_the_store_is_read(
    service: ScanService, store: CountingStore, read: Callable[[ScanService, str, Caller], Awaitable[Any]]
) -> None:
    (scan,) = await submit(service, ALICE)
    reads = store.reads

    with pytest.raises(Forbidden, match="'read'"):
        await read(service, scan.scan_id, without(ALICE, Scope.READ))

    assert store.reads == reads


async def test_each_scope_allows_only_its_own_operation(service: ScanService) -> None:
    (scan,) = await submit(service, ALICE)
    reader = Caller(tenant="tenant-a", scopes=frozenset({Scope.READ}))

    assert (await service.get(scan.scan_id, caller=reader)).scan_id == scan.scan_id
    with pytest.raises(Forbidden):
        await service.submit(SubmitRequest(), caller=reader)
    with pytest.raises(Forbidden):
        await service.cancel(scan.scan_id, caller=reader)


# -- quotas and idempotency per tenant -----------------------------------------------------------


async def test_a_submission_over_the_quota_writes_nothing(service: ScanService, store: MemoryStore) -> None:
    await store.set_tenant_limits(limits=TenantLimits(tenant="tenant-a", max_queued=2))
    await submit(service, ALICE, 2)
    before = await everything(store)

    with pytest.raises(QuotaExceeded, match="at most 2 unfinished scans") as refused:
        await service.submit(SubmitRequest(), idempotency_key="over", caller=ALICE)
    with pytest.raises(QuotaExceeded):
        await service.submit_many([SubmitRequest()], caller=ALICE)

    assert refused.value.retry_after_s > 0
    assert await everything(store) == before


async def test_a_batch_crossing_the_quota_is_refused_whole(service: ScanService, store: MemoryStore) -> None:
    await store.set_tenant_limits(limits=TenantLimits(tenant="tenant-a", max_queued=3))
    await submit(service, ALICE, 1)

    with pytest.raises(QuotaExceeded):
        await service.submit_many([SubmitRequest()] * 3, caller=ALICE)

    assert len(await everything(store)) == 1
    assert len(await service.submit_many([SubmitRequest()] * 2, caller=ALICE)) == 2


async def test_one_tenants_quota_does_not_limit_another(service: ScanService, store: MemoryStore) -> None:
    await store.set_tenant_limits(limits=TenantLimits(tenant="tenant-a", max_queued=0))

    with pytest.raises(QuotaExceeded):
        await submit(service, ALICE)
    assert len(await submit(service, BOB, 3)) == 3


async def test_the_same_idempotency_key_in_two_tenants_makes_two_scans(service: ScanService) -> None:
    a = await service.submit(SubmitRequest(), idempotency_key="nightly", caller=ALICE)
    b = await service.submit(SubmitRequest(), idempotency_key="nightly", caller=BOB)
    a_again = await service.submit(SubmitRequest(), idempotency_key="nightly", caller=ALICE)

    assert a.is_new and b.is_new and not a_again.is_new
    assert a.scan.scan_id != b.scan.scan_id
    assert (a.scan.tenant, b.scan.tenant) == ("tenant-a", "tenant-b")
    assert a_again.scan.scan_id == a.scan.scan_id


# -- the authentication settings -----------------------------------------------------------------


def test_tokens_are_required_off_loopback_and_not_on_it_by_default() -> None:
    assert Settings(host="0.0.0.0").auth_required
    assert Settings(host="192.0.2.7").auth_required
    assert not Settings().auth_required
    assert not Settings(host="localhost").auth_required
    assert not Settings(host="::1").auth_required


def test_auth_tokens_requires_tokens_even_on_loopback() -> None:
    assert Settings(auth="tokens").auth_required


def test_auth_off_on_loopback_is_allowed_without_the_flag() -> None:
    assert not Settings(auth="off").auth_required


def test_auth_off_on_a_public_address_is_refused_naming_the_insecure_flag() -> None:
    with pytest.raises(ConfigError, match="--insecure-no-auth") as refused:
        Settings(auth="off", host="0.0.0.0")

    assert refused.value.setting == "auth"
    assert "0.0.0.0" in refused.value.message


def test_auth_off_on_a_public_address_is_allowed_with_insecure_no_auth() -> None:
    settings = Settings(auth="off", host="0.0.0.0", insecure_no_auth=True)

    assert not settings.auth_required


@pytest.mark.parametrize(
    ("cert", "key", "refused"),
    [("cert.pem", "", "tls_key"), ("", "key.pem", "tls_cert")],
)
def test_half_a_tls_configuration_is_refused(cert: str, key: str, refused: str) -> None:
    with pytest.raises(ConfigError, match="needs both --tls-cert and --tls-key") as error:
        Settings(tls_cert=cert, tls_key=key)

    assert error.value.setting == refused


def test_both_tls_files_are_accepted() -> None:
    assert Settings(tls_cert="cert.pem", tls_key="key.pem").tls_key == "key.pem"


def test_an_unknown_auth_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="auto, tokens or off") as refused:
        Settings(auth="bogus")

    assert refused.value.setting == "auth"
