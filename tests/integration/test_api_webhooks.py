"""The webhook routes of the ingest service over a memory store, with authentication off and on.

Every answer is decoded with the Struct its OpenAPI reply names (strictly: a field too many or too few
fails), and every refusal is checked to have written nothing. Endpoint URLs that must pass the SSRF
guard are literal public addresses over https, so no test asks DNS.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest

from scanq.api import create_ingest_app
from scanq.api.errors import ErrorResponse
from scanq.api.schemas import DeliveryList, DeliveryOut, WebhookList, WebhookOut, WebhookSecretOut
from scanq.auth import new_token
from scanq.config import Settings
from scanq.ids import new_scan_id
from scanq.models import (
    DeliveryOutcome,
    DeliveryResult,
    NewScan,
    Scope,
)
from scanq.store.base import WEBHOOK_ROLE
from scanq.store.memory import MemoryStore
from scanq.webhook_service import MAX_ENDPOINTS_PER_TENANT, PREVIOUS_SECRET_GRACE
from tests.integration.apps import app_over

INGEST = "http://127.0.0.1:10550"
HOOK = "https://93.184.215.14/hooks/scanq"
OTHER_HOOK = "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/scanq"
MISSING = "wh_000000000000000000000000"
DEFAULT_TYPES = ["scan.cancelled", "scan.completed", "scan.failed"]


@dataclass
class Service:
    store: MemoryStore
    http: httpx.AsyncClient

    async def create(self, token: str | None = None, **body: Any) -> httpx.Response:
        body.setdefault("url", HOOK)
        return await self.http.post("/webhooks", json=body, headers=bearer(token))

    async def endpoints_stored(self) -> int:
        return len(await self.store.list_endpoints())


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def decoded(response: httpx.Response, into: type[Any]) -> Any:
    return msgspec.json.decode(response.content, type=into, strict=True)


def error_code(response: httpx.Response) -> str:
    code: str = decoded(response, ErrorResponse).error.code
    return code


@asynccontextmanager
async def serve(**settings: Any) -> AsyncIterator[Service]:
    url = f"memory://{uuid.uuid4()}"
    config = Settings(database_url=url, **settings)
    async with MemoryStore(url) as store, app_over(store, create_ingest_app, config) as app:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=INGEST) as http:
            yield Service(store=store, http=http)


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    async with serve() as served:
        yield served


async def deliveries_for(service: Service, endpoint_id: str, count: int) -> list[str]:
    """Make ``count`` scans (one Accepted event each) and fan them out to the endpoint; their scan ids."""
    scan_ids = []
    for _ in range(count):
        created = await service.store.create(scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)))
        scan_ids.append(created.scan.scan_id)
    assert await service.store.lead(role=WEBHOOK_ROLE, owner="test", term_s=60)
    assert await service.store.dispatch_events(owner="test") == count
    return scan_ids


# -- authentication off: the operator, tenant default ---------------------------------------------


async def test_create_answers_201_with_the_secret_once_and_reads_never_show_it(service: Service) -> None:
    before = datetime.now(UTC)
    created = await service.create(description="ticketing")
    assert created.status_code == 201, created.text
    endpoint = decoded(created, WebhookSecretOut)
    got = await service.http.get(f"/webhooks/{endpoint.endpoint_id}")
    listed = await service.http.get("/webhooks")

    assert created.headers["Location"] == f"/webhooks/{endpoint.endpoint_id}"
    assert endpoint.endpoint_id.startswith("wh_") and endpoint.secret.startswith("whsec_")
    assert (endpoint.tenant, endpoint.url, endpoint.description) == ("default", HOOK, "ticketing")
    assert endpoint.event_types == DEFAULT_TYPES and endpoint.previous_secret_until is None
    assert endpoint.created_at >= before
    assert got.status_code == 200 and "secret" not in got.json()
    assert decoded(got, WebhookOut).endpoint_id == endpoint.endpoint_id
    assert [e.endpoint_id for e in decoded(listed, WebhookList).webhooks] == [endpoint.endpoint_id]
    assert (await service.store.get_endpoint(endpoint_id=endpoint.endpoint_id)).secret == endpoint.secret


async def test_event_types_are_kept_as_a_set_and_can_be_the_start_of_a_scan(service: Service) -> None:
    created = await service.create(event_types=["scan.started", "scan.completed", "scan.started"])

    assert created.status_code == 201, created.text
    assert decoded(created, WebhookSecretOut).event_types == ["scan.completed", "scan.started"]


async def test_rotate_gives_a_new_secret_and_keeps_the_old_one_for_a_day(service: Service) -> None:
    endpoint = decoded(await service.create(), WebhookSecretOut)

    rotated = await service.http.post(f"/webhooks/{endpoint.endpoint_id}/rotate-secret")

    assert rotated.status_code == 200, rotated.text
    new = decoded(rotated, WebhookSecretOut)
    stored = await service.store.get_endpoint(endpoint_id=endpoint.endpoint_id)
    assert new.secret.startswith("whsec_") and new.secret != endpoint.secret
    assert (stored.secret, stored.previous_secret) == (new.secret, endpoint.secret)
    assert new.previous_secret_until is not None
    grace = new.previous_secret_until - datetime.now(UTC)
    assert PREVIOUS_SECRET_GRACE - timedelta(minutes=1) < grace <= PREVIOUS_SECRET_GRACE


async def test_delete_answers_204_then_the_endpoint_is_not_found(service: Service) -> None:
    endpoint = decoded(await service.create(), WebhookSecretOut)
    path = f"/webhooks/{endpoint.endpoint_id}"

    deleted = await service.http.delete(path)
    again = await service.http.delete(path)
    got = await service.http.get(path)

    assert (deleted.status_code, deleted.content) == (204, b"")
    assert again.status_code == got.status_code == 404
    assert error_code(got) == "endpoint_not_found"
    assert await service.endpoints_stored() == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/webhooks/{id}"),
        ("DELETE", "/webhooks/{id}"),
        ("POST", "/webhooks/{id}/rotate-secret"),
        ("GET", "/webhooks/{id}/deliveries"),
        ("POST", "/webhooks/{id}/deliveries/1/retry"),
    ],
)
@pytest.mark.parametrize("endpoint_id", [MISSING, "not-an-id", "wh_"])
async def test_an_unknown_endpoint_is_404_on_every_route(
    service: Service, method: str, path: str, endpoint_id: str
) -> None:
    answer = await service.http.request(method, path.format(id=endpoint_id))

    assert answer.status_code == 404, answer.text
    assert error_code(answer) == "endpoint_not_found"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "https://127.0.0.1/",
        "http://169.254.169.254/",
        "https://169.254.169.254/latest/meta-data/",
        "http://localhost:8080/hook",
        "https://10.0.0.5/hook",
        "https://[::1]/hook",
        "http://93.184.215.14/hook",  # public, but plain http is for allow-listed addresses only
        "ftp://93.184.215.14/hook",
        "https://user:pw@93.184.215.14/hook",
        "not a url",
    ],
)
async def test_an_ssrf_url_is_422_and_nothing_is_stored(service: Service, url: str) -> None:
    refused = await service.create(url=url)

    assert refused.status_code == 422, refused.text
    assert error_code(refused) == "invalid_request"
    assert await service.endpoints_stored() == 0


async def test_an_allow_listed_loopback_receiver_may_use_http() -> None:
    async with serve(webhook_allowlist=("127.0.0.0/8",)) as service:
        created = await service.create(url="http://127.0.0.1:9999/hook")
        metadata = await service.create(url="http://169.254.169.254/")

    assert created.status_code == 201, created.text
    assert metadata.status_code == 422  # metadata addresses never, allow-list or not


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"", 422, "invalid_request"),
        (b"{", 400, "malformed_json"),
        (b"[]", 422, "invalid_request"),
        (b'{"url": "' + HOOK.encode() + b'", "secret": "whsec_mine"}', 422, "invalid_request"),
        (b'{"url": "' + HOOK.encode() + b'", "event_types": []}', 422, "invalid_request"),
        (b'{"url": "' + HOOK.encode() + b'", "event_types": ["scan.exploded"]}', 422, "invalid_request"),
        (b'{"url": "' + HOOK.encode() + b'", "description": "' + b"x" * 501 + b'"}', 422, "invalid_request"),
        (b'{"url": ""}', 422, "invalid_request"),
        (b'{"url": "https://' + b"a" * 2100 + b'.example/"}', 422, "invalid_request"),
    ],
)
async def test_a_bad_body_is_refused_before_anything_is_written(
    service: Service, body: bytes, status: int, code: str
) -> None:
    answer = await service.http.post("/webhooks", content=body, headers={"Content-Type": "application/json"})

    assert answer.status_code == status, answer.text
    assert error_code(answer) == code
    assert await service.endpoints_stored() == 0


async def test_a_tenant_has_a_bounded_number_of_endpoints(service: Service) -> None:
    for _ in range(MAX_ENDPOINTS_PER_TENANT):
        assert (await service.create()).status_code == 201
    refused = await service.create()

    assert refused.status_code == 422
    assert await service.endpoints_stored() == MAX_ENDPOINTS_PER_TENANT


# -- deliveries ----------------------------------------------------------------------------------


async def test_deliveries_list_newest_first_filter_and_retry(service: Service) -> None:
    endpoint = decoded(await service.create(event_types=["scan.accepted"]), WebhookSecretOut)
    path = f"/webhooks/{endpoint.endpoint_id}/deliveries"
    scan_ids = await deliveries_for(service, endpoint.endpoint_id, 3)
    (job, *_) = await service.store.claim_deliveries(worker_id="w1", limit=1, lease_s=30)
    failed = DeliveryResult(
        endpoint_id=endpoint.endpoint_id,
        event_id=job.delivery.event.event_id,
        worker_id="w1",
        outcome=DeliveryOutcome.FAILED,
        status_code=500,
        error="HTTP 500",
    )
    assert await service.store.record_deliveries(results=[failed]) == [True]

    everything = decoded(await service.http.get(path), DeliveryList).deliveries
    only_failed = decoded(await service.http.get(path, params={"status": "failed"}), DeliveryList).deliveries
    two = decoded(await service.http.get(path, params={"limit": 2}), DeliveryList).deliveries
    retried = await service.http.post(f"{path}/{job.delivery.event.event_id}/retry")

    assert [d.event.scan_id for d in everything] == scan_ids[::-1]
    assert {d.event.type for d in everything} == {"scan.accepted"}
    assert all(d.event_id == d.event.event_id and d.endpoint_id == endpoint.endpoint_id for d in everything)
    assert [(d.event_id, d.attempts, d.last_status_code, d.last_error) for d in only_failed] == [
        (job.delivery.event.event_id, 1, 500, "HTTP 500")
    ]
    assert len(two) == 2
    assert retried.status_code == 200, retried.text
    again = decoded(retried, DeliveryOut)
    assert (again.status, again.attempts, again.last_status_code) == ("pending", 1, 500)
    assert again.next_attempt_at <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("query", "message"), [("status=lost", "unknown delivery status"), ("limit=0", "limit"), ("limit=x", "limit")]
)
async def test_a_bad_deliveries_query_is_422(service: Service, query: str, message: str) -> None:
    endpoint = decoded(await service.create(), WebhookSecretOut)

    answer = await service.http.get(f"/webhooks/{endpoint.endpoint_id}/deliveries?{query}")

    assert answer.status_code == 422
    assert message in answer.json()["error"]["message"]


async def test_retrying_an_unknown_delivery_is_404_delivery_not_found(service: Service) -> None:
    endpoint = decoded(await service.create(), WebhookSecretOut)
    base = f"/webhooks/{endpoint.endpoint_id}/deliveries"

    unknown = await service.http.post(f"{base}/12345/retry")
    too_long = await service.http.post(f"{base}/{'9' * 300}/retry")

    assert (unknown.status_code, error_code(unknown)) == (404, "delivery_not_found")
    assert (too_long.status_code, error_code(too_long)) == (404, "delivery_not_found")


# -- authentication on: scopes and tenants ---------------------------------------------------------


@dataclass
class Tokens:
    alice: str  # tenant-a, webhooks scope
    bob: str  # tenant-b, webhooks scope
    reader: str  # tenant-a, read only
    admin: str


@pytest.fixture
async def secured() -> AsyncIterator[tuple[Service, Tokens]]:
    async with serve(auth="tokens") as service:
        secrets = []
        for tenant, scopes in [
            ("tenant-a", {Scope.WEBHOOKS}),
            ("tenant-b", {Scope.WEBHOOKS, Scope.READ}),
            ("tenant-a", {Scope.READ, Scope.SUBMIT, Scope.CANCEL}),
            ("ops", {Scope.ADMIN}),
        ]:
            secret, token = new_token(tenant=tenant, scopes=frozenset(scopes))
            await service.store.create_token(token=token)
            secrets.append(secret)
        yield service, Tokens(*secrets)


ROUTES = [
    ("POST", "/webhooks"),
    ("GET", "/webhooks"),
    ("GET", "/webhooks/{id}"),
    ("DELETE", "/webhooks/{id}"),
    ("POST", "/webhooks/{id}/rotate-secret"),
    ("GET", "/webhooks/{id}/deliveries"),
    ("POST", "/webhooks/{id}/deliveries/1/retry"),
]


async def request(service: Service, method: str, path: str, endpoint_id: str, token: str | None) -> httpx.Response:
    body = {"url": HOOK} if (method, path) == ("POST", "/webhooks") else None
    return await service.http.request(method, path.format(id=endpoint_id), headers=bearer(token), json=body)


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_without_a_token_every_route_is_401(secured: tuple[Service, Tokens], method: str, path: str) -> None:
    service, tokens = secured
    endpoint = decoded(await service.create(tokens.alice), WebhookSecretOut)

    anonymous = await request(service, method, path, endpoint.endpoint_id, None)
    wrong = await request(service, method, path, endpoint.endpoint_id, "scanq_not_a_token")

    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert await service.endpoints_stored() == 1


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_a_token_without_the_webhooks_scope_is_403(
    secured: tuple[Service, Tokens], method: str, path: str
) -> None:
    service, tokens = secured
    endpoint = decoded(await service.create(tokens.alice), WebhookSecretOut)

    refused = await request(service, method, path, endpoint.endpoint_id, tokens.reader)

    assert refused.status_code == 403, refused.text
    assert error_code(refused) == "forbidden"
    assert await service.endpoints_stored() == 1
    stored = await service.store.get_endpoint(endpoint_id=endpoint.endpoint_id)
    assert stored.secret == endpoint.secret  # not rotated


@pytest.mark.parametrize(("method", "path"), [route for route in ROUTES if "{id}" in route[1]])
async def test_another_tenants_endpoint_is_not_found_and_stays_as_it_was(
    secured: tuple[Service, Tokens], method: str, path: str
) -> None:
    service, tokens = secured
    endpoint = decoded(await service.create(tokens.alice), WebhookSecretOut)

    answer = await request(service, method, path, endpoint.endpoint_id, tokens.bob)

    assert answer.status_code == 404, answer.text
    assert error_code(answer) == "endpoint_not_found"
    stored = await service.store.get_endpoint(endpoint_id=endpoint.endpoint_id)
    assert stored.secret == endpoint.secret


async def test_each_tenant_lists_its_own_and_an_admin_any(secured: tuple[Service, Tokens]) -> None:
    service, tokens = secured
    a = decoded(await service.create(tokens.alice), WebhookSecretOut)
    b = decoded(await service.create(tokens.bob, url=OTHER_HOOK), WebhookSecretOut)

    def ids(response: httpx.Response) -> list[str]:
        assert response.status_code == 200, response.text
        return [e.endpoint_id for e in decoded(response, WebhookList).webhooks]

    as_alice = ids(await service.http.get("/webhooks", headers=bearer(tokens.alice)))
    as_admin = ids(await service.http.get("/webhooks", headers=bearer(tokens.admin)))
    admin_b = ids(await service.http.get("/webhooks?tenant=tenant-b", headers=bearer(tokens.admin)))
    own_by_name = ids(await service.http.get("/webhooks?tenant=tenant-a", headers=bearer(tokens.alice)))
    nosy = await service.http.get("/webhooks?tenant=tenant-b", headers=bearer(tokens.alice))
    bad_name = await service.http.get("/webhooks?tenant=Not A Tenant", headers=bearer(tokens.admin))
    admin_reads_a = await service.http.get(f"/webhooks/{a.endpoint_id}", headers=bearer(tokens.admin))
    admin_deletes_b = await service.http.delete(f"/webhooks/{b.endpoint_id}", headers=bearer(tokens.admin))

    assert (a.tenant, b.tenant) == ("tenant-a", "tenant-b")
    assert as_alice == own_by_name == [a.endpoint_id]
    assert as_admin == [a.endpoint_id, b.endpoint_id]
    assert admin_b == [b.endpoint_id]
    assert (nosy.status_code, error_code(nosy)) == (403, "forbidden")
    assert bad_name.status_code == 422
    assert admin_reads_a.status_code == 200 and decoded(admin_reads_a, WebhookOut).tenant == "tenant-a"
    assert admin_deletes_b.status_code == 204
    assert [e.endpoint_id for e in await service.store.list_endpoints()] == [a.endpoint_id]


async def test_an_admin_registers_for_its_own_tenant(secured: tuple[Service, Tokens]) -> None:
    service, tokens = secured

    created = await service.create(tokens.admin)

    assert decoded(created, WebhookSecretOut).tenant == "ops"


async def test_deliveries_of_another_tenants_endpoint_are_not_found(secured: tuple[Service, Tokens]) -> None:
    service, tokens = secured
    endpoint = decoded(await service.create(tokens.alice, event_types=["scan.accepted"]), WebhookSecretOut)
    scan = await service.store.create(
        scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), tenant="tenant-a")
    )
    assert await service.store.lead(role=WEBHOOK_ROLE, owner="test", term_s=60)
    assert await service.store.dispatch_events(owner="test") == 1
    path = f"/webhooks/{endpoint.endpoint_id}/deliveries"

    mine = await service.http.get(path, headers=bearer(tokens.alice))
    theirs = await service.http.get(path, headers=bearer(tokens.bob))
    event_id = decoded(mine, DeliveryList).deliveries[0].event_id
    retry_theirs = await service.http.post(f"{path}/{event_id}/retry", headers=bearer(tokens.bob))

    assert [d.event.scan_id for d in decoded(mine, DeliveryList).deliveries] == [scan.scan.scan_id]
    assert (theirs.status_code, retry_theirs.status_code) == (404, 404)


# -- the OpenAPI document --------------------------------------------------------------------------


async def test_the_openapi_document_declares_every_webhook_route_and_reply(service: Service) -> None:
    document = (await service.http.get("/openapi.json")).json()
    paths = document["paths"]

    expected = {
        ("/webhooks", "post"): {"201", "400", "401", "403", "413", "415", "422", "503"},
        ("/webhooks", "get"): {"200", "401", "403", "422", "503"},
        ("/webhooks/{endpoint_id}", "get"): {"200", "401", "403", "404", "503"},
        ("/webhooks/{endpoint_id}", "delete"): {"204", "401", "403", "404", "503"},
        ("/webhooks/{endpoint_id}/rotate-secret", "post"): {"200", "401", "403", "404", "415", "503"},
        ("/webhooks/{endpoint_id}/deliveries", "get"): {"200", "401", "403", "404", "422", "503"},
        ("/webhooks/{endpoint_id}/deliveries/{event_id}/retry", "post"): {"200", "401", "403", "404", "415", "503"},
    }
    for (path, method), replies in expected.items():
        assert set(paths[path][method]["responses"]) == replies, (path, method)
        assert paths[path][method]["tags"] == ["webhooks"]
    created = paths["/webhooks"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/WebhookSecretOut"}
    assert "secret" in document["components"]["schemas"]["WebhookSecretOut"]["required"]
    assert "secret" not in document["components"]["schemas"]["WebhookOut"]["properties"]
