"""Writing submitted scans: the group commit's unordered insert and ``create_many``'s all-or-none batch.

The unique indexes (``_id``, (tenant, idempotency key)) decide races between
stores: a duplicate idempotency key of the same tenant answers with the stored
scan, a duplicate ``_id`` is the caller's mistake (``ValidationError``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pymongo import AsyncMongoClient, WriteConcern
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from scanq.exceptions import StoreError, ValidationError
from scanq.models import Created, NewScan, Scan
from scanq.store.mongo.errors import DUPLICATE_KEY, is_key_conflict, wrap_errors
from scanq.store.mongo.rows import Document, new_document, scan_from_document

DURABLE = WriteConcern(w="majority", j=True)
TenantKey = tuple[str, str]
"""An idempotency key and the tenant it is unique in: (tenant, key)."""


def tenant_key(new: NewScan) -> TenantKey | None:
    """The (tenant, key) a submission is idempotent by, None without a key."""
    return None if new.idempotency_key is None else (new.tenant, new.idempotency_key)


async def insert_unordered(
    collection: AsyncCollection[Document], scans: Sequence[NewScan], *, now: datetime
) -> list[Created | Exception]:
    """One ``insert_many(ordered=False)``, answering each scan on its own (a ``GroupCommit`` insert)."""
    docs = [new_document(new, now) for new in scans]
    failed: dict[int, Document] = {}
    with wrap_errors():
        try:
            await collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors"):
                raise
            failed = {error["index"]: error for error in exc.details.get("writeErrors", [])}
        lost_keys = [
            key
            for index, new in enumerate(scans)
            if index in failed and (key := tenant_key(new)) is not None and is_key_conflict(failed[index])
        ]
        existing = await find_by_keys(collection, lost_keys)
    answers: list[Created | Exception] = []
    for index, (new, doc) in enumerate(zip(scans, docs, strict=True)):
        error = failed.get(index)
        key = tenant_key(new)
        if error is None:
            answers.append(Created(scan=scan_from_document(doc), is_new=True))
        elif error.get("code") == DUPLICATE_KEY and key in existing:
            answers.append(Created(scan=existing[key], is_new=False))
        elif error.get("code") == DUPLICATE_KEY and not is_key_conflict(error):
            answers.append(ValidationError(f"duplicate scan id {new.scan_id}"))
        else:
            answers.append(StoreError(f"MongoDB insert failed: {error.get('errmsg', error)}"))
    return answers


async def insert_all_or_none(
    collection: AsyncCollection[Document],
    scans: Sequence[NewScan],
    *,
    now: datetime,
    client: AsyncMongoClient[Document] | None,
) -> list[Created] | None:
    """Insert the scans whose key is not stored yet, all or none; None when a concurrent insert took a key.

    Args:
        client: the client to run a transaction on, None when the server has no transactions.
    """
    existing = await find_by_keys(collection, [key for new in scans if (key := tenant_key(new)) is not None])
    answers: list[Created] = []
    docs: list[Document] = []
    batch_keys: dict[TenantKey, Scan] = {}
    seen_ids: set[str] = set()
    for new in scans:
        key = tenant_key(new)
        known = (existing.get(key) or batch_keys.get(key)) if key is not None else None
        if known is not None:
            answers.append(Created(scan=known, is_new=False))
            continue
        if new.scan_id in seen_ids:
            raise ValidationError(f"duplicate scan id {new.scan_id}")
        seen_ids.add(new.scan_id)
        doc = new_document(new, now)
        docs.append(doc)
        scan = scan_from_document(doc)
        if key is not None:
            batch_keys[key] = scan
        answers.append(Created(scan=scan, is_new=True))
    if not docs:
        return answers
    try:
        await _insert_atomically(collection, docs, client=client)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if not errors or errors[0].get("code") != DUPLICATE_KEY:
            raise
        if is_key_conflict(errors[0]):
            return None
        raise ValidationError(f"duplicate scan id {docs[errors[0]['index']]['_id']}") from None
    except DuplicateKeyError as exc:
        if is_key_conflict(exc.details or {}):
            return None
        raise ValidationError("duplicate scan id") from None
    return answers


async def _insert_atomically(
    collection: AsyncCollection[Document], docs: list[Document], *, client: AsyncMongoClient[Document] | None
) -> None:
    """All or none: a transaction where the server has them; else insert and delete again on failure.

    A standalone server has no transactions, so there a failed batch is undone by deleting the
    documents the ordered insert already wrote (a reader may glimpse them meanwhile, and a crash
    between the two leaves them stored: the price of a standalone server).
    """
    if client is not None:
        async with client.start_session() as session:

            async def insert(session: Any) -> None:
                await collection.insert_many(docs, ordered=True, session=session)

            await session.with_transaction(insert, write_concern=DURABLE)
        return
    try:
        await collection.insert_many(docs, ordered=True)
    except BulkWriteError as exc:
        written = [doc["_id"] for doc in docs[: exc.details.get("nInserted", 0)]]
        if written:
            await collection.delete_many({"_id": {"$in": written}})
        raise


async def find_by_keys(collection: AsyncCollection[Document], keys: Iterable[TenantKey]) -> dict[TenantKey, Scan]:
    """The stored scans of these (tenant, idempotency key) pairs, by pair: ranges of the unique index."""
    by_tenant: dict[str, set[str]] = {}
    for tenant, key in keys:
        by_tenant.setdefault(tenant, set()).add(key)
    if not by_tenant:
        return {}
    parts = [{"tenant": tenant, "idempotency_key": {"$in": sorted(names)}} for tenant, names in by_tenant.items()]
    cursor = collection.find(parts[0] if len(parts) == 1 else {"$or": parts})
    found: dict[TenantKey, Scan] = {}
    async for doc in cursor:
        scan = scan_from_document(doc)
        if scan.idempotency_key is not None:
            found[(scan.tenant, scan.idempotency_key)] = scan
    return found


__all__ = ["DURABLE", "TenantKey", "find_by_keys", "insert_all_or_none", "insert_unordered", "tenant_key"]
