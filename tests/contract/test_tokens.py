"""API tokens (Store rule 8): stored by their secret's hash, listed, revoked, touched, seen by every process.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from scanq.exceptions import TokenNotFound, ValidationError
from scanq.models import ApiToken, Scope
from scanq.store import Store
from tests.contract.helpers import (
    StoreFactory,
    assert_near,
    assert_same_instant,
    new_token,
    now_ms,
    secret_hash,
)


def ids(tokens: list[ApiToken]) -> list[str]:
    return [token.token_id for token in tokens]


async def test_a_created_token_is_found_by_its_hash_with_every_field(store: Store) -> None:
    created = now_ms() - timedelta(hours=1)
    token = new_token(
        tenant="acme",
        name="ci pipeline",
        scopes=frozenset({Scope.SUBMIT, Scope.READ, Scope.CANCEL}),
        created_at=created,
        expires_at=created + timedelta(days=30),
    )

    await store.create_token(token=token)
    found = await store.find_token(secret_hash=token.secret_hash)

    assert found == token
    assert found is not None
    assert isinstance(found.scopes, frozenset)
    assert all(isinstance(scope, Scope) for scope in found.scopes)
    assert (found.revoked_at, found.last_used_at) == (None, None)


async def test_a_token_without_name_expiry_or_scopes_round_trips(store: Store) -> None:
    bare = new_token(scopes=frozenset())
    admin = new_token(tenant="ops", scopes=frozenset(Scope))

    await store.create_token(token=bare)
    await store.create_token(token=admin)

    assert await store.find_token(secret_hash=bare.secret_hash) == bare
    assert await store.find_token(secret_hash=admin.secret_hash) == admin


async def test_an_unknown_hash_finds_nothing(store: Store) -> None:
    await store.create_token(token=new_token())

    assert await store.find_token(secret_hash=secret_hash()) is None


async def test_an_expired_or_revoked_token_is_still_found_the_caller_judges(store: Store) -> None:
    expired = new_token(created_at=now_ms() - timedelta(days=2), expires_at=now_ms() - timedelta(days=1))
    revoked = new_token()
    await store.create_token(token=expired)
    await store.create_token(token=revoked)
    await store.revoke_token(token_id=revoked.token_id)

    found_expired = await store.find_token(secret_hash=expired.secret_hash)
    found_revoked = await store.find_token(secret_hash=revoked.secret_hash)

    assert found_expired == expired
    assert found_revoked is not None and found_revoked.revoked_at is not None


async def test_a_duplicate_token_id_or_secret_hash_is_refused(store: Store) -> None:
    first = new_token(name="first")
    await store.create_token(token=first)

    with pytest.raises(ValidationError):
        await store.create_token(token=new_token(token_id=first.token_id, name="same id"))
    with pytest.raises(ValidationError):
        await store.create_token(token=new_token(secret_hash=first.secret_hash, tenant="other", name="same hash"))

    assert await store.list_tokens() == [first]
    assert await store.find_token(secret_hash=first.secret_hash) == first


async def test_tokens_are_listed_oldest_first_then_by_id_revoked_ones_included(store: Store) -> None:
    base = now_ms()
    b = new_token(token_id="tok_b", tenant="acme", created_at=base - timedelta(seconds=1))
    a = new_token(token_id="tok_a", tenant="acme", created_at=base - timedelta(seconds=1))
    c = new_token(token_id="tok_c", tenant="acme", created_at=base - timedelta(seconds=2))
    other = new_token(token_id="tok_0", tenant="globex", created_at=base - timedelta(seconds=3))
    for token in (b, a, other, c):
        await store.create_token(token=token)
    await store.revoke_token(token_id=a.token_id)

    everyone = await store.list_tokens()
    acme = await store.list_tokens(tenant="acme")

    assert ids(everyone) == ["tok_0", "tok_c", "tok_a", "tok_b"]
    assert ids(acme) == ["tok_c", "tok_a", "tok_b"]
    assert acme[1].revoked_at is not None
    assert ids(await store.list_tokens(tenant="globex")) == ["tok_0"]
    assert await store.list_tokens(tenant="nobody") == []


async def test_an_empty_store_lists_no_tokens(store: Store) -> None:
    assert await store.list_tokens() == []


async def test_revoke_sets_revoked_at_to_now_once_and_keeps_the_first_time(store: Store) -> None:
    token = new_token()
    untouched = new_token()
    await store.create_token(token=token)
    await store.create_token(token=untouched)

    revoked = await store.revoke_token(token_id=token.token_id)
    again = await store.revoke_token(token_id=token.token_id)
    stored = await store.find_token(secret_hash=token.secret_hash)

    assert_near(revoked.revoked_at, datetime.now(UTC))
    assert stored is not None
    assert_same_instant(again.revoked_at, revoked.revoked_at)
    assert_same_instant(stored.revoked_at, revoked.revoked_at)
    # Nothing else changed, and no other token was touched.
    assert stored == dataclasses.replace(token, revoked_at=stored.revoked_at)
    assert revoked.token_id == token.token_id and revoked.secret_hash == token.secret_hash
    assert await store.find_token(secret_hash=untouched.secret_hash) == untouched


async def test_revoking_an_unknown_token_raises_token_not_found(store: Store) -> None:
    await store.create_token(token=new_token())

    with pytest.raises(TokenNotFound):
        await store.revoke_token(token_id="tok_unknown")


async def test_touch_records_last_use_and_never_moves_it_backwards(store: Store) -> None:
    a, b, idle = new_token(), new_token(), new_token()
    for token in (a, b, idle):
        await store.create_token(token=token)
    base = now_ms()
    first_a, first_b = base - timedelta(seconds=10), base - timedelta(seconds=5)

    await store.touch_tokens(last_used={a.token_id: first_a, b.token_id: first_b, "tok_unknown": base})
    after_first = {t.token_id: t for t in await store.list_tokens()}
    await store.touch_tokens(last_used={a.token_id: first_a - timedelta(seconds=1), b.token_id: base})
    after_second = {t.token_id: t for t in await store.list_tokens()}
    await store.touch_tokens(last_used={})

    assert after_first[a.token_id].last_used_at == first_a
    assert after_first[b.token_id].last_used_at == first_b
    assert after_second[a.token_id].last_used_at == first_a  # an earlier time does not move it back
    assert after_second[b.token_id].last_used_at == base
    assert after_second[idle.token_id] == idle
    assert "tok_unknown" not in after_second  # an unknown id is ignored, not created
    assert await store.find_token(secret_hash=a.secret_hash) == dataclasses.replace(a, last_used_at=first_a)


async def test_touch_keeps_a_revocation(store: Store) -> None:
    token = new_token()
    await store.create_token(token=token)
    revoked = await store.revoke_token(token_id=token.token_id)
    used = now_ms()

    await store.touch_tokens(last_used={token.token_id: used})
    stored = await store.find_token(secret_hash=token.secret_hash)

    assert stored is not None
    assert stored.last_used_at == used
    assert_same_instant(stored.revoked_at, revoked.revoked_at)


async def test_tokens_and_their_revocation_are_seen_by_another_store_on_the_same_database(
    store: Store, open_another: StoreFactory
) -> None:
    other = await open_another()
    token = new_token(name="shared", expires_at=now_ms() + timedelta(days=1))
    await store.create_token(token=token)

    seen = await other.find_token(secret_hash=token.secret_hash)
    revoked = await other.revoke_token(token_id=token.token_id)
    used = now_ms()
    await other.touch_tokens(last_used={token.token_id: used})
    back = await store.find_token(secret_hash=token.secret_hash)

    assert seen == token
    assert back is not None
    assert_same_instant(back.revoked_at, revoked.revoked_at)
    assert back.last_used_at == used
    assert ids(await other.list_tokens(tenant=token.tenant)) == [token.token_id]
    with pytest.raises(ValidationError):
        await other.create_token(token=new_token(secret_hash=token.secret_hash))
