"""What a refused call tells its caller: the error names the id it refused and why.

The CLI and the API show these messages and attributes to the user (``scanq tokens create`` with a taken id,
a webhook endpoint created twice, a scan looked up with another tenant's name, a malformed event id).

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import pytest

from scanq.exceptions import ScanNotFound, TokenNotFound, ValidationError
from scanq.store import Store
from tests.contract.events import new_endpoint, settled_events
from tests.contract.helpers import new_scan, new_token


async def test_a_taken_token_id_and_a_taken_secret_are_told_apart(store: Store) -> None:
    token = new_token()
    await store.create_token(token=token)

    with pytest.raises(ValidationError) as same_id:
        await store.create_token(token=new_token(token_id=token.token_id))
    with pytest.raises(ValidationError) as same_secret:
        await store.create_token(token=new_token(secret_hash=token.secret_hash))

    assert str(same_id.value) == f"an API token with id {token.token_id!r} exists already"
    assert str(same_secret.value) == "an API token with this secret exists already"
    assert await store.list_tokens() == [token]


async def test_revoking_an_unknown_token_names_it(store: Store) -> None:
    await store.create_token(token=new_token())

    with pytest.raises(TokenNotFound) as missing:
        await store.revoke_token(token_id="tok_nobody")

    assert missing.value.token_id == "tok_nobody"
    assert "'tok_nobody'" in str(missing.value)


async def test_a_taken_endpoint_id_is_named(store: Store) -> None:
    endpoint = new_endpoint()
    await store.create_endpoint(endpoint=endpoint)

    with pytest.raises(ValidationError) as taken:
        await store.create_endpoint(endpoint=new_endpoint(endpoint_id=endpoint.endpoint_id))

    assert str(taken.value) == f"a webhook endpoint with id {endpoint.endpoint_id!r} exists already"


async def test_another_tenants_scan_is_an_unknown_id_named_as_asked(store: Store) -> None:
    created = (await store.create(scan=new_scan(tenant="acme"))).scan

    with pytest.raises(ScanNotFound) as hidden:
        await store.get(scan_id=created.scan_id, tenant="globex")

    assert hidden.value.scan_id == created.scan_id
    assert (await store.get(scan_id=created.scan_id, tenant="acme")).scan_id == created.scan_id


async def test_a_malformed_event_id_is_named(store: Store) -> None:
    await store.create(scan=new_scan())
    await settled_events(store, count=1)

    with pytest.raises(ValidationError) as malformed:
        await store.read_events(after="12abc")

    assert str(malformed.value) == "invalid event id '12abc'"
