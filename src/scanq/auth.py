"""API tokens: how they are made, and how a request's bearer token becomes a ``Caller``.

A token is ``scanq_`` followed by 43 characters of URL-safe base64: 256 random
bits with a prefix that secret scanners can look for. The store keeps only its
SHA-256 (the secret is random, so no salt or slow hash is needed) and a public
id (``tok_…``) that logs, scans and ``scanq tokens list`` show.

``Authenticator`` answers from a per-process cache for at most ``cache_s``
(0.5 s), so a token check does not touch the database on every request, yet a
token revoked or expired in any process is refused everywhere within a second.
Last-used times are collected in memory and written in one batch per second.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from scanq.exceptions import Unauthenticated, ValidationError
from scanq.models import Actor, ApiToken, Caller, Scope
from scanq.shared_reads import SharedReads
from scanq.store import Store

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "scanq_"
TOKEN_ID_PREFIX = "tok_"
SECRET_BYTES = 32  # 256 bits
# 43 characters of base64url for 32 bytes; anything else is malformed and never reaches the store.
SECRET_LENGTH = len(TOKEN_PREFIX) + 43
CACHE_S = 0.5
TOUCH_EVERY_S = 1.0
MAX_CACHED = 10_000
MAX_TENANT_LENGTH = 64
MAX_TOKEN_NAME_LENGTH = 200
_TENANT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
TENANT_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


def hash_secret(secret: str) -> str:
    """The SHA-256 of a token's secret, in hex: what the store keeps."""
    return hashlib.sha256(secret.encode()).hexdigest()


def check_tenant(name: str) -> str:
    """A tenant name: 1-64 letters, digits, ``-``, ``_`` or ``.``; ``ValidationError`` otherwise."""
    if not 0 < len(name) <= MAX_TENANT_LENGTH or not set(name) <= _TENANT_CHARS:
        raise ValidationError(f"a tenant is 1 to {MAX_TENANT_LENGTH} letters, digits, '-', '_' or '.' (got {name!r})")
    return name


def parse_scopes(names: Iterable[str]) -> frozenset[Scope]:
    """Scopes from their names (``submit``, ``read``, ``cancel``, ``admin``); ``ValidationError`` for others."""
    scopes: set[Scope] = set()
    for name in names:
        try:
            scopes.add(Scope(name.strip()))
        except ValueError:
            raise ValidationError(f"unknown scope {name!r} (use {', '.join(s.value for s in Scope)})") from None
    if not scopes:
        raise ValidationError("a token needs at least one scope")
    return frozenset(scopes)


def new_token(
    *,
    tenant: str,
    scopes: frozenset[Scope],
    name: str | None = None,
    expires_in: timedelta | None = None,
    now: datetime | None = None,
) -> tuple[str, ApiToken]:
    """A fresh secret and the record to store for it (the secret is shown once and never stored)."""
    check_tenant(tenant)
    if name is not None and not 0 < len(name) <= MAX_TOKEN_NAME_LENGTH:
        raise ValidationError(f"a token name is 1 to {MAX_TOKEN_NAME_LENGTH} characters long")
    if expires_in is not None and expires_in <= timedelta(0):
        raise ValidationError("a token's lifetime must be positive")
    created = now or datetime.now(UTC)
    secret = TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")
    token = ApiToken(
        token_id=TOKEN_ID_PREFIX + secrets.token_hex(8),
        tenant=tenant,
        scopes=scopes,
        secret_hash=hash_secret(secret),
        created_at=created,
        name=name,
        expires_at=None if expires_in is None else created + expires_in,
    )
    return secret, token


def bearer_secret(authorization: str | None) -> str:
    """The secret of an ``Authorization: Bearer <token>`` header; ``Unauthenticated`` for anything else."""
    if not authorization:
        raise Unauthenticated("send an API token: Authorization: Bearer <token>")
    scheme, _, secret = authorization.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise Unauthenticated("the Authorization header must be: Bearer <token>")
    if len(secret) != SECRET_LENGTH or not secret.startswith(TOKEN_PREFIX):
        raise Unauthenticated("this is not a scanq API token")
    return secret


def token_state(token: ApiToken, *, now: datetime) -> str | None:
    """Why ``token`` is refused at ``now`` (``revoked``, ``expired``), or None while it is valid."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return None


def _wall_clock() -> float:
    """Seconds since the epoch (module-level so that tests replacing ``time`` keep the real wall clock)."""
    return _time_time()


_time_time = time.time


@dataclass(frozen=True, slots=True)
class _Entry:
    """One cached look-up: the token (None: unknown), its caller built once, and why it is refused."""

    fetched_at: float
    token: ApiToken | None
    caller: Caller | None
    expires_ts: float | None
    refused: str | None

    @classmethod
    def of(cls, token: ApiToken | None, *, fetched_at: float) -> _Entry:
        if token is None:
            return cls(fetched_at=fetched_at, token=None, caller=None, expires_ts=None, refused=None)
        caller = Caller(
            tenant=token.tenant, scopes=token.scopes, actor=Actor(token_id=token.token_id, token_name=token.name)
        )
        expires_ts = None if token.expires_at is None else token.expires_at.timestamp()
        refused = "revoked" if token.revoked_at is not None else None
        return cls(fetched_at=fetched_at, token=token, caller=caller, expires_ts=expires_ts, refused=refused)


class Authenticator:
    """Turn bearer tokens into callers, through a short cache in front of the store.

    Args:
        store: an open store holding the tokens.
        cache_s: how long a token looked up stays trusted in this process (revocation is seen within it).
    """

    def __init__(self, store: Store, *, cache_s: float = CACHE_S) -> None:
        self._store = store
        self._cache_s = cache_s
        self._cache: dict[str, _Entry] = {}
        self._used: dict[str, float] = {}  # token id → when it was last used (epoch seconds)
        # One store look-up per secret at a time: the requests that miss the cache meanwhile wait for it.
        self._lookups: SharedReads[str, _Entry] = SharedReads(self._keep)
        self._last_touch = time.monotonic()
        self._touching: asyncio.Task[None] | None = None

    async def authenticate(self, authorization: str | None) -> Caller:
        """The caller a request's ``Authorization`` header names; ``Unauthenticated`` (nothing written) otherwise.

        The hot path is a SHA-256, a dict lookup and a time comparison: the ``Caller`` is built once per
        cache entry. (The lookup is by the digest of the secret sent, so comparing it again in constant
        time would protect nothing: a guess's digest shares no prefix with the real one.)
        """
        digest = hash_secret(bearer_secret(authorization))
        entry = self._cache.get(digest)
        if entry is None or time.monotonic() - entry.fetched_at >= self._cache_s:
            entry = await self._lookup(digest)
        if entry.caller is None or entry.token is None:
            raise Unauthenticated("unknown API token")
        now = _wall_clock()
        if entry.refused is not None or (entry.expires_ts is not None and entry.expires_ts <= now):
            raise Unauthenticated(f"this API token is {entry.refused or 'expired'}")
        self._record_use(entry.token.token_id, now)
        return entry.caller

    async def aclose(self) -> None:
        """Write the last-used times still pending."""
        if self._touching is not None:
            await asyncio.gather(self._touching, return_exceptions=True)
        await self._touch()

    async def _lookup(self, digest: str) -> _Entry:
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and now - cached.fetched_at < self._cache_s:
            return cached
        return await self._lookups.read(digest, lambda: self._fetch(digest, fetched_at=now))

    async def _fetch(self, digest: str, *, fetched_at: float) -> _Entry:
        return _Entry.of(await self._store.find_token(secret_hash=digest), fetched_at=fetched_at)

    def _keep(self, digest: str, entry: _Entry) -> None:
        """A look-up succeeded: cache its entry."""
        if len(self._cache) >= MAX_CACHED:
            # Unknown secrets are cached too (a flood of bad tokens must not reach the store each time);
            # the cache is dropped whole rather than grown without bound.
            self._cache.clear()
        self._cache[digest] = entry

    def _record_use(self, token_id: str, when_ts: float) -> None:
        self._used[token_id] = when_ts
        if self._touching is None and time.monotonic() - self._last_touch >= TOUCH_EVERY_S:
            self._touching = asyncio.get_running_loop().create_task(self._touch())

    async def _touch(self) -> None:
        used, self._used = self._used, {}
        self._last_touch = time.monotonic()
        try:
            if used:
                await self._store.touch_tokens(
                    last_used={token_id: datetime.fromtimestamp(ts, UTC) for token_id, ts in used.items()}
                )
        except Exception as exc:  # last-used is informative: never fail a request for it
            logger.warning("could not record API token use: %s", exc)
            for token_id, when in used.items():
                self._used.setdefault(token_id, when)
        finally:
            self._touching = None


__all__ = [
    "CACHE_S",
    "TENANT_PATTERN",
    "TOKEN_PREFIX",
    "Authenticator",
    "bearer_secret",
    "check_tenant",
    "hash_secret",
    "new_token",
    "parse_scopes",
    "token_state",
]
