"""PostgreSQL: API tokens and tenant limits (``Store`` rule 8), the tables ``api_tokens`` and ``tenant_limits``.

``Accounts`` is mixed into ``PostgresStore`` like ``finished.FinishedScans``; the
statements are in ``sql/queries.sql``. Only the SHA-256 of a secret is stored,
under a unique index that also answers ``find_token`` (every authenticated
request). Each operation is one statement.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from scanq.exceptions import StoreError, TokenNotFound, ValidationError
from scanq.models import ApiToken, TenantLimits
from scanq.store.postgres import statements
from scanq.store.postgres.rows import limits_from_row, token_arguments, token_from_row

# The unique constraint on the hash (0004_tenants.sql); the other one a new token can break is the primary key.
SECRET_HASH_CONSTRAINT = "api_tokens_secret_hash_key"


class Accounts:
    """The token and tenant-limit operations of the ``Store`` contract (see ``store.base``), on PostgreSQL."""

    if TYPE_CHECKING:

        async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...

    async def create_token(self, *, token: ApiToken) -> None:
        try:
            await self._fetch(statements.INSERT_TOKEN, *token_arguments(token))
        except StoreError as exc:
            cause = exc.__cause__
            if not isinstance(cause, asyncpg.UniqueViolationError):
                raise
            if cause.constraint_name == SECRET_HASH_CONSTRAINT:
                raise ValidationError("an API token with this secret exists already") from cause
            raise ValidationError(f"an API token with id {token.token_id!r} exists already") from cause

    async def find_token(self, *, secret_hash: str) -> ApiToken | None:
        rows = await self._fetch(statements.FIND_TOKEN, secret_hash)
        return token_from_row(rows[0]) if rows else None

    async def list_tokens(self, *, tenant: str | None = None) -> list[ApiToken]:
        if tenant is None:
            rows = await self._fetch(statements.LIST_TOKENS)
        else:
            rows = await self._fetch(statements.LIST_TENANT_TOKENS, tenant)
        return [token_from_row(row) for row in rows]

    async def revoke_token(self, *, token_id: str) -> ApiToken:
        rows = await self._fetch(statements.REVOKE_TOKEN, token_id)
        if not rows:
            raise TokenNotFound(token_id)
        return token_from_row(rows[0])

    async def touch_tokens(self, *, last_used: Mapping[str, datetime]) -> None:
        if not last_used:
            return
        token_ids = sorted(last_used)  # one lock order for concurrent batches
        await self._fetch(statements.TOUCH_TOKENS, token_ids, [last_used[token_id] for token_id in token_ids])

    async def set_tenant_limits(self, *, limits: TenantLimits) -> None:
        rate = None if limits.rate_per_s is None else float(limits.rate_per_s)
        await self._fetch(statements.SET_TENANT_LIMITS, limits.tenant, limits.max_queued, rate, float(limits.weight))

    async def get_tenant_limits(self, *, tenant: str) -> TenantLimits:
        rows = await self._fetch(statements.GET_TENANT_LIMITS, tenant)
        return limits_from_row(rows[0]) if rows else TenantLimits(tenant=tenant)

    async def list_tenant_limits(self) -> list[TenantLimits]:
        return [limits_from_row(row) for row in await self._fetch(statements.LIST_TENANT_LIMITS)]


__all__ = ["SECRET_HASH_CONSTRAINT", "Accounts"]
