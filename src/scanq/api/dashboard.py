"""The live dashboard the status service serves: one HTML page, plain scripts and a stylesheet, no build step.

The page follows the status service it came from through ``GET /events``
(server-sent events, read with ``fetch`` so it can send the bearer token and
``Last-Event-ID``), refetching ``GET /stats`` and a bounded page of
``GET /scans`` when events arrive; it falls back to polling them when the
stream is unavailable. It sends its
writes (submit, cancel) to the ingest service at ``settings.ingest_url``.
That is a cross-origin call, so the ingest app allows CORS from the status
service's origin only (``cors_middleware``): a page from any other site
cannot make a visitor's browser queue scans.

When the status service requires API tokens (``Settings.auth_required``) the
page says so in a ``scanq-auth`` meta tag and asks for a token before its
first call; on any 401 it asks again. The token stays in the tab's
``sessionStorage`` and travels only in ``Authorization: Bearer`` headers,
to status and to ingest (which is why CORS allows that header).

The assets live in ``scanq/api/static`` inside the package, so an installed
wheel serves them too. The page lists its scripts (deferred, so they run in
that order): ``dashboard-common.js`` (shared helpers), ``dashboard-stream.js``
(the ``GET /events`` reader and the live/polling indicator),
``dashboard-detail.js`` (one scan's detail), ``dashboard-chart.js`` (the
throughput chart), then ``dashboard.js``, which holds the page's state and
wires the rest. Every file in the directory is served under ``/static``; the
Content Security Policy allows scripts from this origin only.
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import urlsplit

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from scanq.api.openapi import Operation, Reply
from scanq.config import Settings

STATIC_DIR = Path(__file__).with_name("static")
STATIC_PATH = "/static"
DASHBOARD_PATH = "/dashboard"
HTML_MEDIA = "text/html; charset=utf-8"
TAG = "dashboard"
INGEST_URL_PLACEHOLDER = "__SCANQ_INGEST_URL__"
AUTH_PLACEHOLDER = "__SCANQ_AUTH__"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# Browsers cache the preflight answer this long (seconds), so a busy dashboard does not double its requests.
CORS_MAX_AGE_S = 600


class Dashboard:
    """Renders the page once (the ingest URL and whether tokens are required filled in) and serves it.

    Args:
        settings: ``ingest_url`` is where the page sends submit and cancel; ``auth_required`` says whether
            the page asks for a token before its first call (``tokens``) or only after a 401 (``off``).
    """

    def __init__(self, settings: Settings) -> None:
        ingest_url = settings.ingest_url.rstrip("/")
        auth = "tokens" if settings.auth_required else "off"
        template = (STATIC_DIR / "dashboard.html").read_text(encoding="utf-8")
        page = template.replace(INGEST_URL_PLACEHOLDER, html.escape(ingest_url, quote=True))
        self.body = page.replace(AUTH_PLACEHOLDER, auth).encode()
        self.headers = {
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": (
                "default-src 'self'; "
                f"connect-src 'self' {_origin(ingest_url)}; "
                "img-src 'self' data:; "
                "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
            ),
        }

    def response(self) -> Response:
        """The page as an HTML response."""
        return Response(self.body, media_type=HTML_MEDIA, headers=self.headers)

    async def endpoint(self, request: Request) -> Response:
        """``GET /dashboard``: the page whatever the ``Accept`` header."""
        return self.response()

    def operation(self) -> Operation:
        """``GET /dashboard`` as a documented operation of the service."""
        return Operation(
            method="GET",
            path=DASHBOARD_PATH,
            endpoint=self.endpoint,
            operation_id="dashboard",
            summary="The live dashboard (a browser asking GET / gets it too)",
            tag=TAG,
            replies={200: Reply(description="The dashboard page", schema={"type": "string"}, media_type=HTML_MEDIA)},
        )


def static_mount() -> Mount:
    """The dashboard's scripts and stylesheet under ``/static`` (ETag and Last-Modified come with StaticFiles)."""
    return Mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="static")


def dashboard_origins(settings: Settings) -> list[str]:
    """The origins the dashboard is served from: ``status_url``'s, and its loopback aliases on the same port."""
    origin = _origin(settings.status_url)
    parts = urlsplit(settings.status_url)
    origins = [origin]
    host = parts.hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        port = f":{parts.port}" if parts.port else ""
        origins.extend(f"{parts.scheme}://{alias}{port}" for alias in LOOPBACK_HOSTS)
    return list(dict.fromkeys(origins))


def cors_middleware(settings: Settings) -> Middleware:
    """CORS for the ingest app: the dashboard's origins may POST scans and cancels, nothing else is allowed.

    ``Authorization`` is allowed so the page can send its API token; no cookie or other credential is
    involved, so ``allow_credentials`` stays off.

    Starlette's ``CORSMiddleware`` is plain ASGI; a request without an
    ``Origin`` header (every API client) passes straight through it.
    """
    return Middleware(
        CORSMiddleware,
        allow_origins=dashboard_origins(settings),
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        expose_headers=["Location"],
        max_age=CORS_MAX_AGE_S,
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


__all__ = [
    "DASHBOARD_PATH",
    "STATIC_DIR",
    "STATIC_PATH",
    "Dashboard",
    "cors_middleware",
    "dashboard_origins",
    "static_mount",
]
