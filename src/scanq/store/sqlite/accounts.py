"""SQLite: API tokens and tenant limits (``Store`` rule 8) and the queue per tenant (rule 9), beside the scans.

``Accounts`` is mixed into ``SQLiteStore``. Writes go through the writer thread like every
other write (they join its batches); reads go to the reader threads. ``find_token`` is the
lookup every authenticated request makes: one search of the unique ``api_tokens_secret_hash``
index. The tables are small (a row per token, a row per tenant with limits): listing sorts.
``tenant_queues`` reads the per-tenant counts, not the scans (statements.TENANT_QUEUES).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from scanq.exceptions import TokenNotFound, ValidationError
from scanq.models import ApiToken, TenantLimits, TenantQueue
from scanq.store.sqlite.rows import (
    LIMITS_COLUMNS,
    TOKEN_COLUMNS,
    limits_from_row,
    limits_row,
    to_optional_datetime,
    token_from_row,
    token_row,
)
from scanq.store.sqlite.statements import TENANT_QUEUES

if TYPE_CHECKING:
    from scanq.store.sqlite.writer import Apply

T = TypeVar("T")

INSERT_TOKEN = f"INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
FIND_TOKEN = f"SELECT {TOKEN_COLUMNS} FROM api_tokens INDEXED BY api_tokens_secret_hash WHERE secret_hash = ?"
LIST_TOKENS = f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, token_id"
LIST_TOKENS_OF_TENANT = f"SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE tenant = ? ORDER BY created_at, token_id"
REVOKE_TOKEN = f"""
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, :now) WHERE token_id = :token_id
RETURNING {TOKEN_COLUMNS}
"""
# ``:used`` is ``[[token_id, epoch], ...]``: every token in one statement, never moved backwards.
TOUCH_TOKENS = """
WITH used(token_id, at) AS (SELECT value ->> 0, value ->> 1 FROM json_each(:used))
UPDATE api_tokens SET last_used_at = used.at
FROM used
WHERE api_tokens.token_id = used.token_id AND (api_tokens.last_used_at IS NULL OR api_tokens.last_used_at < used.at)
"""
SET_LIMITS = f"""
INSERT INTO tenant_limits ({LIMITS_COLUMNS}) VALUES (?, ?, ?, ?)
ON CONFLICT (tenant) DO UPDATE SET
    max_queued = excluded.max_queued, rate_per_s = excluded.rate_per_s, weight = excluded.weight
"""
GET_LIMITS = f"SELECT {LIMITS_COLUMNS} FROM tenant_limits WHERE tenant = ?"
LIST_LIMITS = f"SELECT {LIMITS_COLUMNS} FROM tenant_limits ORDER BY tenant"


class Accounts:
    """The token and tenant-limit operations of the ``Store`` contract (see ``store.base``), on SQLite."""

    if TYPE_CHECKING:

        async def _write(self, apply: Apply[T]) -> T: ...

        async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T: ...

    async def create_token(self, *, token: ApiToken) -> None:
        row = token_row(token)

        def apply(conn: sqlite3.Connection, now: float) -> tuple[str | None, bool]:
            try:
                conn.execute(INSERT_TOKEN, row)
            except sqlite3.IntegrityError as exc:
                # One failed statement undoes only itself: the batch around it goes on.
                return str(exc), False
            return None, False

        refused = await self._write(apply)
        if refused is None:
            return
        if "api_tokens.token_id" in refused:
            raise ValidationError(f"an API token with id {token.token_id!r} exists already")
        raise ValidationError("an API token with this secret exists already")

    async def find_token(self, *, secret_hash: str) -> ApiToken | None:
        row = await self._read(lambda conn: conn.execute(FIND_TOKEN, (secret_hash,)).fetchone())
        return None if row is None else token_from_row(row)

    async def list_tokens(self, *, tenant: str | None = None) -> list[ApiToken]:
        def query(conn: sqlite3.Connection) -> list[Any]:
            if tenant is None:
                return conn.execute(LIST_TOKENS).fetchall()
            return conn.execute(LIST_TOKENS_OF_TENANT, (tenant,)).fetchall()

        return [token_from_row(row) for row in await self._read(query)]

    async def revoke_token(self, *, token_id: str) -> ApiToken:
        def apply(conn: sqlite3.Connection, now: float) -> tuple[Any, bool]:
            return conn.execute(REVOKE_TOKEN, {"token_id": token_id, "now": now}).fetchone(), False

        row = await self._write(apply)
        if row is None:
            raise TokenNotFound(token_id)
        return token_from_row(row)

    async def touch_tokens(self, *, last_used: Mapping[str, datetime]) -> None:
        if not last_used:
            return
        used = msgspec.json.encode([(token_id, at.timestamp()) for token_id, at in last_used.items()]).decode()

        def apply(conn: sqlite3.Connection, now: float) -> tuple[None, bool]:
            conn.execute(TOUCH_TOKENS, {"used": used})
            return None, False

        await self._write(apply)

    async def set_tenant_limits(self, *, limits: TenantLimits) -> None:
        row = limits_row(limits)

        def apply(conn: sqlite3.Connection, now: float) -> tuple[None, bool]:
            conn.execute(SET_LIMITS, row)
            return None, False

        await self._write(apply)

    async def get_tenant_limits(self, *, tenant: str) -> TenantLimits:
        row = await self._read(lambda conn: conn.execute(GET_LIMITS, (tenant,)).fetchone())
        return TenantLimits(tenant=tenant) if row is None else limits_from_row(row)

    async def list_tenant_limits(self) -> list[TenantLimits]:
        rows = await self._read(lambda conn: conn.execute(LIST_LIMITS).fetchall())
        return [limits_from_row(row) for row in rows]

    async def tenant_queues(self, *, limit: int = 100) -> list[TenantQueue]:
        if limit <= 0:
            return []  # (SQLite reads a negative LIMIT as none)
        # One statement: one snapshot for the counts and the oldest scans.
        rows = await self._read(lambda conn: conn.execute(TENANT_QUEUES, {"limit": limit}).fetchall())
        return [
            TenantQueue(tenant=tenant, accepted=accepted, running=running, oldest_accepted_at=to_optional_datetime(at))
            for tenant, accepted, running, at in rows
        ]


__all__ = ["Accounts"]
