"""Helpers shared by the contract suite's files: scan builders, lease shortcuts and event-driven waits.

Written only against ``scanq.store.base.Store``. Data stays small (hundreds of
rows; the fairness tests' thousands shrink on MongoDB, see ``per_backend``) and leases short,
so the suite is quick on the slowest backend too.
Timestamps are made at millisecond precision, the coarsest a backend keeps.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from scanq.ids import new_scan_id
from scanq.models import ApiToken, Lease, NewScan, Scan, ScanStatus, Scope
from scanq.store import Store

StoreFactory = Callable[[], Awaitable[Store]]

LEASE_S = 0.3
LONG_LEASE_S = 30.0
DEADLINE_S = 10.0
# Many claimers on separate stores racing for one queue; sized for the slowest backend (SecantusDB).
RACE_CLAIMERS = 16
RACE_SCANS = 120
# A hang guard, not a speed goal: under MONGO_CASE_TIMEOUT_S (tests/conftest.py) so a stuck race names itself.
RACE_DEADLINE_S = 240.0
WAKE_PROBE_S = 0.2
# SecantusDB (the MongoDB the suite starts) writes and claims several times slower than the other backends:
# a test with thousands of scans runs a smaller version of itself there (``per_backend``), same shape and bounds.
SLOW_SCHEMES = ("mongodb",)
# Clocks: the store may take "now" from a server on this machine; allow for rounding and scheduling.
CLOCK_SLACK = timedelta(seconds=2)
# Two reads of one stored time: a backend may keep milliseconds only (MongoDB) and answer a write with its own now.
SAME_INSTANT = timedelta(milliseconds=1)


def now_ms() -> datetime:
    """Now, truncated to whole milliseconds so every backend stores it exactly."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_scan(**fields: Any) -> NewScan:
    """A submission with a fresh id, created now; ``fields`` (``tenant``, ``submitted_by``, ...) override."""
    return NewScan(**{"scan_id": new_scan_id(), "created_at": now_ms(), **fields})


def secret_hash() -> str:
    """The SHA-256 of a fresh random secret, as scanq stores it (never the secret)."""
    return hashlib.sha256(secrets.token_bytes(32)).hexdigest()


def new_token(**fields: Any) -> ApiToken:
    """An API token of tenant ``acme`` with a fresh id and secret hash, created now; ``fields`` override."""
    return ApiToken(
        **{
            "token_id": f"tok_{secrets.token_hex(8)}",
            "tenant": "acme",
            "scopes": frozenset({Scope.SUBMIT, Scope.READ}),
            "secret_hash": secret_hash(),
            "created_at": now_ms(),
            **fields,
        }
    )


def lease_of(scan: Scan) -> Lease:
    assert scan.lease_owner is not None
    return Lease(scan_id=scan.scan_id, worker_id=scan.lease_owner, attempt=scan.attempt)


def assert_near(actual: datetime | None, expected: datetime) -> None:
    assert actual is not None
    assert actual.tzinfo is not None
    assert abs(actual - expected) <= CLOCK_SLACK, (actual, expected)


def assert_same_instant(actual: datetime | None, expected: datetime | None) -> None:
    """Both None, or the same moment within ``SAME_INSTANT`` (timezone-aware)."""
    if expected is None:
        assert actual is None
        return
    assert actual is not None
    assert actual.tzinfo is not None
    assert abs(actual - expected) <= SAME_INSTANT, (actual, expected)


async def claim_one(store: Store, *, worker_id: str = "w1", lease_s: float = LONG_LEASE_S) -> Scan:
    claimed = await store.claim(worker_id=worker_id, limit=1, lease_s=lease_s)
    assert len(claimed) == 1
    return claimed[0]


async def requeue_when_expired(store: Store, *, count: int = 1) -> None:
    """Run the reaper until it has handled ``count`` expired leases (event-driven, with a deadline)."""
    handled = 0
    async with asyncio.timeout(DEADLINE_S):
        while handled < count:
            handled += await store.requeue_expired()
            if handled < count:
                await asyncio.sleep(0.05)
    assert handled == count


async def settle_wake_up(store: Store) -> None:
    """Wait until ``wait_for_work`` sleeps a whole timeout.

    A backend may return early while it opens its wake-up channel (work that came
    before it listened is claimable now); a test of the steady state starts after.
    """
    async with asyncio.timeout(DEADLINE_S):
        while True:
            started = time.monotonic()
            await store.wait_for_work(timeout_s=WAKE_PROBE_S)
            if time.monotonic() - started >= WAKE_PROBE_S * 0.8:
                return


async def all_scans(store: Store, *, status: ScanStatus | None = None, limit: int = 50) -> list[Scan]:
    scans: list[Scan] = []
    cursor: str | None = None
    while True:
        page = await store.list_scans(status=status, limit=limit, cursor=cursor)
        scans.extend(page.scans)
        if page.next_cursor is None:
            return scans
        cursor = page.next_cursor


def per_backend(database_url: str, *, fast: int, slow: int) -> int:
    """``fast`` on every backend but the slow one (MongoDB, see ``SLOW_SCHEMES``), where ``slow``."""
    return slow if urlsplit(database_url).scheme.startswith(SLOW_SCHEMES) else fast
