"""The MongoDB store's schema: its indexes, and the changes an older collection needs (run by ``open``).

MongoDB has no migrations table: each step is idempotent and cheap once done, so
every ``open`` runs them all, in this order.

1. ``create_indexes`` (idempotent) for the scans (``statements.INDEXES``) and the tokens
   (``accounts``; the tenant limits need none: a tenant is its document's ``_id``).
2. Tenants: a scan written before tenants has no ``tenant``; it gets ``DEFAULT_TENANT``, so the
   (tenant, …) indexes count and list it. One ``update_many`` on the ``tenant: null`` range of the
   ``tenant_status`` index: it writes once, after that it reads an empty range. (Documents the
   original system keeps inserting get their tenant from the adoption, ``legacy.py``; until then
   they read as the default tenant's.)
3. Replaced indexes are dropped (the idempotency key alone, now unique per tenant): after step 2,
   so the old unique index still guards the keys while the tenants are filled in.
"""

from __future__ import annotations

import logging

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

from scanq.models import DEFAULT_TENANT
from scanq.store.mongo import statements as st
from scanq.store.mongo.accounts import TOKEN_INDEXES
from scanq.store.mongo.errors import DUPLICATE_KEY
from scanq.store.mongo.rows import Document

logger = logging.getLogger(__name__)

INDEX_NOT_FOUND = 27


async def prepare(scans: AsyncCollection[Document], *, tokens: AsyncCollection[Document]) -> None:
    """Create the indexes and bring ``scans`` written by an older scanq up to date (see the module docstring)."""
    await scans.create_indexes(st.INDEXES)
    await tokens.create_indexes(TOKEN_INDEXES)
    await fill_default_tenant(scans)
    existing = await scans.index_information()
    for name in st.REPLACED_INDEXES:
        if name in existing:
            try:
                await scans.drop_index(name)
            except OperationFailure as exc:
                if exc.code != INDEX_NOT_FOUND:
                    raise
                continue  # another process opening the store at the same time dropped it first
            logger.info("dropped the replaced index %s of %s", name, scans.name)


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


__all__ = ["fill_default_tenant", "prepare"]
