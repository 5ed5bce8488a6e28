"""The reads by id past routing (``GET /scans/{scan_id}``, ``GET /{scan_id}``) answer exactly what the full
stack answers.

A request with an ``Origin`` header takes the full stack, one without takes the hot path: the same read
both ways must give the same status, headers and bytes, and that answer must be the expected one. A
counting wrapper on the lane's handler shows which way each request went.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from scanq.api import create_api_app, create_status_app
from scanq.api.hotpath import HotApp, ReadHandler
from scanq.auth import new_token
from scanq.config import Settings
from scanq.models import Scope
from scanq.scanners import ScannerRegistry
from tests.integration.apps import Services, app_over, services

ORIGIN = {"Origin": "http://127.0.0.1:10551"}
UNKNOWN_ID = "0190a6c2-5b1e-7c3a-9d2e-3f4a5b6c7d8e"
TEMPLATES = ("/scans/{}", "/{}")


class Counted:
    """Wrap every read lane of ``app`` so a test can tell whether the hot path served a request."""

    def __init__(self, app: Starlette) -> None:
        assert isinstance(app, HotApp) and app.hot is not None
        self.calls = 0
        for lane in app.hot.reads:
            lane.read = self._counting(lane.read)

    def _counting(self, read: ReadHandler | None) -> ReadHandler:
        assert read is not None

        async def counted(scan_id: str, authorization: bytes | None) -> Any:
            self.calls += 1
            return await read(scan_id, authorization)

        return counted


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Services, Counted]]:
    async with services(f"sqlite:///{tmp_path / 'scanq.db'}") as s:
        transport = s.status._transport
        assert isinstance(transport, httpx.ASGITransport)
        yield s, Counted(transport.app)  # type: ignore[arg-type]


async def submit(api: Services, headers: dict[str, str] | None = None) -> str:
    answer = await api.ingest.post("/scans", json={"scanner": "noop", "priority": 2}, headers=headers or {})
    assert answer.status_code == 202, answer.text
    scan_id: str = answer.json()["scan_id"]
    return scan_id


async def both_ways(
    client: httpx.AsyncClient, path: str, counted: Counted, headers: dict[str, str] | None = None
) -> httpx.Response:
    """The answer without ``Origin`` (hot) and with it (full stack), checked to be the same bytes."""
    before = counted.calls
    hot = await client.get(path, headers=headers or {})
    assert counted.calls == before + 1, "the hot path did not serve the read"
    full = await client.get(path, headers={**(headers or {}), **ORIGIN})
    assert counted.calls == before + 1, "the full stack did not serve the read"
    assert hot.status_code == full.status_code, (hot.text, full.text)
    # CORS's headers (the api app's, for an Origin) aside.
    cors = {name for name in full.headers if name.startswith("access-control-") or name == "vary"}
    assert hot.headers.multi_items() == [(k, v) for k, v in full.headers.multi_items() if k not in cors]
    assert hot.content == full.content
    return hot


@pytest.mark.parametrize("template", TEMPLATES)
async def test_a_scan_is_the_same_bytes_both_ways(api: tuple[Services, Counted], template: str) -> None:
    services_, counted = api
    scan_id = await submit(services_)
    answer = await both_ways(services_.status, template.format(scan_id), counted)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["scan_id"] == scan_id and answer.json()["priority"] == 2
    assert answer.content == (await services_.status.get(f"/scans/{scan_id}", headers=ORIGIN)).content


@pytest.mark.parametrize("template", TEMPLATES)
async def test_an_unknown_scan_is_the_same_not_found_both_ways(api: tuple[Services, Counted], template: str) -> None:
    services_, counted = api
    answer = await both_ways(services_.status, template.format(UNKNOWN_ID), counted)
    assert answer.status_code == 404
    assert answer.json() == {"scan_id": UNKNOWN_ID, "status": "Not Found"}


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"},
        {"Content-Type": "text/plain"},
        {"Content-Length": "abc"},
    ],
)
async def test_cross_site_rules_answer_the_same_on_a_read(
    api: tuple[Services, Counted], headers: dict[str, str]
) -> None:
    services_, counted = api
    scan_id = await submit(services_)
    hot = await services_.status.get(f"/scans/{scan_id}", headers=headers)
    routed = await services_.status.get("/stats", headers=headers)  # a routed read the same rules judge
    if hot.status_code == 200:
        assert routed.status_code == 200
        assert counted.calls == 1
        return
    assert counted.calls == 0  # refused before the handler
    assert (hot.status_code, hot.content) == (routed.status_code, routed.content)
    assert hot.headers.multi_items() == routed.headers.multi_items()


@pytest.mark.parametrize(
    "path",
    [
        "/scans/not-a-scan-id",
        f"/scans/{UNKNOWN_ID.upper()}",
        f"/scans/{UNKNOWN_ID}x",
        f"/scans/{UNKNOWN_ID}/",
        "/not-a-scan-id",
        f"/x{UNKNOWN_ID}",
        "/healthz",
        "/stats",
        "/scans",
    ],
)
async def test_other_paths_still_route(api: tuple[Services, Counted], path: str) -> None:
    services_, counted = api
    answer = await services_.status.get(path)
    assert counted.calls == 0
    assert answer.status_code in (200, 307, 404), answer.text


async def test_a_scans_events_path_and_head_are_not_taken(api: tuple[Services, Counted]) -> None:
    services_, counted = api
    scan_id = await submit(services_)
    transport = services_.status._transport
    assert isinstance(transport, httpx.ASGITransport)
    app = transport.app
    assert isinstance(app, HotApp) and app.hot is not None
    assert app.hot.read_lane(f"/scans/{scan_id}/events") is None
    head = await services_.status.head(f"/scans/{scan_id}")
    assert head.status_code == 200 and counted.calls == 0


async def test_reads_are_counted_under_their_route(api: tuple[Services, Counted]) -> None:
    services_, _ = api
    scan_id = await submit(services_)
    for path in (f"/scans/{scan_id}", f"/scans/{scan_id}", f"/{scan_id}", f"/{UNKNOWN_ID}"):
        await services_.status.get(path)
    metrics = (await services_.status.get("/metrics")).text

    def count(route: str, code: int) -> float:
        for line in metrics.splitlines():
            if (
                line.startswith("scanq_http_request_duration_seconds_count")
                and f'route="{route}"' in line
                and f'code="{code}"' in line
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    assert count("/scans/{scan_id}", 200) == 2.0
    assert count("/{scan_id}", 200) == 1.0
    assert count("/{scan_id}", 404) == 1.0


@pytest.fixture
async def with_tokens(tmp_path: Path) -> AsyncIterator[tuple[Services, Counted, dict[str, str]]]:
    async with services(f"sqlite:///{tmp_path / 'scanq.db'}", auth="tokens") as s:
        secrets = {}
        for name, tenant, scopes in (
            ("submitter", "acme", {Scope.SUBMIT}),
            ("reader", "acme", {Scope.READ}),
            ("other", "globex", {Scope.READ}),
            ("admin", "ops", {Scope.ADMIN}),
        ):
            secret, token = new_token(tenant=tenant, scopes=frozenset(scopes), name=name)
            await s.store.create_token(token=token)
            secrets[name] = secret
        transport = s.status._transport
        assert isinstance(transport, httpx.ASGITransport)
        yield s, Counted(transport.app), secrets  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("Bearer nope", 401),
        ("Basic eDp5", 401),
        ("submitter", 403),
        ("reader", 200),
        ("other", 404),  # another tenant's scan is an unknown id
        ("admin", 200),
    ],
)
async def test_tokens_and_tenants_are_checked_the_same_on_a_read(
    with_tokens: tuple[Services, Counted, dict[str, str]], authorization: str | None, status: int
) -> None:
    services_, counted, secrets = with_tokens
    scan_id = await submit(services_, {"Authorization": f"Bearer {secrets['submitter']}"})
    headers = {}
    if authorization is not None:
        headers["Authorization"] = f"Bearer {secrets[authorization]}" if authorization in secrets else authorization
    answer = await both_ways(services_.status, f"/scans/{scan_id}", counted, headers)
    assert answer.status_code == status, answer.text
    if status == 200:
        assert answer.json()["tenant"] == "acme"


async def test_the_api_app_serves_reads_by_id_on_the_hot_path_too(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'scanq.db'}")
    async with (
        services(settings.database_url) as s,
        app_over(s.store, create_api_app, settings, scanners=ScannerRegistry(settings)) as app,
    ):
        counted = Counted(app)
        scan_id = await submit(s)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:10551"
        ) as client:
            for template in TEMPLATES:
                answer = await both_ways(client, template.format(scan_id), counted)
                assert answer.json()["scan_id"] == scan_id
        # The status app and the api app answer a read with the same bytes.
        status_read = await s.status.get(f"/scans/{scan_id}")
        assert status_read.content == answer.content


def test_only_the_status_and_api_apps_have_read_lanes(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'scanq.db'}")
    status = create_status_app(settings)
    assert isinstance(status, HotApp) and status.hot is not None
    assert sorted(lane.template for lane in status.hot.reads) == ["/scans/{scan_id}", "/{scan_id}"]
    assert status.hot.lanes == {}
