"""Per-tenant quotas: how many unfinished scans a tenant may hold, and how fast it may submit.

The queued limit is read from the store's per-tenant counts (kept in O(1) by
every backend), so it holds across every ingest process; it is checked before
the insert, so processes submitting at the same instant may overshoot it by
the scans they had in flight. The rate limit is a token bucket in this process:
N ingest processes let a tenant submit up to N times its rate. A tenant's
limits are re-read from the store at most once a second.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from scanq.exceptions import QuotaExceeded
from scanq.models import ScanStatus, TenantLimits
from scanq.shared_reads import SharedReads
from scanq.store import Store

LIMITS_CACHE_S = 1.0
# A client over its queued limit waits for scans to finish: tell it to come back in a few seconds.
QUEUED_RETRY_AFTER_S = 5.0


@dataclass(slots=True)
class _Bucket:
    rate: float
    tokens: float
    at: float


class QuotaGuard:
    """Refuse submissions that would take a tenant over its limits (``QuotaExceeded``, nothing written).

    Args:
        store: the open store holding limits and counts.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._limits: dict[str, tuple[float, TenantLimits]] = {}
        self._buckets: dict[str, _Bucket] = {}
        # One read per tenant at a time: the submissions that find the cache stale meanwhile wait for it.
        self._reads: SharedReads[str, tuple[float, TenantLimits]] = SharedReads(self._limits.__setitem__)

    async def admit(self, tenant: str, scans: int = 1) -> None:
        """Take ``scans`` submissions of ``tenant`` past both limits, all or none (a batch is refused whole)."""
        cached = self._limits.get(tenant)
        if cached is not None and time.monotonic() - cached[0] < LIMITS_CACHE_S:
            limits = cached[1]  # every submission but one a second per tenant: no coroutine for the cache
        else:
            limits = await self.limits(tenant)
        if limits.max_queued is None and limits.rate_per_s is None:
            return
        if limits.max_queued is not None:
            stats = await self._store.stats(tenant=tenant)
            queued = stats.counts.get(ScanStatus.ACCEPTED, 0) + stats.counts.get(ScanStatus.RUNNING, 0)
            if scans > limits.max_queued:
                raise QuotaExceeded(
                    f"tenant {tenant!r} may hold at most {limits.max_queued} unfinished scans: a batch of {scans} "
                    "can never fit; split it",
                    retry_after_s=QUEUED_RETRY_AFTER_S,
                )
            if queued + scans > limits.max_queued:
                raise QuotaExceeded(
                    f"tenant {tenant!r} may hold at most {limits.max_queued} unfinished scans "
                    f"(Accepted + Running: {queued} now, {scans} more asked)",
                    retry_after_s=QUEUED_RETRY_AFTER_S,
                )
        if limits.rate_per_s is not None:
            self._take(tenant, limits.rate_per_s, scans)

    async def limits(self, tenant: str) -> TenantLimits:
        """``tenant``'s limits, from the store at most once per ``LIMITS_CACHE_S``."""
        now = time.monotonic()
        cached = self._limits.get(tenant)
        if cached is not None and now - cached[0] < LIMITS_CACHE_S:
            return cached[1]
        return (await self._reads.read(tenant, lambda: self._read(tenant, read_at=now)))[1]

    async def _read(self, tenant: str, *, read_at: float) -> tuple[float, TenantLimits]:
        return read_at, await self._store.get_tenant_limits(tenant=tenant)

    def _take(self, tenant: str, rate: float, scans: int) -> None:
        """The token bucket: ``rate`` per second, a burst of one second's worth (at least one batch of 1)."""
        now = time.monotonic()
        capacity = max(rate, 1.0)
        bucket = self._buckets.get(tenant)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[tenant] = _Bucket(rate=rate, tokens=capacity, at=now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if scans > capacity:
            raise QuotaExceeded(
                f"tenant {tenant!r} may submit {rate:g} scans per second: a batch of {scans} is more than one "
                f"second's worth ({math.floor(capacity)}); split it",
                retry_after_s=1.0,
            )
        if bucket.tokens < scans:
            wait = (scans - bucket.tokens) / rate
            raise QuotaExceeded(
                f"tenant {tenant!r} may submit {rate:g} scans per second", retry_after_s=max(wait, 0.001)
            )
        bucket.tokens -= scans


__all__ = ["LIMITS_CACHE_S", "QuotaGuard"]
