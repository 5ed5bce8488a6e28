"""Tenants in the in-process store: tokens and limits (``Store`` rule 8), fair keys and queues (rule 9)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from scanq.exceptions import TokenNotFound, ValidationError
from scanq.models import ApiToken, Scan, ScanStatus, TenantLimits, TenantQueue


class MemoryAccounts:
    """The token and limit operations of ``MemoryStore``, over the dicts it shares per URL."""

    _tokens: dict[str, ApiToken]
    _limits: dict[str, TenantLimits]
    _scans: dict[str, Scan]

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

    async def tenant_queues(self, *, limit: int = 100) -> list[TenantQueue]:
        queues: dict[str, list[Any]] = {}
        for scan in self._scans.values():
            if scan.status not in (ScanStatus.ACCEPTED, ScanStatus.RUNNING):
                continue
            entry = queues.setdefault(scan.tenant, [0, 0, None])
            if scan.status == ScanStatus.ACCEPTED:
                entry[0] += 1
                if entry[2] is None or scan.created_at < entry[2]:
                    entry[2] = scan.created_at
            else:
                entry[1] += 1
        ordered = sorted(queues.items(), key=lambda item: (-(item[1][0] + item[1][1]), item[0]))
        return [
            TenantQueue(tenant=tenant, accepted=a, running=r, oldest_accepted_at=oldest)
            for tenant, (a, r, oldest) in ordered[: max(0, limit)]
        ]

    def _next_fair_key(self, tenant: str, now: datetime, clocks: dict[str, float]) -> float:
        """Rule 9: ``max(now, the tenant's last key) + 1 / weight``, and that becomes its last key."""
        weight = self._limits.get(tenant, TenantLimits(tenant=tenant)).weight
        key = max(now.timestamp(), clocks.get(tenant, 0.0)) + 1.0 / weight
        clocks[tenant] = key
        return key


__all__ = ["MemoryAccounts"]
