"""The status service in-process over every store: one scan, pages, filters, stats, health, OpenAPI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route

from scanq.api import create_api_app, create_ingest_app, create_status_app
from scanq.api.dashboard import STATIC_PATH
from scanq.config import Settings
from scanq.models import Finish, Lease, Outcome
from scanq.scanners import ScannerRegistry
from scanq.scanners.noop import NoopScanner
from scanq.store.postgres import PostgresStore
from tests.integration.apps import Services, services
from tests.servers.postgres import PostgresCluster

UNKNOWN_ID = "01900000-0000-7000-8000-000000000000"  # a well-formed UUIDv7 no test stores
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Services]:
    async with services(database_url) as s:
        yield s


async def queue(api: Services, count: int) -> list[str]:
    """Queue ``count`` scans in one batch; their ids, oldest first."""
    response = await api.ingest.post("/scans/batch", json={"scans": [{"target": f"t{i}"} for i in range(count)]})
    assert response.status_code == 202
    return [s["scan_id"] for s in response.json()["scans"]]


def parse_time(value: str) -> datetime:
    assert value.endswith("Z"), value  # RFC 3339 in UTC
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == UTC.utcoffset(None)
    return parsed


async def test_a_scan_by_both_paths_with_its_history(api: Services) -> None:
    [scan_id] = await queue(api, 1)
    [claimed] = await api.store.claim(worker_id="w-7", limit=1, lease_s=30)
    lease = Lease(scan_id=scan_id, worker_id="w-7", attempt=claimed.attempt)
    assert await api.store.finish(finishes=[Finish(lease=lease, outcome=Outcome.ERROR, error="boom")]) == [True]

    short = await api.status.get(f"/{scan_id}")
    long = await api.status.get(f"/scans/{scan_id}")

    assert short.status_code == long.status_code == 200
    assert short.json() == long.json()
    scan = short.json()
    assert scan["scan_id"] == scan_id
    assert scan["status"] == "Error"
    assert scan["error"] == "boom"
    assert scan["attempt"] == 1
    for name in ("created_at", "updated_at", "available_at", "started_at", "finished_at"):
        parse_time(scan[name])
    [attempt] = scan["history"]
    assert attempt["attempt"] == 1
    assert attempt["worker"] == "w-7"
    assert attempt["outcome"] == "Error"
    assert attempt["error"] == "boom"
    assert parse_time(attempt["started_at"]) <= parse_time(attempt["finished_at"])
    expected_fields = {
        "scan_id", "status", "target", "scanner", "options", "priority", "attempt", "max_attempts",
        "created_at", "updated_at", "available_at", "started_at", "finished_at", "lease_owner",
        "lease_expires_at", "error", "result", "idempotency_key", "cancel_requested", "history",
        "tenant", "submitted_by", "cancelled_by", "callback_url",
    }  # fmt: skip
    assert set(scan) == expected_fields
    # Without authentication every scan is the default tenant's, submitted by no token.
    assert (scan["tenant"], scan["submitted_by"], scan["cancelled_by"]) == ("default", None, None)


@pytest.mark.parametrize("scan_id", [UNKNOWN_ID, "nope", "01900000-0000-7000-8000-00000000000Z"])
async def test_an_unknown_or_malformed_id_answers_the_not_found_body(api: Services, scan_id: str) -> None:
    for path in (f"/{scan_id}", f"/scans/{scan_id}"):
        response = await api.status.get(path)
        assert response.status_code == 404
        assert response.json() == {"scan_id": scan_id, "status": "Not Found"}


async def test_pages_walk_every_scan_newest_first_without_repeats(api: Services) -> None:
    ids = await queue(api, 7)
    seen: list[str] = []
    cursor: str | None = None
    sizes: list[int] = []
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        response = await api.status.get("/scans", params=params)
        assert response.status_code == 200
        page = response.json()
        sizes.append(len(page["scans"]))
        seen.extend(s["scan_id"] for s in page["scans"])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert sizes == [3, 3, 1]
    assert seen == list(reversed(ids))


async def test_following_a_filtered_cursor_keeps_the_filter(api: Services) -> None:
    ids = await queue(api, 4)
    for scan_id in ids[:2]:
        assert (await api.ingest.post(f"/scans/{scan_id}/cancel")).status_code == 200

    first = (await api.status.get("/scans", params={"status": "Cancelled", "limit": "1"})).json()
    followed = await api.status.get("/scans", params={"cursor": first["next_cursor"]})
    other = await api.status.get("/scans", params={"status": "Accepted", "cursor": first["next_cursor"]})

    assert [s["scan_id"] for s in first["scans"] + followed.json()["scans"]] == [ids[1], ids[0]]
    assert other.status_code == 422
    assert "continues the list of status=Cancelled" in other.json()["error"]["message"]


@pytest.mark.parametrize("name", ["status", "limit", "cursor"])
async def test_an_empty_list_parameter_is_refused_not_ignored(api: Services, name: str) -> None:
    response = await api.status.get(f"/scans?{name}=")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


async def test_root_lists_like_scans(api: Services) -> None:
    await queue(api, 3)

    root = await api.status.get("/", params={"limit": "2"})
    scans = await api.status.get("/scans", params={"limit": "2"})

    assert root.status_code == 200
    assert root.json() == scans.json()
    assert len(root.json()["scans"]) == 2


async def test_the_default_page_size(api: Services) -> None:
    await queue(api, 55)

    page = (await api.status.get("/scans")).json()

    assert len(page["scans"]) == 50
    assert page["next_cursor"] is not None


async def test_an_empty_store_lists_nothing(api: Services) -> None:
    response = await api.status.get("/scans")

    assert response.json() == {"scans": [], "next_cursor": None}


async def test_filter_by_status(api: Services) -> None:
    ids = await queue(api, 4)
    for scan_id in ids[:2]:
        assert (await api.ingest.post(f"/scans/{scan_id}/cancel")).status_code == 200

    cancelled = (await api.status.get("/scans", params={"status": "Cancelled"})).json()
    accepted = (await api.status.get("/", params={"status": "Accepted"})).json()

    assert [s["scan_id"] for s in cancelled["scans"]] == list(reversed(ids[:2]))
    assert [s["scan_id"] for s in accepted["scans"]] == list(reversed(ids[2:]))


async def test_stats_count_every_status(api: Services) -> None:
    empty = (await api.status.get("/stats")).json()
    ids = await queue(api, 3)
    await api.ingest.post(f"/scans/{ids[0]}/cancel")
    await api.store.claim(worker_id="w-1", limit=1, lease_s=30)

    stats = (await api.status.get("/stats")).json()

    zero = {"Accepted": 0, "Running": 0, "Complete": 0, "Error": 0, "Cancelled": 0}
    assert empty == {"counts": zero, "total": 0, "oldest_accepted_age_s": None, "tenants": []}
    assert stats["counts"] == {**zero, "Accepted": 1, "Running": 1, "Cancelled": 1}
    assert stats["total"] == 3
    assert 0 <= stats["oldest_accepted_age_s"] < 60
    # Without authentication the caller sees every tenant's queue: here only the default tenant's.
    (queue_of_default,) = stats["tenants"]
    assert {k: v for k, v in queue_of_default.items() if k != "oldest_accepted_age_s"} == {
        "tenant": "default",
        "accepted": 1,
        "running": 1,
    }
    assert 0 <= queue_of_default["oldest_accepted_age_s"] < 60


async def test_a_browser_gets_the_dashboard_and_an_api_client_json(api: Services) -> None:
    await queue(api, 1)

    browser = await api.status.get("/", headers={"Accept": BROWSER_ACCEPT})
    client = await api.status.get("/")

    assert browser.headers["content-type"] == "text/html; charset=utf-8"
    assert "scanq dashboard" in browser.text
    assert client.headers["content-type"] == "application/json"
    assert len(client.json()["scans"]) == 1


async def test_the_dashboard_hook_answers_browsers_only(database_url: str) -> None:
    async def dashboard(request: Request) -> Response:
        return HTMLResponse("<h1>scans</h1>")

    async with services(database_url, dashboard=dashboard) as api:
        browser = await api.status.get("/", headers={"Accept": BROWSER_ACCEPT})
        client = await api.status.get("/")

    assert browser.text == "<h1>scans</h1>"
    assert client.json() == {"scans": [], "next_cursor": None}


async def test_health_and_readiness(api: Services) -> None:
    assert (await api.status.get("/healthz")).json() == {"status": "ok"}
    assert (await api.status.get("/readyz")).json() == {"status": "ready"}


async def test_the_lifespan_opens_and_closes_the_store_it_owns(database_url: str) -> None:
    app = create_status_app(Settings(database_url=database_url))

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost:10551") as client,
    ):
        ready = await client.get("/readyz")
        listed = await client.get("/scans")

    assert ready.status_code == 200
    assert listed.json() == {"scans": [], "next_cursor": None}


@pytest.mark.slow
async def test_a_store_outage_answers_503_and_health_stays_up(pg_cluster: PostgresCluster) -> None:
    settings = Settings(database_url=pg_cluster.url)
    async with PostgresStore(pg_cluster.url) as store:
        app = create_status_app(settings, store=store)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost:10551"
        ) as client:
            assert (await client.get("/readyz")).status_code == 200
            await asyncio.to_thread(pg_cluster.stop)

            ready = await client.get("/readyz")
            stats = await client.get("/stats")
            health = await client.get("/healthz")

    assert ready.status_code == stats.status_code == 503
    assert ready.json()["error"]["code"] == "store_unavailable"  # a stopped server is unavailable, not an error
    assert ready.json()["error"]["message"]
    assert health.status_code == 200


# --- OpenAPI ------------------------------------------------------------------------------


def app_operations(app: Starlette) -> set[tuple[str, str]]:
    """Every (method, path) the app routes, HEAD aside (the dashboard's static files are not operations)."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, Mount) and route.path == STATIC_PATH:
            continue
        assert isinstance(route, Route)
        found.update((m.lower(), route.path) for m in route.methods or () if m != "HEAD")
    return found


def refs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in refs_in(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs_in(v)]
    return []


@pytest.mark.parametrize("factory", [create_ingest_app, create_status_app, create_api_app])
async def test_openapi_documents_every_route(factory: Any) -> None:
    app: Starlette = factory(Settings(database_url="memory://openapi"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost:10550") as client:
        response = await client.get("/openapi.json")

    doc = response.json()
    validate(doc)  # a valid OpenAPI 3.1 document
    assert doc["openapi"].startswith("3.1")
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == app_operations(app)
    schemas = doc["components"]["schemas"]
    for ref in refs_in(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    operation_ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (method, path)
            if "requestBody" in op:
                assert {"400", "413", "415", "422"} <= set(op["responses"]), (method, path)


async def test_openapi_describes_the_bodies_from_the_msgspec_types() -> None:
    app = create_api_app(Settings(database_url="memory://openapi"))
    doc = app.state.openapi
    schemas = doc["components"]["schemas"]

    request = schemas["ScanRequest"]
    assert request["additionalProperties"] is False
    assert set(request["properties"]) == {"target", "scanner", "options", "priority", "max_attempts", "callback_url"}
    submit = doc["paths"]["/scans"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ScanRequest"
    }
    assert "Location" in submit["responses"]["202"]["headers"]
    assert set(schemas["StatusCounts"]["properties"]) == {"Accepted", "Running", "Complete", "Error", "Cancelled"}
    assert schemas["ErrorResponse"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorDetail"}


@pytest.mark.parametrize("factory", [create_ingest_app, create_api_app])
async def test_openapi_names_the_installed_scanners_and_the_state_changes_refused(factory: Any) -> None:
    settings = Settings(database_url="memory://openapi")
    registry = ScannerRegistry(settings, extra={"extra-plugin": NoopScanner})
    doc = factory(settings, scanners=registry).state.openapi

    scanner = doc["components"]["schemas"]["ScanRequest"]["properties"]["scanner"]
    [named] = [branch for branch in scanner["anyOf"] if branch.get("type") == "string"]
    assert named["enum"] == registry.names
    assert {"mock", "noop", "extra-plugin"} <= set(named["enum"])
    for path, method in [
        ("/scans", "post"),
        ("/scans/batch", "post"),
        ("/scans/{scan_id}/cancel", "post"),
        ("/", "get"),
    ]:
        assert "403" in doc["paths"][path][method]["responses"], (method, path)
    assert "415" in doc["paths"]["/scans/{scan_id}/cancel"]["post"]["responses"]


async def test_openapi_gives_the_cursor_a_format() -> None:
    doc = create_status_app(Settings(database_url="memory://openapi")).state.openapi
    [cursor] = [p for p in doc["paths"]["/scans"]["get"]["parameters"] if p["name"] == "cursor"]

    assert cursor["schema"] == {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": 256}
