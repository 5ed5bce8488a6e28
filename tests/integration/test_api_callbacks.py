"""One-off callbacks on the ingest service over a memory store: ``callback_url`` on submissions and the
tenant's callback endpoint (``/webhooks/callbacks``).

Every refusal is checked to have written nothing (no scan, no endpoint). URLs that must pass the SSRF
guard are literal public addresses over https, or loopback under an allow-list, so no test asks DNS.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest

from scanq.api import create_api_app, create_ingest_app
from scanq.api.errors import ErrorResponse
from scanq.api.schemas import DeliveryList, WebhookList, WebhookSecretOut
from scanq.auth import new_token
from scanq.config import Settings
from scanq.models import DEFAULT_WEBHOOK_EVENTS, Scope
from scanq.store.base import WEBHOOK_ROLE, callback_endpoint_id
from scanq.store.memory import MemoryStore
from scanq.views import ScanOut
from scanq.webhooks.callbacks import CALLBACK_DESCRIPTION
from tests.integration.apps import app_over

INGEST = "http://127.0.0.1:10550"
HOOK = "https://93.184.215.14/callbacks/one"
OTHER_HOOK = "https://93.184.215.14/callbacks/two"
LOCAL_HOOK = "http://127.0.0.1:9/cb"


@dataclass
class Service:
    store: MemoryStore
    http: httpx.AsyncClient

    async def submit(self, token: str | None = None, headers: dict[str, str] | None = None, **body: Any) -> Any:
        return await self.http.post("/scans", json=body, headers={**bearer(token), **(headers or {})})

    async def nothing_written(self) -> bool:
        page = await self.store.list_scans(limit=10)
        return not page.scans and not await self.store.list_endpoints()


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def error(response: httpx.Response) -> tuple[int, str, str]:
    body = msgspec.json.decode(response.content, type=ErrorResponse, strict=True)
    return response.status_code, body.error.code, body.error.message


@asynccontextmanager
async def serve(*, api: bool = False, **settings: Any) -> AsyncIterator[Service]:
    url = f"memory://{uuid.uuid4()}"
    config = Settings(database_url=url, **settings)
    factory = create_api_app if api else create_ingest_app
    async with MemoryStore(url) as store, app_over(store, factory, config) as app:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=INGEST) as http:
            yield Service(store=store, http=http)


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    async with serve() as served:
        yield served


# -- callback_url on submissions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://93.184.215.14/cb", "https"),
        ("https://10.0.0.7/cb", "refused"),
        ("https://127.0.0.1/cb", "refused"),
        ("https://169.254.169.254/latest/meta-data", "refused"),
        ("https://user:secret@93.184.215.14/cb", "credentials"),
        ("ftp://93.184.215.14/cb", "https://"),
        ("https://93.184.215.14/cb#frag", "fragment"),
        ("", "of length"),  # the schema's bound
        ("https://93.184.215.14/" + "a" * 2048, "of length"),
    ],
)
async def test_a_callback_url_the_ssrf_guard_refuses_is_a_422_and_writes_nothing(
    service: Service, url: str, why: str
) -> None:
    refused = await service.submit(callback_url=url)
    batch = await service.http.post("/scans/batch", json={"scans": [{}, {"callback_url": url}]})

    status, code, message = error(refused)
    assert (status, code) == (422, "invalid_request") and why in message, message
    assert batch.status_code == 422
    assert "scans[1]" in error(batch)[2] or why == "of length"
    assert await service.nothing_written()


async def test_plain_http_to_an_allow_listed_address_is_accepted() -> None:
    async with serve(webhook_allowlist=("127.0.0.0/8",)) as service:
        created = await service.submit(callback_url=LOCAL_HOOK)
        assert created.status_code == 202, created.text
        assert created.json()["callback_url"] == LOCAL_HOOK


async def test_with_no_webhooks_a_callback_url_is_refused() -> None:
    async with serve(webhooks=False) as service:
        refused = await service.submit(callback_url=HOOK)
        plain = await service.submit()

        status, code, message = error(refused)
        assert (status, code) == (422, "invalid_request") and "webhooks are disabled" in message
        assert plain.status_code == 202
        assert not await service.store.list_endpoints()


async def test_the_first_callback_makes_the_tenants_callback_endpoint_once(service: Service) -> None:
    first, second = await asyncio.gather(service.submit(callback_url=HOOK), service.submit(callback_url=OTHER_HOOK))
    plain = await service.submit()

    assert first.status_code == second.status_code == plain.status_code == 202
    assert first.json()["callback_url"] == HOOK and second.json()["callback_url"] == OTHER_HOOK
    assert plain.json()["callback_url"] is None
    (endpoint,) = await service.store.list_endpoints()
    assert endpoint.endpoint_id == callback_endpoint_id("default") and endpoint.url is None
    assert endpoint.event_types == DEFAULT_WEBHOOK_EVENTS and endpoint.description == CALLBACK_DESCRIPTION
    stored = await service.store.get(scan_id=first.json()["scan_id"])
    assert stored.callback_url == HOOK


async def test_the_callback_url_is_part_of_the_idempotency_comparison(service: Service) -> None:
    key = {"Idempotency-Key": "order-1"}
    created = await service.submit(headers=key, callback_url=HOOK)
    replayed = await service.submit(headers=key, callback_url=HOOK)
    other = await service.submit(headers=key, callback_url=OTHER_HOOK)
    without = await service.submit(headers=key)

    assert (created.status_code, replayed.status_code) == (202, 200)
    assert replayed.json()["scan_id"] == created.json()["scan_id"]
    assert other.status_code == without.status_code == 409


async def test_the_status_api_shows_the_callback_url() -> None:
    async with serve(api=True) as service:
        created = await service.submit(callback_url=HOOK)
        read = await service.http.get(f"/scans/{created.json()['scan_id']}")
        scan = msgspec.json.decode(read.content, type=ScanOut, strict=True)
        assert scan.callback_url == HOOK


# -- /webhooks/callbacks ---------------------------------------------------------------------------


async def test_get_callbacks_makes_the_endpoint_and_answers_its_secret(service: Service) -> None:
    shown = await service.http.get("/webhooks/callbacks")
    again = await service.http.get("/webhooks/callbacks")
    listed = msgspec.json.decode((await service.http.get("/webhooks")).content, type=WebhookList, strict=True)

    endpoint = msgspec.json.decode(shown.content, type=WebhookSecretOut, strict=True)
    assert shown.status_code == 200 and again.json()["secret"] == endpoint.secret
    assert (endpoint.endpoint_id, endpoint.url, endpoint.tenant) == ("callbacks", None, "default")
    assert endpoint.secret.startswith("whsec_")
    assert [(e.endpoint_id, e.url) for e in listed.webhooks] == [("callbacks", None)]
    # A submission afterwards uses the same endpoint (and secret).
    assert (await service.submit(callback_url=HOOK)).status_code == 202
    (stored,) = await service.store.list_endpoints()
    assert stored.secret == endpoint.secret


async def test_callback_deliveries_are_listed_and_retried_under_callbacks(service: Service) -> None:
    with_callback = (await service.submit(callback_url=HOOK)).json()["scan_id"]
    plain = (await service.submit()).json()["scan_id"]
    for scan_id in (with_callback, plain):
        assert (await service.http.post(f"/scans/{scan_id}/cancel")).status_code == 200
    assert await service.store.lead(role=WEBHOOK_ROLE, owner="test", term_s=60)
    while await service.store.dispatch_events(owner="test"):
        pass

    listed = await service.http.get("/webhooks/callbacks/deliveries")
    (delivery,) = msgspec.json.decode(listed.content, type=DeliveryList, strict=True).deliveries
    retried = await service.http.post(f"/webhooks/callbacks/deliveries/{delivery.event_id}/retry")
    unknown = await service.http.post("/webhooks/callbacks/deliveries/999999/retry")

    assert (delivery.endpoint_id, delivery.url, delivery.event.scan_id) == ("callbacks", HOOK, with_callback)
    assert delivery.event.type == "scan.cancelled"
    assert retried.status_code == 200 and retried.json()["endpoint_id"] == "callbacks"
    assert error(unknown)[:2] == (404, "delivery_not_found") and "'callbacks'" in error(unknown)[2]


async def test_rotate_and_delete_the_callback_endpoint(service: Service) -> None:
    missing = await service.http.delete("/webhooks/callbacks")
    first = (await service.http.get("/webhooks/callbacks")).json()
    rotated = await service.http.post("/webhooks/callbacks/rotate-secret")
    deleted = await service.http.delete("/webhooks/callbacks")
    gone = await service.http.get("/webhooks/callbacks/deliveries")
    assert (await service.submit(callback_url=HOOK)).status_code == 202
    remade = (await service.http.get("/webhooks/callbacks")).json()

    assert error(missing)[:2] == (404, "endpoint_not_found") and "'callbacks'" in error(missing)[2]
    assert rotated.status_code == 200 and rotated.json()["secret"] != first["secret"]
    assert rotated.json()["previous_secret_until"] is not None
    assert deleted.status_code == 204 and error(gone)[:2] == (404, "endpoint_not_found")
    assert remade["secret"] not in (first["secret"], rotated.json()["secret"])


async def test_a_tenant_manages_only_its_own_callbacks_and_an_admin_names_the_tenant() -> None:
    async with serve(auth="tokens") as service:
        acme, acme_token = new_token(tenant="acme", scopes=frozenset({Scope.SUBMIT, Scope.WEBHOOKS}))
        reader, reader_token = new_token(tenant="acme", scopes=frozenset({Scope.SUBMIT}))
        admin, admin_token = new_token(tenant="ops", scopes=frozenset({Scope.ADMIN}))
        for token in (acme_token, reader_token, admin_token):
            await service.store.create_token(token=token)

        other = await service.http.get("/webhooks/callbacks?tenant=globex", headers=bearer(acme))
        no_scope = await service.http.get("/webhooks/callbacks", headers=bearer(reader))
        assert error(other)[:2] == (403, "forbidden") and error(no_scope)[:2] == (403, "forbidden")
        assert not await service.store.list_endpoints()

        own = await service.http.get("/webhooks/callbacks", headers=bearer(acme))
        by_admin = await service.http.get("/webhooks/callbacks?tenant=acme", headers=bearer(admin))
        admins_own = await service.http.get("/webhooks/callbacks", headers=bearer(admin))
        bad_name = await service.http.get("/webhooks/callbacks?tenant=no%20such", headers=bearer(admin))

        assert own.json()["tenant"] == "acme" and by_admin.json()["secret"] == own.json()["secret"]
        assert admins_own.json()["tenant"] == "ops"
        assert bad_name.status_code == 422
        # A submission by a token without the webhooks scope still makes its tenant's callback endpoint.
        assert (await service.submit(token=reader, callback_url=HOOK)).status_code == 202


async def test_get_callbacks_from_another_site_is_refused() -> None:
    async with serve() as service:
        refused = await service.http.get("/webhooks/callbacks", headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403 and not await service.store.list_endpoints()
