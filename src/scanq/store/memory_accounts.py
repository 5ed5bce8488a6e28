"""API tokens and tenant limits of the in-process store (the reference for ``Store`` rule 8)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime

from scanq.exceptions import TokenNotFound, ValidationError
from scanq.models import ApiToken, TenantLimits


class MemoryAccounts:
    """The token and limit operations of ``MemoryStore``, over the dicts it shares per URL."""

    _tokens: dict[str, ApiToken]
    _limits: dict[str, TenantLimits]

    async def create_token(self, *, token: ApiToken) -> None:
        if token.token_id in self._tokens:
            raise ValidationError(f"an API token with id {token.token_id!r} exists already")
        if any(t.secret_hash == token.secret_hash for t in self._tokens.values()):
            raise ValidationError("an API token with this secret exists already")
        self._tokens[token.token_id] = token

    async def find_token(self, *, secret_hash: str) -> ApiToken | None:
        return next((t for t in self._tokens.values() if t.secret_hash == secret_hash), None)

    async def list_tokens(self, *, tenant: str | None = None) -> list[ApiToken]:
        tokens = [t for t in self._tokens.values() if tenant is None or t.tenant == tenant]
        return sorted(tokens, key=lambda t: (t.created_at, t.token_id))

    async def revoke_token(self, *, token_id: str) -> ApiToken:
        token = self._tokens.get(token_id)
        if token is None:
            raise TokenNotFound(token_id)
        if token.revoked_at is None:
            token = self._tokens[token_id] = dataclasses.replace(token, revoked_at=datetime.now(UTC))
        return token

    async def touch_tokens(self, *, last_used: Mapping[str, datetime]) -> None:
        for token_id, used_at in last_used.items():
            token = self._tokens.get(token_id)
            if token is not None and (token.last_used_at is None or used_at > token.last_used_at):
                self._tokens[token_id] = dataclasses.replace(token, last_used_at=used_at)

    async def set_tenant_limits(self, *, limits: TenantLimits) -> None:
        self._limits[limits.tenant] = limits

    async def get_tenant_limits(self, *, tenant: str) -> TenantLimits:
        return self._limits.get(tenant) or TenantLimits(tenant=tenant)

    async def list_tenant_limits(self) -> list[TenantLimits]:
        return [self._limits[name] for name in sorted(self._limits)]


__all__ = ["MemoryAccounts"]
