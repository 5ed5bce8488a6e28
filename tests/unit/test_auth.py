"""API tokens: how they are made and parsed, and the Authenticator's cache and last-used batching on a MemoryStore."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta

import pytest

from scanq import auth
from scanq.auth import (
    TOKEN_PREFIX,
    Authenticator,
    bearer_secret,
    check_tenant,
    hash_secret,
    new_token,
    parse_scopes,
)
from scanq.exceptions import StoreUnavailable, Unauthenticated, ValidationError
from scanq.models import Actor, ApiToken, Scope
from scanq.store.memory import MemoryStore
from tests.clocks import ManualClock

READ_SUBMIT = frozenset({Scope.READ, Scope.SUBMIT})
SECRET_PATTERN = re.compile(r"scanq_[A-Za-z0-9_-]{43}")


class CountingStore(MemoryStore):
    """Counts token look-ups and records every ``touch_tokens`` batch; ``fail_touch`` makes the batches fail."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.lookups = 0
        self.touches: list[dict[str, datetime]] = []
        self.fail_touch = False

    async def find_token(self, *, secret_hash: str) -> ApiToken | None:
        self.lookups += 1
        return await super().find_token(secret_hash=secret_hash)

    async def touch_tokens(self, *, last_used: Mapping[str, datetime]) -> None:
        self.touches.append(dict(last_used))
        if self.fail_touch:
            raise StoreUnavailable("the database is down")
        await super().touch_tokens(last_used=last_used)


@pytest.fixture
async def store() -> AsyncIterator[CountingStore]:
    async with CountingStore(f"memory://{uuid.uuid4()}") as store:
        yield store


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    fake = ManualClock()
    # Only scanq.auth's view of time: the event loop keeps the real clock.
    monkeypatch.setattr(auth, "time", fake)
    return fake


async def stored_token(
    store: MemoryStore,
    *,
    tenant: str = "acme",
    scopes: frozenset[Scope] = READ_SUBMIT,
    name: str | None = "ci",
    expires_in: timedelta | None = None,
) -> tuple[str, ApiToken]:
    secret, token = new_token(tenant=tenant, scopes=scopes, name=name, expires_in=expires_in)
    await store.create_token(token=token)
    return secret, token


async def last_used(store: MemoryStore, token_id: str) -> datetime | None:
    return next(t.last_used_at for t in await store.list_tokens() if t.token_id == token_id)


# -- new_token -------------------------------------------------------------------------------------


def test_a_new_secret_is_the_prefix_and_43_base64url_characters_of_256_bits() -> None:
    secret, _ = new_token(tenant="acme", scopes=READ_SUBMIT)

    assert secret.startswith(TOKEN_PREFIX)
    assert SECRET_PATTERN.fullmatch(secret)
    assert len(base64.urlsafe_b64decode(secret.removeprefix(TOKEN_PREFIX) + "=")) == 32


def test_new_secrets_and_ids_are_all_different() -> None:
    made = [new_token(tenant="acme", scopes=READ_SUBMIT) for _ in range(200)]

    assert len({secret for secret, _ in made}) == 200
    assert len({token.token_id for _, token in made}) == 200
    assert len({token.secret_hash for _, token in made}) == 200


def test_the_record_holds_only_the_secrets_hash() -> None:
    secret, token = new_token(tenant="acme", scopes=READ_SUBMIT, name="ci")

    assert token.secret_hash == hash_secret(secret)
    assert re.fullmatch(r"[0-9a-f]{64}", token.secret_hash)
    fields = [str(value) for value in dataclasses.asdict(token).values()]
    assert not any(secret in value or secret.removeprefix(TOKEN_PREFIX) in value for value in fields)


def test_the_record_has_a_public_id_tenant_scopes_and_name() -> None:
    _, token = new_token(tenant="acme", scopes=READ_SUBMIT, name="ci")

    assert token.token_id.startswith("tok_") and len(token.token_id) > len("tok_")
    assert (token.tenant, token.scopes, token.name) == ("acme", READ_SUBMIT, "ci")
    assert token.revoked_at is None and token.last_used_at is None


def test_expiry_is_creation_plus_the_lifetime_and_none_without_one() -> None:
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)

    _, lasting = new_token(tenant="acme", scopes=READ_SUBMIT, expires_in=timedelta(days=90), now=now)
    _, forever = new_token(tenant="acme", scopes=READ_SUBMIT, now=now)

    assert lasting.created_at == now and lasting.expires_at == now + timedelta(days=90)
    assert forever.expires_at is None


@pytest.mark.parametrize("tenant", ["", "a" * 65, "has space", "slash/y", "ünï"])
def test_new_token_refuses_an_invalid_tenant(tenant: str) -> None:
    with pytest.raises(ValidationError, match="tenant"):
        new_token(tenant=tenant, scopes=READ_SUBMIT)


@pytest.mark.parametrize("name", ["", "n" * 201])
def test_new_token_refuses_an_empty_or_overlong_name(name: str) -> None:
    with pytest.raises(ValidationError, match="name"):
        new_token(tenant="acme", scopes=READ_SUBMIT, name=name)


@pytest.mark.parametrize("lifetime", [timedelta(0), timedelta(seconds=-1)])
def test_new_token_refuses_a_lifetime_that_is_not_positive(lifetime: timedelta) -> None:
    with pytest.raises(ValidationError, match="lifetime"):
        new_token(tenant="acme", scopes=READ_SUBMIT, expires_in=lifetime)


# -- parse_scopes, check_tenant ------------------------------------------------------------------


def test_parse_scopes_reads_names_with_spaces_and_duplicates() -> None:
    assert parse_scopes(["submit", " read ", "read"]) == READ_SUBMIT
    assert parse_scopes(["admin"]) == frozenset({Scope.ADMIN})


def test_parse_scopes_refuses_an_unknown_name_naming_it_and_the_known_ones() -> None:
    with pytest.raises(ValidationError, match=r"unknown scope 'write'.*submit, read, cancel, webhooks, admin"):
        parse_scopes(["read", "write"])


def test_parse_scopes_refuses_no_scope() -> None:
    with pytest.raises(ValidationError, match="at least one scope"):
        parse_scopes([])


@pytest.mark.parametrize("name", ["acme", "a", "A-b_c.9", "t" * 64])
def test_check_tenant_accepts_and_returns_a_valid_name(name: str) -> None:
    assert check_tenant(name) == name


@pytest.mark.parametrize("name", ["", "t" * 65, "a b", "a/b", "a:b", "é"])
def test_check_tenant_refuses_an_invalid_name_quoting_it(name: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(repr(name))):
        check_tenant(name)


# -- bearer_secret -------------------------------------------------------------------------------


def test_bearer_secret_takes_the_token_of_a_bearer_header_in_any_case() -> None:
    secret, _ = new_token(tenant="acme", scopes=READ_SUBMIT)

    assert bearer_secret(f"Bearer {secret}") == secret
    assert bearer_secret(f"bearer {secret}") == secret
    assert bearer_secret(f"BEARER   {secret} ") == secret


@pytest.mark.parametrize("header", [None, ""])
def test_bearer_secret_without_a_header_asks_for_a_token(header: str | None) -> None:
    with pytest.raises(Unauthenticated, match="Authorization: Bearer"):
        bearer_secret(header)


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token scanq_x"])
def test_bearer_secret_refuses_another_scheme_or_an_empty_token(header: str) -> None:
    with pytest.raises(Unauthenticated, match="must be: Bearer <token>"):
        bearer_secret(header)


@pytest.mark.parametrize(
    "token",
    ["scanq_short", "scanq_" + "a" * 44, "ghp_" + "a" * 45, "x" * 49, "Scanq_" + "a" * 43],
)
def test_bearer_secret_refuses_what_is_not_a_scanq_token(token: str) -> None:
    with pytest.raises(Unauthenticated, match="not a scanq API token"):
        bearer_secret(f"Bearer {token}")


# -- Authenticator -------------------------------------------------------------------------------


async def test_a_valid_token_is_its_tenant_scopes_and_actor(store: CountingStore) -> None:
    secret, token = await stored_token(store, tenant="acme", scopes=READ_SUBMIT, name="ci")
    authenticator = Authenticator(store)

    caller = await authenticator.authenticate(f"Bearer {secret}")

    assert caller.tenant == "acme"
    assert caller.scopes == READ_SUBMIT
    assert caller.actor == Actor(token_id=token.token_id, token_name="ci")
    assert not caller.is_admin
    await authenticator.aclose()


async def test_an_unknown_token_is_refused_as_unknown(store: CountingStore) -> None:
    await stored_token(store)
    other, _ = new_token(tenant="acme", scopes=READ_SUBMIT)

    with pytest.raises(Unauthenticated, match="unknown API token"):
        await Authenticator(store).authenticate(f"Bearer {other}")


async def test_a_revoked_token_is_refused_as_revoked(store: CountingStore) -> None:
    secret, token = await stored_token(store)
    await store.revoke_token(token_id=token.token_id)

    with pytest.raises(Unauthenticated, match="revoked"):
        await Authenticator(store).authenticate(f"Bearer {secret}")


async def test_an_expired_token_is_refused_as_expired(store: CountingStore) -> None:
    secret, token = new_token(
        tenant="acme", scopes=READ_SUBMIT, expires_in=timedelta(hours=1), now=datetime.now(UTC) - timedelta(hours=2)
    )
    await store.create_token(token=token)

    with pytest.raises(Unauthenticated, match="expired"):
        await Authenticator(store).authenticate(f"Bearer {secret}")


async def test_a_malformed_header_is_refused_without_asking_the_store(store: CountingStore) -> None:
    with pytest.raises(Unauthenticated):
        await Authenticator(store).authenticate("Bearer not-a-token")

    assert store.lookups == 0


async def test_a_refused_token_records_no_use(store: CountingStore) -> None:
    secret, token = await stored_token(store)
    await store.revoke_token(token_id=token.token_id)
    authenticator = Authenticator(store)
    with pytest.raises(Unauthenticated):
        await authenticator.authenticate(f"Bearer {secret}")

    await authenticator.aclose()

    assert store.touches == []
    assert await last_used(store, token.token_id) is None


async def test_a_cached_token_is_not_looked_up_again_within_the_cache_time(
    store: CountingStore, clock: ManualClock
) -> None:
    secret, _ = await stored_token(store)
    authenticator = Authenticator(store, cache_s=0.5)

    for _ in range(5):
        await authenticator.authenticate(f"Bearer {secret}")
        clock.now += 0.05

    assert store.lookups == 1


async def test_a_revocation_is_seen_once_the_cache_time_passed_not_before(
    store: CountingStore, clock: ManualClock
) -> None:
    secret, token = await stored_token(store)
    authenticator = Authenticator(store, cache_s=0.5)
    await authenticator.authenticate(f"Bearer {secret}")

    await store.revoke_token(token_id=token.token_id)
    clock.now += 0.4
    still = await authenticator.authenticate(f"Bearer {secret}")
    clock.now += 0.2

    assert still.tenant == "acme"
    with pytest.raises(Unauthenticated, match="revoked"):
        await authenticator.authenticate(f"Bearer {secret}")


async def test_a_revocation_is_seen_after_a_short_real_cache_time(store: CountingStore) -> None:
    secret, token = await stored_token(store)
    authenticator = Authenticator(store, cache_s=0.05)
    await authenticator.authenticate(f"Bearer {secret}")

    await store.revoke_token(token_id=token.token_id)
    await asyncio.sleep(0.2)

    with pytest.raises(Unauthenticated, match="revoked"):
        await authenticator.authenticate(f"Bearer {secret}")


async def test_an_unknown_token_is_cached_too_then_found_once_created(store: CountingStore, clock: ManualClock) -> None:
    secret, token = new_token(tenant="acme", scopes=READ_SUBMIT)
    authenticator = Authenticator(store, cache_s=0.5)
    for _ in range(3):
        with pytest.raises(Unauthenticated, match="unknown"):
            await authenticator.authenticate(f"Bearer {secret}")
    await store.create_token(token=token)
    clock.now += 0.6

    caller = await authenticator.authenticate(f"Bearer {secret}")

    assert store.lookups == 2
    assert caller.tenant == "acme"


async def test_an_expiry_is_seen_at_once_even_from_the_cache(store: CountingStore) -> None:
    secret, _ = await stored_token(store, expires_in=timedelta(milliseconds=100))
    authenticator = Authenticator(store, cache_s=3600)
    await authenticator.authenticate(f"Bearer {secret}")

    await asyncio.sleep(0.2)

    with pytest.raises(Unauthenticated, match="expired"):
        await authenticator.authenticate(f"Bearer {secret}")
    assert store.lookups == 1


async def test_last_used_times_are_written_in_one_batch_per_second(store: CountingStore, clock: ManualClock) -> None:
    first, one = await stored_token(store, name="one")
    second, two = await stored_token(store, name="two")
    authenticator = Authenticator(store)

    await authenticator.authenticate(f"Bearer {first}")
    clock.now += 0.5
    await authenticator.authenticate(f"Bearer {second}")
    await asyncio.sleep(0)
    written_before = list(store.touches)
    clock.now += 0.6
    await authenticator.authenticate(f"Bearer {first}")
    await authenticator.aclose()  # waits for the batch started by the request above

    assert written_before == []
    assert len(store.touches) == 1
    assert set(store.touches[0]) == {one.token_id, two.token_id}
    assert await last_used(store, one.token_id) is not None
    assert await last_used(store, two.token_id) is not None


async def test_the_batch_is_written_in_the_background_without_aclose(store: CountingStore, clock: ManualClock) -> None:
    secret, token = await stored_token(store)
    authenticator = Authenticator(store)
    await authenticator.authenticate(f"Bearer {secret}")
    clock.now += 1.0

    await authenticator.authenticate(f"Bearer {secret}")
    for _ in range(10):
        if store.touches:
            break
        await asyncio.sleep(0)

    assert [set(batch) for batch in store.touches] == [{token.token_id}]
    assert await last_used(store, token.token_id) is not None


async def test_aclose_writes_the_last_used_times_still_pending(store: CountingStore) -> None:
    secret, token = await stored_token(store)
    authenticator = Authenticator(store)
    before = datetime.now(UTC)
    await authenticator.authenticate(f"Bearer {secret}")
    assert store.touches == []

    await authenticator.aclose()

    assert len(store.touches) == 1
    used = await last_used(store, token.token_id)
    assert used is not None and before <= used <= datetime.now(UTC)


async def test_aclose_with_nothing_used_writes_nothing(store: CountingStore) -> None:
    await Authenticator(store).aclose()

    assert store.touches == []


async def test_a_store_failure_writing_last_used_never_fails_a_request(
    store: CountingStore, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    secret, token = await stored_token(store)
    store.fail_touch = True
    authenticator = Authenticator(store)
    await authenticator.authenticate(f"Bearer {secret}")
    clock.now += 1.0

    with caplog.at_level(logging.WARNING, logger="scanq.auth"):
        caller = await authenticator.authenticate(f"Bearer {secret}")
        await authenticator.aclose()

    assert caller.tenant == "acme"
    assert len(store.touches) >= 1
    assert "could not record API token use" in caplog.text
    assert await last_used(store, token.token_id) is None


async def test_uses_whose_write_failed_are_written_with_the_next_batch(
    store: CountingStore, clock: ManualClock
) -> None:
    secret, token = await stored_token(store)
    store.fail_touch = True
    authenticator = Authenticator(store)
    await authenticator.authenticate(f"Bearer {secret}")
    await authenticator.aclose()  # fails: kept for later

    store.fail_touch = False
    await authenticator.aclose()

    assert [set(batch) for batch in store.touches] == [{token.token_id}, {token.token_id}]
    assert await last_used(store, token.token_id) is not None


class GatedStore(CountingStore):
    """Holds every token look-up until ``gate`` is set."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.gate = asyncio.Event()

    async def find_token(self, *, secret_hash: str) -> ApiToken | None:
        self.lookups += 1
        await self.gate.wait()
        return await MemoryStore.find_token(self, secret_hash=secret_hash)


@pytest.fixture
async def gated() -> AsyncIterator[GatedStore]:
    async with GatedStore(f"memory://{uuid.uuid4()}") as store:
        yield store


async def test_requests_missing_the_cache_together_share_one_look_up(gated: GatedStore) -> None:
    secret, token = await stored_token(gated)
    authenticator = Authenticator(gated)
    waiting = [asyncio.create_task(authenticator.authenticate(f"Bearer {secret}")) for _ in range(20)]
    await asyncio.sleep(0)
    gated.gate.set()

    callers = await asyncio.gather(*waiting)

    assert gated.lookups == 1
    assert {caller.tenant for caller in callers} == {token.tenant}
    await authenticator.authenticate(f"Bearer {secret}")
    assert gated.lookups == 1  # cached
