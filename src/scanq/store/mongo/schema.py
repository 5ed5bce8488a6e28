"""The MongoDB store's schema: its indexes, and the changes an older collection needs (run by ``open``).

MongoDB has no migrations table: each step is idempotent and cheap once done, so
every ``open`` runs them all, in this order.

1. ``create_indexes`` (idempotent) for the scans (``statements.INDEXES`` and the outbox's
   ``eventlog.OUTBOX_INDEX``), the tokens (``accounts``), the target slots (``slots``), the event
   log (``eventlog``) and the webhooks (``webhooks``; the tenant limits and clocks and the event
   marks need none: each is its document's ``_id``). Scans written before the event log have no
   outbox: they simply have no events before their next transition.
2. Tenants: a scan written before tenants has no ``tenant``; it gets ``DEFAULT_TENANT``, so the
   (tenant, …) indexes count and list it. One ``update_many`` on the ``tenant: null`` range of the
   ``tenant_status`` index: it writes once, after that it reads an empty range. (Documents the
   original system keeps inserting get their tenant from the adoption, ``legacy.py``; until then
   they read as the default tenant's.)
3. Fair keys (rule 9): an Accepted or Running scan written before them has no ``fair_key``; it
   gets its ``created_at`` in epoch seconds, so the old scans keep their order among themselves
   (one of the original system, without ``created_at``, gets the time of the open, as its adoption
   does; before this a missing key sorts first: such scans are claimed all the same). One ``update_many``
   on the ``fair_key: null`` range of the ``fair_claim`` index, under each (status, priority):
   after the first open it reads empty ranges.
4. The clocks' copies of the tenants' weights are made the limits' (``fairness.sync_weights``).
5. Replaced indexes are dropped (the idempotency key alone, now unique per tenant; ``claim``, now
   ``fair_claim``): after step 2, so the old unique index still guards the keys while the tenants
   are filled in, and after step 3, which reads the new claim index. Likewise the deliveries'
   ``ended_by_event`` (deliveries are now pruned by their last attempt, ``ended_by_attempt``).
   Scans written before callbacks have no ``callback_url``: they read as None.
"""

from __future__ import annotations

import logging
from datetime import datetime

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from scanq.models import DEFAULT_TENANT, ScanStatus
from scanq.store.mongo import statements as st
from scanq.store.mongo.accounts import LIMITS_SUFFIX, TOKEN_INDEXES, TOKENS_SUFFIX
from scanq.store.mongo.errors import DUPLICATE_KEY
from scanq.store.mongo.eventlog import EVENT_INDEXES, EVENTS_SUFFIX, OUTBOX_INDEX
from scanq.store.mongo.events import DELIVERIES_SUFFIX
from scanq.store.mongo.fairness import CLOCKS_SUFFIX, sync_weights
from scanq.store.mongo.rows import Document
from scanq.store.mongo.slots import SLOT_INDEXES, SLOTS_SUFFIX
from scanq.store.mongo.webhooks import (
    DELIVERY_INDEXES,
    ENDPOINT_INDEXES,
    ENDPOINTS_SUFFIX,
    REPLACED_DELIVERY_INDEXES,
)

logger = logging.getLogger(__name__)

INDEX_NOT_FOUND = 27


async def prepare(scans: AsyncCollection[Document], *, now: datetime) -> None:
    """Create the indexes and bring ``scans`` written by an older scanq up to date (see the module docstring)."""

    def beside(suffix: str) -> AsyncCollection[Document]:
        return scans.database.get_collection(scans.name + suffix)

    await scans.create_indexes([*st.INDEXES, OUTBOX_INDEX])
    await beside(TOKENS_SUFFIX).create_indexes(TOKEN_INDEXES)
    await beside(SLOTS_SUFFIX).create_indexes(SLOT_INDEXES)
    await beside(EVENTS_SUFFIX).create_indexes(EVENT_INDEXES)
    await beside(ENDPOINTS_SUFFIX).create_indexes(ENDPOINT_INDEXES)
    await beside(DELIVERIES_SUFFIX).create_indexes(DELIVERY_INDEXES)
    await fill_default_tenant(scans)
    await fill_fair_keys(scans, now=now)
    await sync_weights(beside(CLOCKS_SUFFIX), beside(LIMITS_SUFFIX))
    await drop_indexes(scans, st.REPLACED_INDEXES)
    await drop_indexes(beside(DELIVERIES_SUFFIX), REPLACED_DELIVERY_INDEXES)


async def drop_indexes(collection: AsyncCollection[Document], names: tuple[str, ...]) -> None:
    """Drop the indexes ``names`` of ``collection`` that exist (a replaced index costs every write)."""
    existing = await collection.index_information()
    for name in names:
        if name in existing:
            try:
                await collection.drop_index(name)
            except OperationFailure as exc:
                if exc.code != INDEX_NOT_FOUND:
                    raise
                continue  # another process opening the store at the same time dropped it first
            logger.info("dropped the replaced index %s of %s", name, collection.name)


async def fill_default_tenant(scans: AsyncCollection[Document]) -> int:
    """Give every scan without a tenant the default one; return how many changed."""
    try:
        result = await scans.update_many({"tenant": {"$exists": False}}, {"$set": {"tenant": DEFAULT_TENANT}})
    except OperationFailure as exc:
        if exc.code != DUPLICATE_KEY:
            raise
        # A scan without a tenant repeats an idempotency key the default tenant already has (written by
        # an older scanq after the old index was dropped): it stays without one and reads as the default's.
        logger.warning("some scans without a tenant keep none: %s", exc)
        return 0
    if result.modified_count:
        logger.info("gave %d scans written before tenants the tenant %r", result.modified_count, DEFAULT_TENANT)
    return result.modified_count


async def fill_fair_keys(scans: AsyncCollection[Document], *, now: datetime) -> int:
    """Give every live scan without a fair key its ``created_at`` in epoch seconds; how many changed.

    A document of the original system has no ``created_at`` yet: it gets ``now``, as the adoption
    that follows gives it (``legacy``).
    """
    live = [ScanStatus.ACCEPTED.value, ScanStatus.RUNNING.value]
    since_epoch = {"$divide": [{"$toLong": "$created_at"}, 1000]}
    result = await scans.update_many(
        {"status": {"$in": live}, "fair_key": None},
        [{"$set": {"fair_key": {"$ifNull": [since_epoch, now.timestamp()]}}}],
    )
    if result.modified_count:
        logger.info("gave %d scans written before fair keys their creation time as one", result.modified_count)
    return result.modified_count


__all__ = ["drop_indexes", "fill_default_tenant", "fill_fair_keys", "prepare"]
