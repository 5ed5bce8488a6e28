"""Every HTTP route against every kind of credential, on real processes with tokens required.

``scanq ingest`` and ``scanq status`` run with ``SCANQ_AUTH=tokens`` on SQLite and on
PostgreSQL. Each case sends one request and checks the status code, the error
code and, for every refused request, that the store holds exactly what it held
before (every scan of every tenant, whole, and the counts).

The credentials: none, malformed, unknown, revoked, expired, a token lacking the
route's scope, the right token on another tenant's scan or webhook endpoint (or
naming another tenant), and the right token. The event streams are read only
up to their headers (a stream does not end by itself).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from scanq.auth import new_token
from scanq.models import ApiToken, Scan, Scope, WebhookEndpoint
from scanq.store import open_store
from scanq.store.base import WEBHOOK_ROLE, callback_endpoint_id
from tests.acceptance.conftest import Spawn, free_port, wait_http_ready

pytestmark = pytest.mark.slow

TENANT = "acme"
OTHER = "globex"
REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Route:
    service: str  # "ingest" or "status"
    method: str
    path: str  # "{id}" is replaced by a scan id, "{endpoint_id}" and "{event_id}" by a webhook delivery's
    scope: Scope
    ok: int
    body: Any = None
    # Where "another tenant" applies: "scan" (the route names a scan), "endpoint" (a webhook endpoint),
    # "param" (?tenant=), None (a submission, a registration).
    other: str | None = None


ROUTES = [
    Route("ingest", "GET", "/", Scope.SUBMIT, 200),
    Route("ingest", "POST", "/scans", Scope.SUBMIT, 202, body={}),
    Route("ingest", "POST", "/scans/batch", Scope.SUBMIT, 202, body={"scans": [{}, {}]}),
    Route("ingest", "POST", "/scans/{id}/cancel", Scope.CANCEL, 200, other="scan"),
    Route("status", "GET", "/", Scope.READ, 200, other="param"),
    Route("status", "GET", "/scans", Scope.READ, 200, other="param"),
    Route("status", "GET", "/scans/{id}", Scope.READ, 200, other="scan"),
    Route("status", "GET", "/{id}", Scope.READ, 200, other="scan"),
    Route("status", "GET", "/stats", Scope.READ, 200, other="param"),
    Route("status", "GET", "/stats/throughput", Scope.READ, 200, other="param"),
    Route("status", "GET", "/events", Scope.READ, 200, other="param"),
    Route("status", "GET", "/scans/{id}/events", Scope.READ, 200, other="scan"),
    Route("ingest", "POST", "/webhooks", Scope.WEBHOOKS, 201, body={"url": "http://127.0.0.1:9/hook"}),
    Route("ingest", "GET", "/webhooks", Scope.WEBHOOKS, 200, other="param"),
    Route("ingest", "GET", "/webhooks/{endpoint_id}", Scope.WEBHOOKS, 200, other="endpoint"),
    Route("ingest", "DELETE", "/webhooks/{endpoint_id}", Scope.WEBHOOKS, 204, other="endpoint"),
    Route("ingest", "POST", "/webhooks/{endpoint_id}/rotate-secret", Scope.WEBHOOKS, 200, other="endpoint"),
    Route("ingest", "GET", "/webhooks/{endpoint_id}/deliveries", Scope.WEBHOOKS, 200, other="endpoint"),
    Route(
        "ingest", "POST", "/webhooks/{endpoint_id}/deliveries/{event_id}/retry", Scope.WEBHOOKS, 200, other="endpoint"
    ),
    # The tenant's callback endpoint (callback_url on submissions): another tenant's is named with ?tenant=.
    Route("ingest", "GET", "/webhooks/callbacks", Scope.WEBHOOKS, 200, other="param"),
    Route("ingest", "DELETE", "/webhooks/callbacks", Scope.WEBHOOKS, 204, other="param"),
    Route("ingest", "POST", "/webhooks/callbacks/rotate-secret", Scope.WEBHOOKS, 200, other="param"),
    Route("ingest", "GET", "/webhooks/callbacks/deliveries", Scope.WEBHOOKS, 200, other="param"),
    Route("ingest", "POST", "/webhooks/callbacks/deliveries/{event_id}/retry", Scope.WEBHOOKS, 200, other="param"),
]
CALLBACK_URL = "http://127.0.0.1:9/callback"
CREDENTIALS = ["none", "malformed", "unknown", "revoked", "expired", "wrong_scope", "other_tenant", "right"]
# What each refused credential answers: (status, error code).
REFUSED = {
    "none": (401, "unauthenticated"),
    "malformed": (401, "unauthenticated"),
    "unknown": (401, "unauthenticated"),
    "revoked": (401, "unauthenticated"),
    "expired": (401, "unauthenticated"),
    "wrong_scope": (403, "forbidden"),
}
CASES = [
    pytest.param(route, credential, id=f"{route.method} {route.service}{route.path}-{credential}")
    for route in ROUTES
    for credential in CREDENTIALS
    if not (credential == "other_tenant" and route.other is None)
]


@dataclass
class Deployment:
    """Two services on one store, the secrets of every kind of token, and a scan of the tenant."""

    database_url: str
    urls: dict[str, str]
    secrets: dict[str, str]
    token_ids: dict[str, str]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _store_tokens(database_url: str) -> tuple[dict[str, str], dict[str, str]]:
    """Every token the matrix uses, stored (revoked and expired ones included); secrets and ids by role."""
    now = datetime.now(UTC)
    everything = frozenset({Scope.SUBMIT, Scope.READ, Scope.CANCEL, Scope.WEBHOOKS})
    made: dict[str, tuple[str, ApiToken]] = {
        "right": new_token(tenant=TENANT, scopes=everything, name="full"),
        "read_only": new_token(tenant=TENANT, scopes=frozenset({Scope.READ}), name="reader"),
        "submit_only": new_token(tenant=TENANT, scopes=frozenset({Scope.SUBMIT}), name="submitter"),
        "other_tenant": new_token(tenant=OTHER, scopes=everything),
        "revoked": new_token(tenant=TENANT, scopes=frozenset(Scope), name="revoked"),
        "expired": new_token(
            tenant=TENANT, scopes=frozenset(Scope), name="expired", expires_in=timedelta(hours=1), now=now
        ),
    }
    secret, expired = made["expired"]
    made["expired"] = (secret, dataclasses.replace(expired, expires_at=now - timedelta(minutes=1)))
    async with open_store(database_url) as store:
        for _, token in made.values():
            await store.create_token(token=token)
        await store.revoke_token(token_id=made["revoked"][1].token_id)
    secrets = {role: secret for role, (secret, _) in made.items()}
    secrets["unknown"] = new_token(tenant=TENANT, scopes=frozenset(Scope))[0]  # well formed, never stored
    return secrets, {role: token.token_id for role, (_, token) in made.items()}


async def _snapshot(database_url: str) -> tuple[list[Scan], dict[str, Any], list[WebhookEndpoint], list[Any]]:
    """Every scan of every tenant, whole, the counts, every webhook endpoint and delivery: what a refused
    request must leave as it was."""
    async with open_store(database_url) as store:
        page = await store.list_scans(limit=1000)
        stats = await store.stats()
        per_tenant = {t: (await store.stats(tenant=t)).counts for t in (TENANT, OTHER)}
        endpoints = await store.list_endpoints()
        deliveries = [await store.list_deliveries(endpoint_id=e.endpoint_id, limit=1000) for e in endpoints]
    return page.scans, {"all": stats.counts, **per_tenant}, endpoints, deliveries


async def _forget_endpoints(database_url: str) -> None:
    async with open_store(database_url) as store:
        for endpoint in await store.list_endpoints():
            await store.delete_endpoint(endpoint_id=endpoint.endpoint_id)


async def _delivery_of(database_url: str, endpoint_id: str) -> str:
    """Fan the events out now (as a worker's dispatcher would), again until the endpoint has a delivery; its
    event id. An event is dispatched only once every transaction before it ended, and on PostgreSQL another
    process's may still be open (such as a token's last-used write): asserting after one pass was flaky."""
    async with open_store(database_url) as store:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            while True:
                assert await store.lead(role=WEBHOOK_ROLE, owner="auth-matrix", term_s=30)
                while await store.dispatch_events(owner="auth-matrix"):
                    pass
                deliveries = await store.list_deliveries(endpoint_id=endpoint_id, limit=1)
                if deliveries:
                    return deliveries[0].event.event_id
                await asyncio.sleep(0.05)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def deployment(
    request: pytest.FixtureRequest, spawn_for_module: Spawn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp_path_factory.mktemp('auth') / 'scanq.db'}"
        cleanup = None
    else:
        server = request.getfixturevalue("postgres_server")
        schema, database_url = server.create_schema()
        cleanup = schema
    secrets, token_ids = run(_store_tokens(database_url))
    ports = {"ingest": free_port(), "status": free_port()}
    env = {
        "SCANQ_DATABASE_URL": database_url,
        "SCANQ_AUTH": "tokens",
        "SCANQ_WEBHOOK_ALLOWLIST": "127.0.0.0/8",
        "SCANQ_INGEST_PORT": str(ports["ingest"]),
        "SCANQ_STATUS_PORT": str(ports["status"]),
    }
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    for name in ("ingest", "status"):
        wait_http_ready(f"{urls[name]}/readyz", process=spawn_for_module(name, env=env))
    try:
        yield Deployment(database_url=database_url, urls=urls, secrets=secrets, token_ids=token_ids)
    finally:
        if cleanup is not None:
            request.getfixturevalue("postgres_server").drop_schema(cleanup)


def headers_for(deployment: Deployment, credential: str, route: Route) -> dict[str, str]:
    if credential == "none":
        return {}
    if credential == "malformed":
        return {"Authorization": "Bearer not-a-scanq-token"}
    if credential == "wrong_scope":
        role = "read_only" if route.scope is not Scope.READ else "submit_only"
        return {"Authorization": f"Bearer {deployment.secrets[role]}"}
    return {"Authorization": f"Bearer {deployment.secrets[credential]}"}


def submit_as(deployment: Deployment, role: str) -> dict[str, Any]:
    """A new scan of the role's tenant, submitted over HTTP (so it records who submitted it)."""
    response = httpx.post(
        f"{deployment.urls['ingest']}/scans",
        json={},
        headers={"Authorization": f"Bearer {deployment.secrets[role]}"},
        timeout=REQUEST_TIMEOUT_S,
    )
    assert response.status_code == 202, response.text
    scan: dict[str, Any] = response.json()
    return scan


def register_as(deployment: Deployment, role: str) -> str:
    """A new endpoint of the role's tenant, subscribed to ``scan.accepted`` (a submission makes a delivery)."""
    response = httpx.post(
        f"{deployment.urls['ingest']}/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "event_types": ["scan.accepted"]},
        headers={"Authorization": f"Bearer {deployment.secrets[role]}"},
        timeout=REQUEST_TIMEOUT_S,
    )
    assert response.status_code == 201, response.text
    endpoint_id: str = response.json()["endpoint_id"]
    return endpoint_id


def callback_delivery_as(deployment: Deployment, role: str) -> str:
    """The role's tenant's callback endpoint (made over HTTP) and one delivery to it: a scan submitted with a
    callback_url and cancelled (its end), fanned out; that delivery's event id."""
    auth = {"Authorization": f"Bearer {deployment.secrets[role]}"}
    ingest = deployment.urls["ingest"]
    shown = httpx.get(f"{ingest}/webhooks/callbacks", headers=auth, timeout=REQUEST_TIMEOUT_S)
    assert shown.status_code == 200, shown.text
    created = httpx.post(
        f"{ingest}/scans", json={"callback_url": CALLBACK_URL}, headers=auth, timeout=REQUEST_TIMEOUT_S
    )
    assert created.status_code == 202, created.text
    cancelled = httpx.post(
        f"{ingest}/scans/{created.json()['scan_id']}/cancel", headers=auth, timeout=REQUEST_TIMEOUT_S
    )
    assert cancelled.status_code == 200, cancelled.text
    event_id: str = run(_delivery_of(deployment.database_url, callback_endpoint_id(TENANT)))
    return event_id


def send(deployment: Deployment, route: Route, path: str, *, params: Any, headers: dict[str, str]) -> httpx.Response:
    """The request; an event stream is read up to its headers only."""
    with httpx.stream(
        route.method,
        deployment.urls[route.service] + path,
        json=route.body,
        params=params,
        headers={"Accept": "application/json", **headers},
        timeout=REQUEST_TIMEOUT_S,
    ) as response:
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()
    return response


@pytest.mark.parametrize(("route", "credential"), CASES)
def test_route_answers_each_credential_and_a_refusal_writes_nothing(
    deployment: Deployment, route: Route, credential: str
) -> None:
    run(_forget_endpoints(deployment.database_url))  # a tenant may hold only so many
    endpoint_id = register_as(deployment, "right")
    scan = submit_as(deployment, "right")
    path = route.path.replace("{id}", scan["scan_id"]).replace("{endpoint_id}", endpoint_id)
    if path.startswith("/webhooks/callbacks"):
        path = path.replace("{event_id}", callback_delivery_as(deployment, "right"))
    if "{event_id}" in path:
        path = path.replace("{event_id}", run(_delivery_of(deployment.database_url, endpoint_id)))
    params = {"tenant": TENANT} if credential == "other_tenant" and route.other == "param" else None
    before = run(_snapshot(deployment.database_url))

    response = send(deployment, route, path, params=params, headers=headers_for(deployment, credential, route))

    if credential == "right":
        assert response.status_code == route.ok, response.text
        return
    if credential == "other_tenant":
        if route.other == "scan":
            # Exactly what an unknown id answers: nothing tells the other tenant the scan exists.
            assert response.status_code == 404, response.text
            assert response.json() == {"status": "Not Found", "scan_id": scan["scan_id"]}
        elif route.other == "endpoint":
            # Another tenant's endpoint is answered as an unknown one.
            assert (response.status_code, response.json()["error"]["code"]) == (404, "endpoint_not_found")
        else:
            assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
    else:
        status_code, code = REFUSED[credential]
        assert (response.status_code, response.json()["error"]["code"]) == (status_code, code), response.text
        if status_code == 401:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert run(_snapshot(deployment.database_url)) == before


def test_the_right_token_sees_its_own_scans_with_who_submitted_and_cancelled_them(deployment: Deployment) -> None:
    own = submit_as(deployment, "right")
    theirs = submit_as(deployment, "other_tenant")
    auth = {"Authorization": f"Bearer {deployment.secrets['right']}"}
    status, ingest = deployment.urls["status"], deployment.urls["ingest"]

    cancelled = httpx.post(f"{ingest}/scans/{own['scan_id']}/cancel", headers=auth, timeout=REQUEST_TIMEOUT_S).json()
    listed = httpx.get(f"{status}/scans?limit=1000", headers=auth, timeout=REQUEST_TIMEOUT_S).json()["scans"]
    read = httpx.get(f"{status}/scans/{own['scan_id']}", headers=auth, timeout=REQUEST_TIMEOUT_S).json()

    right_id = deployment.token_ids["right"]
    assert own["tenant"] == TENANT and theirs["tenant"] == OTHER
    assert own["submitted_by"] == {"token_id": right_id, "token_name": "full"}
    assert cancelled["cancelled_by"] == {"token_id": right_id, "token_name": "full"}
    assert read["cancelled_by"] == cancelled["cancelled_by"] and read["status"] == "Cancelled"
    assert {scan["tenant"] for scan in listed} == {TENANT}
    assert theirs["scan_id"] not in {scan["scan_id"] for scan in listed}
    assert "secret" not in str(read) and deployment.secrets["right"] not in str(read)


def test_health_metrics_and_the_openapi_document_need_no_token(deployment: Deployment) -> None:
    for service in ("ingest", "status"):
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            response = httpx.get(deployment.urls[service] + path, timeout=REQUEST_TIMEOUT_S)
            assert response.status_code == 200, (service, path, response.text)
    document = httpx.get(deployment.urls["ingest"] + "/openapi.json", timeout=REQUEST_TIMEOUT_S).json()
    submit = document["paths"]["/scans"]["post"]
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert submit["security"] == [{"bearerAuth": []}]
    assert {"401", "403", "429"} <= set(submit["responses"])


def test_the_matrix_covers_every_route_of_both_services(deployment: Deployment) -> None:
    """A route added later without a row here fails this test."""
    documented = set()
    for service in ("ingest", "status"):
        document = httpx.get(deployment.urls[service] + "/openapi.json", timeout=REQUEST_TIMEOUT_S).json()
        for path, methods in document["paths"].items():
            for method, operation in methods.items():
                if "security" in operation:
                    documented.add((service, method.upper(), path.replace("{scan_id}", "{id}")))
    assert documented == {(route.service, route.method, route.path) for route in ROUTES}
