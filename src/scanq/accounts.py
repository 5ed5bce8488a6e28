"""The operator's commands on API tokens and tenant quotas: ``scanq tokens …`` and ``scanq tenants …``.

They work on the store directly, not over HTTP: whoever can reach the database
is the operator (as with ``scanq prune`` and ``scanq export``). A token's secret
is printed once, at creation, and never again: only its hash is stored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import click

from scanq.auth import check_tenant, new_token, parse_scopes, token_state
from scanq.config import Settings
from scanq.exceptions import ValidationError
from scanq.models import ApiToken, TenantLimits
from scanq.retention import UNIT_SECONDS
from scanq.store import open_store
from scanq.tables import text_table as _table

_DURATION = re.compile(r"(?P<number>[0-9]+)(?P<unit>[smhd])")
# A tenant's share of the workers against another's: 1/weight is the step of its fair keys (Store rule 9).
MIN_WEIGHT = 0.01
MAX_WEIGHT = 1000.0
TOKEN_COLUMNS = ("id", "tenant", "scopes", "name", "created", "expires", "last used", "state")


def parse_lifetime(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s``; ``ValidationError`` otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match["number"]) == 0:
        raise ValidationError(f"{text!r} is not a lifetime such as 90d, 12h, 30m (a whole number and s, m, h or d)")
    return timedelta(seconds=int(match["number"]) * UNIT_SECONDS[match["unit"]])


async def create_token(
    settings: Settings, *, tenant: str, scopes: Sequence[str], name: str | None, expires: str | None
) -> None:
    """Make a token, store its hash, print its secret once (stdout) and its id (stderr)."""
    lifetime = None if expires is None else parse_lifetime(expires)
    secret, token = new_token(tenant=tenant, scopes=parse_scopes(scopes), name=name, expires_in=lifetime)
    async with open_store(settings.database_url) as store:
        await store.create_token(token=token)
    click.echo(secret)
    until = "" if token.expires_at is None else f", expires {_time(token.expires_at)}"
    click.echo(
        f"token {token.token_id} for tenant {token.tenant} ({', '.join(sorted(token.scopes))}{until}): "
        "the secret above is shown only now; keep it like a password",
        err=True,
    )


async def list_tokens(settings: Settings, *, tenant: str | None) -> None:
    """Print every token (never a secret), revoked and expired ones included."""
    async with open_store(settings.database_url) as store:
        tokens = await store.list_tokens(tenant=None if tenant is None else check_tenant(tenant))
    now = datetime.now(UTC)
    click.echo(_table(TOKEN_COLUMNS, [_token_row(token, now) for token in tokens]))


async def revoke_token(settings: Settings, *, token_id: str) -> None:
    """Revoke a token: every service refuses it within a second."""
    async with open_store(settings.database_url) as store:
        token = await store.revoke_token(token_id=token_id)
    click.echo(f"token {token.token_id} revoked at {_time(token.revoked_at)}")


async def set_tenant(
    settings: Settings, *, tenant: str, max_queued: int | None, rate: float | None, weight: float = 1.0
) -> None:
    """Replace a tenant's quotas and share (left out: unlimited, weight 1); services apply them within a second."""
    if max_queued is not None and max_queued < 0:
        raise ValidationError("--max-queued must not be negative")
    if rate is not None and not rate > 0:
        raise ValidationError("--rate must be more than 0 scans per second")
    if not (MIN_WEIGHT <= weight <= MAX_WEIGHT):
        raise ValidationError(f"--weight must be between {MIN_WEIGHT:g} and {MAX_WEIGHT:g}")
    async with open_store(settings.database_url) as store:
        await store.set_tenant_limits(
            limits=TenantLimits(tenant=check_tenant(tenant), max_queued=max_queued, rate_per_s=rate, weight=weight)
        )
    click.echo(f"tenant {tenant}: {_limits_text(max_queued, rate)}, weight {weight:g}")


async def list_tenants(settings: Settings) -> None:
    """Print every tenant with quotas set."""
    async with open_store(settings.database_url) as store:
        limits = await store.list_tenant_limits()
    rows = [(lim.tenant, _cell(lim.max_queued), _cell(lim.rate_per_s), _cell(lim.weight)) for lim in limits]
    click.echo(_table(("tenant", "max queued", "rate per s", "weight"), rows))


def _limits_text(max_queued: int | None, rate: float | None) -> str:
    queued = "unlimited unfinished scans" if max_queued is None else f"at most {max_queued} unfinished scans"
    speed = "no rate limit" if rate is None else f"at most {rate:g} submissions per second per ingest process"
    return f"{queued}, {speed}"


def _token_row(token: ApiToken, now: datetime) -> tuple[str, ...]:
    return (
        token.token_id,
        token.tenant,
        ",".join(sorted(token.scopes)),
        token.name or "",
        _time(token.created_at),
        _time(token.expires_at),
        _time(token.last_used_at),
        token_state(token, now=now) or "active",
    )


def _time(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _cell(value: object) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


__all__ = ["create_token", "list_tenants", "list_tokens", "parse_lifetime", "revoke_token", "set_tenant"]
