"""MongoDB: fair keys (``Store`` rule 9) and the per-tenant queue (``tenant_queues``).

A scan's ``fair_key`` is the virtual start time of weighted fair queueing, in epoch
seconds: ``max(now, the tenant's last key) + 1 / weight``. The tenants' last keys are
``<collection>_tenant_clocks``, one document per tenant: ``{_id: tenant, last_key,
weight}``. A batch of creates reserves its keys with one atomic pipeline update per
tenant (``reserve``): the update moves ``last_key`` by ``count / weight`` and answers
the document as it was, so the range ``(max(now, last_key), … + count / weight]`` is
this batch's alone, whichever process races it. The weight sits in the clock
document too, a copy of ``TenantLimits.weight`` that ``set_tenant_limits`` writes
(and ``sync_weights`` repairs on open): the update then reads it in the same atomic
step, with no read of the limits on the create path.

``create_many`` runs ``reserve`` inside its transaction (an aborted batch moves no
clock); the group commit's unordered insert and a standalone server's batch reserve
first and insert after, so a batch that fails (a duplicate id, an outage) leaves a
gap in its tenant's keys: that tenant's next scans sort a little later, nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from scanq.models import DEFAULT_TENANT, NewScan, ScanStatus, TenantQueue
from scanq.store.mongo.rows import EPOCH, Document, as_utc

if TYPE_CHECKING:
    from pymongo.asynchronous.client_session import AsyncClientSession
    from pymongo.asynchronous.collection import AsyncCollection

CLOCKS_SUFFIX = "_tenant_clocks"
UPSERT_ATTEMPTS = 2  # two first upserts of one tenant can race: the loser's duplicate key is retried once
LIVE_STATUSES = [ScanStatus.ACCEPTED.value, ScanStatus.RUNNING.value]


def clock_update(count: int, now_s: float) -> list[Document]:
    """``last_key = max(now, last_key) + count / weight`` (weight 1 without one), atomically."""
    start = {"$max": [now_s, {"$ifNull": ["$last_key", 0.0]}]}
    return [{"$set": {"last_key": {"$add": [start, {"$divide": [count, {"$ifNull": ["$weight", 1.0]}]}]}}}]


async def reserve_range(
    clocks: AsyncCollection[Document],
    tenant: str,
    count: int,
    *,
    now: datetime,
    session: AsyncClientSession | None = None,
) -> list[float]:
    """``count`` consecutive fair keys of ``tenant``: one atomic update of its clock.

    The last key is computed as the server computed the new ``last_key`` (``start + count / weight``),
    so it equals it exactly and the next batch starts strictly after it.
    """
    now_s = now.timestamp()
    for attempt in range(UPSERT_ATTEMPTS):
        try:
            before = await clocks.find_one_and_update(
                {"_id": tenant},
                clock_update(count, now_s),
                upsert=True,
                return_document=ReturnDocument.BEFORE,
                session=session,
            )
            break
        except DuplicateKeyError:
            if attempt + 1 == UPSERT_ATTEMPTS or session is not None:
                raise
    last = before.get("last_key") if before is not None else None
    weight = before.get("weight") if before is not None else None
    start = max(now_s, 0.0 if last is None else float(last))
    per_key = 1.0 if weight is None else float(weight)  # what the update divided by
    return [start + (index + 1) / per_key for index in range(count)]


async def reserve(
    clocks: AsyncCollection[Document],
    scans: Sequence[NewScan],
    *,
    now: datetime,
    session: AsyncClientSession | None = None,
) -> list[float]:
    """One fair key per scan, in order: a tenant's scans take consecutive keys, one update per tenant.

    Without a session the tenants' updates run concurrently; a session's are sequential (a session,
    and the transaction in it, runs one operation at a time).
    """
    counts: dict[str, int] = {}
    for new in scans:
        counts[new.tenant] = counts.get(new.tenant, 0) + 1
    if session is None:
        ranges = await asyncio.gather(*(reserve_range(clocks, t, n, now=now) for t, n in counts.items()))
    else:
        ranges = [await reserve_range(clocks, t, n, now=now, session=session) for t, n in counts.items()]
    keys = {tenant: iter(taken) for tenant, taken in zip(counts, ranges, strict=True)}
    return [next(keys[new.tenant]) for new in scans]


def usable_weight(weight: Any) -> float:
    """The weight a clock keeps: the tenant's, or 1 when it has none or one no key can be divided by."""
    return float(weight) if isinstance(weight, int | float) and weight > 0 else 1.0


async def set_weight(clocks: AsyncCollection[Document], tenant: str, weight: float) -> None:
    """Copy a tenant's weight into its clock, where ``reserve`` reads it."""
    await clocks.update_one({"_id": tenant}, {"$set": {"weight": usable_weight(weight)}}, upsert=True)


async def sync_weights(clocks: AsyncCollection[Document], limits: AsyncCollection[Document]) -> int:
    """Make every clock's weight its tenant's (on open: repairs a ``set_tenant_limits`` cut short); how many changed."""
    found = limits.find({}, {"weight": True})
    wanted = {doc["_id"]: usable_weight(doc.get("weight")) async for doc in found}
    if not wanted:
        return 0
    copies = clocks.find({"_id": {"$in": list(wanted)}}, {"weight": True})
    held = {doc["_id"]: doc.get("weight") async for doc in copies}
    updates = [
        UpdateOne({"_id": tenant}, {"$set": {"weight": weight}}, upsert=True)
        for tenant, weight in wanted.items()
        if held.get(tenant) != weight
    ]
    if updates:
        await clocks.bulk_write(updates, ordered=False)
    return len(updates)


async def tenant_queues(scans: AsyncCollection[Document], *, limit: int) -> list[TenantQueue]:
    """The tenants with Accepted or Running scans, most first, then by name; each with its oldest Accepted scan.

    The counts are one aggregation over the ``tenant_status`` index, whose (tenant, status) keys are
    all it needs: two status ranges per tenant, finished scans skipped. The oldest Accepted scan of
    each tenant shown is the first key of its range of ``tenant_oldest_accepted`` (concurrently).
    A document without a tenant (not adopted yet) counts as the default tenant's.
    """
    if limit <= 0:
        return []
    pipeline: list[Document] = [
        {"$match": {"status": {"$in": LIVE_STATUSES}}},
        {"$group": {"_id": {"tenant": "$tenant", "status": "$status"}, "count": {"$sum": 1}}},
    ]
    counts: dict[str, list[int]] = {}
    async for row in await scans.aggregate(pipeline, hint="tenant_status"):
        tenant = row["_id"].get("tenant") or DEFAULT_TENANT
        entry = counts.setdefault(tenant, [0, 0])
        entry[0 if row["_id"].get("status") == ScanStatus.ACCEPTED.value else 1] += row["count"]
    ordered = sorted(counts.items(), key=lambda item: (-(item[1][0] + item[1][1]), item[0]))[:limit]
    oldest = await asyncio.gather(*(_oldest_accepted(scans, tenant, accepted) for tenant, (accepted, _) in ordered))
    return [
        TenantQueue(tenant=tenant, accepted=accepted, running=running, oldest_accepted_at=at)
        for (tenant, (accepted, running)), at in zip(ordered, oldest, strict=True)
    ]


async def _oldest_accepted(scans: AsyncCollection[Document], tenant: str, accepted: int) -> datetime | None:
    if not accepted:
        return None
    of_tenant: Any = {"$in": [tenant, None]} if tenant == DEFAULT_TENANT else tenant
    doc = await scans.find_one(
        {"tenant": of_tenant, "status": ScanStatus.ACCEPTED.value},
        projection={"created_at": True},
        sort=[("created_at", ASCENDING)],
    )
    if doc is None:
        return None
    return as_utc(doc.get("created_at")) or EPOCH


__all__ = [
    "CLOCKS_SUFFIX",
    "reserve",
    "reserve_range",
    "set_weight",
    "sync_weights",
    "tenant_queues",
    "usable_weight",
]
