"""Writing submitted scans: the group commit's unordered insert and ``create_many``'s all-or-none batch.

The unique indexes (``_id``, (tenant, idempotency key)) decide races between
stores: a duplicate idempotency key of the same tenant answers with the stored
scan, a duplicate ``_id`` is the caller's mistake (``ValidationError``).

Each new scan gets its fair key (``fairness.reserve``: one clock update per tenant
per batch). A replay of a stored key takes none (rule 9): the keys of a batch are
looked up before the keys are reserved (one read of the unique index, only for a
batch that has keys); a replay that loses a race with a concurrent first insert of
its key is found after the insert, and its reserved key is left unused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pymongo import AsyncMongoClient, WriteConcern
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError

from scanq.exceptions import StoreError, ValidationError
from scanq.models import Created, NewScan, Scan
from scanq.store.mongo.errors import DUPLICATE_KEY, is_key_conflict, wrap_errors
from scanq.store.mongo.fairness import reserve
from scanq.store.mongo.rows import Document, new_document, scan_from_document

if TYPE_CHECKING:
    from pymongo.asynchronous.client_session import AsyncClientSession

DURABLE = WriteConcern(w="majority", j=True)
TenantKey = tuple[str, str]
"""An idempotency key and the tenant it is unique in: (tenant, key)."""


def tenant_key(new: NewScan) -> TenantKey | None:
    """The (tenant, key) a submission is idempotent by, None without a key."""
    return None if new.idempotency_key is None else (new.tenant, new.idempotency_key)


async def insert_unordered(
    collection: AsyncCollection[Document],
    scans: Sequence[NewScan],
    *,
    now: datetime,
    clocks: AsyncCollection[Document],
) -> list[Created | Exception]:
    """One ``insert_many(ordered=False)``, answering each scan on its own (a ``GroupCommit`` insert).

    A scan whose key is stored already is answered from the store and not inserted; a second
    scan of the batch with the key of an earlier one shares that one's fair key (only one of
    them can be stored).
    """
    with wrap_errors():
        known = await find_by_keys(collection, [key for new in scans if (key := tenant_key(new)) is not None])
        fresh = [index for index, new in enumerate(scans) if tenant_key(new) not in known]
        first_of: dict[TenantKey, int] = {}
        takers = []
        for index in fresh:
            key = tenant_key(scans[index])
            if key is None or key not in first_of:
                takers.append(index)
            if key is not None:
                first_of.setdefault(key, index)
        keys = dict(zip(takers, await reserve(clocks, [scans[i] for i in takers], now=now), strict=True))
        keys |= {index: keys[first_of[_key(scans[index])]] for index in fresh if index not in keys}
        docs = {index: new_document(scans[index], now, fair_key=keys[index]) for index in fresh}
        failed: dict[int, Document] = {}
        if docs:
            try:
                await collection.insert_many(list(docs.values()), ordered=False)
            except BulkWriteError as exc:
                if exc.details.get("writeConcernErrors"):
                    raise
                order = list(docs)
                failed = {order[error["index"]]: error for error in exc.details.get("writeErrors", [])}
        lost_keys = [
            key
            for index, new in enumerate(scans)
            if index in failed and (key := tenant_key(new)) is not None and is_key_conflict(failed[index])
        ]
        existing = {**known, **await find_by_keys(collection, lost_keys)}
    answers: list[Created | Exception] = []
    for index, new in enumerate(scans):
        error = failed.get(index)
        key = tenant_key(new)
        if index not in docs:
            answers.append(Created(scan=known[_key(new)], is_new=False))
        elif error is None:
            answers.append(Created(scan=scan_from_document(docs[index]), is_new=True))
        elif error.get("code") == DUPLICATE_KEY and key in existing:
            answers.append(Created(scan=existing[_key(new)], is_new=False))
        elif error.get("code") == DUPLICATE_KEY and not is_key_conflict(error):
            answers.append(ValidationError(f"duplicate scan id {new.scan_id}"))
        else:
            answers.append(StoreError(f"MongoDB insert failed: {error.get('errmsg', error)}"))
    return answers


def _key(new: NewScan) -> TenantKey:
    """The (tenant, key) of a scan known to have one."""
    key = tenant_key(new)
    assert key is not None
    return key


async def insert_all_or_none(
    collection: AsyncCollection[Document],
    scans: Sequence[NewScan],
    *,
    now: datetime,
    client: AsyncMongoClient[Document] | None,
    clocks: AsyncCollection[Document],
) -> list[Created] | None:
    """Insert the scans whose key is not stored yet, all or none; None when a concurrent insert took a key.

    Args:
        client: the client to run a transaction on, None when the server has no transactions.
        clocks: the tenants' clocks, where the new scans' fair keys are reserved (in the transaction).
    """
    existing = await find_by_keys(collection, [key for new in scans if (key := tenant_key(new)) is not None])
    answers: list[Created | tuple[int, bool]] = []  # a stored scan, or (the index in ``fresh``, is new)
    fresh: list[NewScan] = []
    batch_keys: dict[TenantKey, int] = {}
    seen_ids: set[str] = set()
    for new in scans:
        key = tenant_key(new)
        if key is not None and key in existing:
            answers.append(Created(scan=existing[key], is_new=False))
            continue
        if key is not None and key in batch_keys:
            answers.append((batch_keys[key], False))
            continue
        if new.scan_id in seen_ids:
            raise ValidationError(f"duplicate scan id {new.scan_id}")
        seen_ids.add(new.scan_id)
        if key is not None:
            batch_keys[key] = len(fresh)
        answers.append((len(fresh), True))
        fresh.append(new)
    if not fresh:
        return [answer for answer in answers if isinstance(answer, Created)]
    docs: list[Document] = []

    async def write(session: AsyncClientSession | None) -> None:
        keys = await reserve(clocks, fresh, now=now, session=session)
        docs[:] = [new_document(new, now, fair_key=key) for new, key in zip(fresh, keys, strict=True)]
        await collection.insert_many(docs, ordered=True, session=session)

    try:
        await _insert_atomically(collection, write, docs, client=client)
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
    stored = [scan_from_document(doc) for doc in docs]
    return [
        answer if isinstance(answer, Created) else Created(scan=stored[answer[0]], is_new=answer[1])
        for answer in answers
    ]


async def _insert_atomically(
    collection: AsyncCollection[Document],
    write: Callable[[AsyncClientSession | None], Awaitable[None]],
    docs: list[Document],
    *,
    client: AsyncMongoClient[Document] | None,
) -> None:
    """All or none: ``write`` in a transaction where the server has them; else write and delete again on failure.

    A standalone server has no transactions, so there a failed batch is undone by deleting the
    documents the ordered insert already wrote (``docs``, which ``write`` fills in; a reader may
    glimpse them meanwhile, and a crash between the two leaves them stored: the price of a
    standalone server). Its fair keys stay reserved.
    """
    if client is not None:
        async with client.start_session() as session:

            async def in_transaction(session: Any) -> None:
                await write(session)

            await session.with_transaction(in_transaction, write_concern=DURABLE)
        return
    try:
        await write(None)
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
