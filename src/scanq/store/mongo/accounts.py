"""MongoDB: API tokens and tenant limits (``Store`` rule 8), in two collections beside the scans.

``<collection>_tokens``: one document per token, ``_id`` its id, with ``tenant``, ``name``,
``scopes`` (a sorted list of strings), ``secret_hash`` (unique: ``find_token`` is one probe of
its index; the secret itself is never stored), ``created_at``, ``expires_at``, ``revoked_at`` and
``last_used_at``. ``<collection>_tenant_limits``: one document per tenant, ``_id`` the tenant.
A tenant's weight is copied into its clock (``<collection>_tenant_clocks``, ``fairness``), where
the fair keys of its new scans are reserved (rule 9); ``tenant_queues`` is ``fairness``'s.

``AccountsMixin`` is mixed into ``MongoStore``, as ``finished.FinishedScans`` is.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING, IndexModel, ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from scanq.exceptions import StoreError, TokenNotFound, ValidationError
from scanq.models import ApiToken, Scope, TenantLimits, TenantQueue
from scanq.store.mongo import fairness
from scanq.store.mongo.errors import wrap_errors
from scanq.store.mongo.rows import Document, as_utc, to_bson_time

if TYPE_CHECKING:
    from pymongo.asynchronous.collection import AsyncCollection

TOKENS_SUFFIX = "_tokens"
LIMITS_SUFFIX = "_tenant_limits"
TOKEN_ORDER = [("created_at", ASCENDING), ("_id", ASCENDING)]
TOKEN_INDEXES = [
    IndexModel([("secret_hash", ASCENDING)], name="secret_hash", unique=True),
    IndexModel([("tenant", ASCENDING), *TOKEN_ORDER], name="tenant_created"),
]


def token_document(token: ApiToken) -> Document:
    """A token as stored: the hash of its secret, never the secret."""
    return {
        "_id": token.token_id,
        "tenant": token.tenant,
        "name": token.name,
        "scopes": sorted(scope.value for scope in token.scopes),
        "secret_hash": token.secret_hash,
        "created_at": to_bson_time(token.created_at),
        "expires_at": _time(token.expires_at),
        "revoked_at": _time(token.revoked_at),
        "last_used_at": _time(token.last_used_at),
    }


def token_from_document(doc: Mapping[str, Any]) -> ApiToken:
    try:
        scopes = frozenset(Scope(scope) for scope in doc.get("scopes") or ())
    except ValueError:
        raise StoreError(f"API token {doc.get('_id')} has an unknown scope in {doc.get('scopes')!r}") from None
    created_at = as_utc(doc.get("created_at"))
    if created_at is None:
        raise StoreError(f"API token {doc.get('_id')} has no created_at")
    return ApiToken(
        token_id=str(doc["_id"]),
        tenant=str(doc["tenant"]),
        scopes=scopes,
        secret_hash=str(doc["secret_hash"]),
        created_at=created_at,
        name=doc.get("name"),
        expires_at=as_utc(doc.get("expires_at")),
        revoked_at=as_utc(doc.get("revoked_at")),
        last_used_at=as_utc(doc.get("last_used_at")),
    )


def limits_document(limits: TenantLimits) -> Document:
    return {
        "_id": limits.tenant,
        "max_queued": limits.max_queued,
        "rate_per_s": limits.rate_per_s,
        "weight": limits.weight,
    }


def limits_from_document(doc: Mapping[str, Any]) -> TenantLimits:
    weight = doc.get("weight")
    return TenantLimits(
        tenant=str(doc["_id"]),
        max_queued=doc.get("max_queued"),
        rate_per_s=doc.get("rate_per_s"),
        weight=1.0 if weight is None else weight,
    )


def _time(moment: datetime | None) -> datetime | None:
    return None if moment is None else to_bson_time(moment)


class AccountsMixin:
    """The token and tenant-limit operations of the ``Store`` contract, on MongoDB."""

    if TYPE_CHECKING:

        @property
        def collection(self) -> AsyncCollection[Document]: ...

        def _now(self) -> datetime: ...

    @property
    def tokens(self) -> AsyncCollection[Document]:
        """The tokens' documents, beside the scans (same database, same write concern)."""
        scans = self.collection
        return scans.database.get_collection(scans.name + TOKENS_SUFFIX)

    @property
    def tenant_limits(self) -> AsyncCollection[Document]:
        """The tenants' limits, beside the scans."""
        scans = self.collection
        return scans.database.get_collection(scans.name + LIMITS_SUFFIX)

    @property
    def tenant_clocks(self) -> AsyncCollection[Document]:
        """Each tenant's last fair key and weight (``fairness``), beside the scans."""
        scans = self.collection
        return scans.database.get_collection(scans.name + fairness.CLOCKS_SUFFIX)

    async def create_token(self, *, token: ApiToken) -> None:
        with wrap_errors():
            try:
                await self.tokens.insert_one(token_document(token))
            except DuplicateKeyError as exc:
                details = exc.details or {}
                if "secret_hash" in (details.get("keyPattern") or details.get("keyValue") or {}):
                    raise ValidationError("an API token with this secret exists already") from None
                raise ValidationError(f"an API token with id {token.token_id!r} exists already") from None

    async def find_token(self, *, secret_hash: str) -> ApiToken | None:
        with wrap_errors():
            doc = await self.tokens.find_one({"secret_hash": secret_hash})
        return None if doc is None else token_from_document(doc)

    async def list_tokens(self, *, tenant: str | None = None) -> list[ApiToken]:
        query: Document = {} if tenant is None else {"tenant": tenant}
        with wrap_errors():
            docs = await self.tokens.find(query).sort(TOKEN_ORDER).to_list()
        return [token_from_document(doc) for doc in docs]

    async def revoke_token(self, *, token_id: str) -> ApiToken:
        """One update that sets ``revoked_at`` only where it is unset; a read when it was already set."""
        tokens = self.tokens
        with wrap_errors():
            doc = await tokens.find_one_and_update(
                {"_id": token_id, "revoked_at": None},
                {"$set": {"revoked_at": self._now()}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                doc = await tokens.find_one({"_id": token_id})
        if doc is None:
            raise TokenNotFound(token_id)
        return token_from_document(doc)

    async def touch_tokens(self, *, last_used: Mapping[str, datetime]) -> None:
        """One unordered bulk write; ``$max`` never moves a time back (a date sorts after null and missing)."""
        if not last_used:
            return
        updates = [
            UpdateOne({"_id": token_id}, {"$max": {"last_used_at": to_bson_time(used_at)}})
            for token_id, used_at in last_used.items()
        ]
        with wrap_errors():
            await self.tokens.bulk_write(updates, ordered=False)

    async def set_tenant_limits(self, *, limits: TenantLimits) -> None:
        with wrap_errors():
            await self.tenant_limits.replace_one({"_id": limits.tenant}, limits_document(limits), upsert=True)
            await fairness.set_weight(self.tenant_clocks, limits.tenant, limits.weight)

    async def get_tenant_limits(self, *, tenant: str) -> TenantLimits:
        with wrap_errors():
            doc = await self.tenant_limits.find_one({"_id": tenant})
        return TenantLimits(tenant=tenant) if doc is None else limits_from_document(doc)

    async def list_tenant_limits(self) -> list[TenantLimits]:
        with wrap_errors():
            docs = await self.tenant_limits.find({}).sort("_id", ASCENDING).to_list()
        return [limits_from_document(doc) for doc in docs]

    async def tenant_queues(self, *, limit: int = 100) -> list[TenantQueue]:
        with wrap_errors():
            return await fairness.tenant_queues(self.collection, limit=limit)


__all__ = ["LIMITS_SUFFIX", "TOKENS_SUFFIX", "TOKEN_INDEXES", "AccountsMixin", "token_document", "token_from_document"]
