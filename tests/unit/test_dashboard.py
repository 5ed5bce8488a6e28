"""The dashboard page, its assets and the ingest CORS policy (in-process, no store needed)."""

from __future__ import annotations

import re

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scanq.api.dashboard import STATIC_DIR, Dashboard, cors_middleware, dashboard_origins, static_mount
from scanq.config import Settings

ORIGIN = "http://127.0.0.1:10551"


def test_origins_are_the_status_url_and_its_loopback_aliases() -> None:
    assert dashboard_origins(Settings()) == [
        "http://127.0.0.1:10551",
        "http://localhost:10551",
        "http://[::1]:10551",
    ]
    assert dashboard_origins(Settings(status_url="https://scans.example.com/")) == ["https://scans.example.com"]


def test_page_carries_the_escaped_ingest_url_and_a_strict_content_security_policy() -> None:
    dashboard = Dashboard(Settings(ingest_url='http://ingest.example:8080/"><script>'))
    page = dashboard.body.decode()
    assert 'content="http://ingest.example:8080/&quot;&gt;&lt;script&gt;"' in page
    assert "<script>" not in re.sub(r'<script src="/static/[a-z-]+\.js" defer></script>', "", page)
    policy = dashboard.response().headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "connect-src 'self' http://ingest.example:8080" in policy
    assert "unsafe-inline" not in policy


def test_assets_are_packaged_and_served() -> None:
    assert {p.name for p in STATIC_DIR.iterdir()} >= {"dashboard.html", "dashboard.js", "dashboard.css"}


def page_scripts() -> list[str]:
    """The scripts the page loads, in the order it lists them."""
    page = Dashboard(Settings()).body.decode()
    return re.findall(r'<script src="/static/([^"]+)" defer></script>', page)


def test_the_page_loads_every_script_once_and_dashboard_js_last() -> None:
    """Deferred scripts run in document order: the parts first, then dashboard.js, which wires them."""
    scripts = page_scripts()
    assert sorted(scripts) == sorted(p.name for p in STATIC_DIR.glob("*.js"))
    assert len(set(scripts)) == len(scripts)
    assert scripts[0] == "dashboard-common.js" and scripts[-1] == "dashboard.js"


async def test_dashboard_routes_serve_the_page_and_the_assets() -> None:
    dashboard = Dashboard(Settings())
    app = Starlette(routes=[Route("/dashboard", dashboard.endpoint), static_mount()])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
        page = await client.get("/dashboard")
        scripts = [await client.get(f"/static/{name}") for name in page_scripts()]
        style = await client.get("/static/dashboard.css")
        missing = await client.get("/static/nope.js")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    assert len(scripts) > 1
    for script in scripts:
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert missing.status_code == 404


def ingest_like_app(settings: Settings) -> Starlette:
    async def submit(request: Request) -> Response:
        return JSONResponse({"scan_id": "x"}, status_code=202, headers={"Location": "/scans/x"})

    return Starlette(routes=[Route("/scans", submit, methods=["POST"])], middleware=[cors_middleware(settings)])


async def test_ingest_cors_allows_the_dashboard_origin_only() -> None:
    app = ingest_like_app(Settings())
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
        allowed = await client.options("/scans", headers={"Origin": ORIGIN, **preflight})
        refused = await client.options("/scans", headers={"Origin": "https://evil.example", **preflight})
        posted = await client.post("/scans", headers={"Origin": ORIGIN})
        foreign = await client.post("/scans", headers={"Origin": "https://evil.example"})
        plain = await client.post("/scans")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert posted.headers["access-control-allow-origin"] == ORIGIN
    assert posted.headers["access-control-expose-headers"].lower() == "location"
    assert "access-control-allow-origin" not in foreign.headers
    assert plain.status_code == 202 and "access-control-allow-origin" not in plain.headers
