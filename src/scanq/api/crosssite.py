"""Cross-site protection: the rules a browser's request must pass before any handler runs.

A page on another site can make a visitor's browser send requests to scanq
(forms, images, ``fetch`` in ``no-cors`` mode) and, through DNS rebinding, even
read the answers. ``CrossSiteGuard`` is a plain ASGI middleware on every app
that refuses, from the headers alone:

- a ``Host`` that is not an allowed name (400 ``host_not_allowed``): by default
  the loopback names when the service listens on loopback, plus the hosts of
  ``ingest_url`` and ``status_url``; ``allowed_hosts`` replaces the default.
- a state-changing request (any method but GET, HEAD and OPTIONS, and ``GET /``
  on ingest, which queues a scan) that a browser marks as coming from another
  site (403 ``cross_site_refused``): an ``Origin`` that is neither the service's
  own, the dashboard's, nor one in ``allowed_origins``; or, without ``Origin``,
  ``Sec-Fetch-Site: cross-site`` or ``same-site``.
- a POST whose body is not declared JSON (415 ``unsupported_media_type``): a
  body needs ``Content-Type: application/json`` (or ``application/*+json``);
  an empty body may come without a type only from a client that is not a
  browser (no ``Origin``, no ``Sec-Fetch-*``), as ``curl -X POST`` sends it.

Clients that are not browsers (curl, scripts, the CLI) send none of these
headers, so ``GET /`` keeps the original contract for them. The rules and
their settings are in docs/security.md.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from scanq.api.dashboard import dashboard_origins
from scanq.api.errors import error_response
from scanq.api.http import is_json_media_type
from scanq.config import Settings, is_loopback

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values a browser sends for a request started by another site's page.
FOREIGN_SITES = frozenset({b"cross-site", b"same-site"})
ANY_HOST = "*"
JSON_CONTENT_TYPE = b"application/json"
HOST_VERDICTS_KEPT = 256


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """The host names a request's ``Host`` may carry (lower case, no port); None: any.

    ``settings.allowed_hosts`` when given (``*`` allows any), else the loopback
    names when the service listens on loopback, else any; the hosts of
    ``ingest_url`` and ``status_url`` are always allowed.
    """
    configured = {name.lower().strip("[]") for name in settings.allowed_hosts}
    if ANY_HOST in configured:
        return None
    if not configured:
        if not is_loopback(settings.host):
            return None
        configured = set(LOOPBACK_NAMES)
    for url in (settings.ingest_url, settings.status_url):
        hostname = urlsplit(url).hostname
        if hostname:
            configured.add(hostname.lower())
    return frozenset(configured)


def allowed_origins(settings: Settings) -> frozenset[str]:
    """The browser origins that may change state: the dashboard's and ``settings.allowed_origins``."""
    return frozenset(origin.rstrip("/").lower() for origin in (*dashboard_origins(settings), *settings.allowed_origins))


def host_name(host: str) -> str:
    """``Host`` without its port, lower case: ``[::1]:10550`` → ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


Refusal = tuple[int, str, str]
"""A refused request: status, error code, message."""


class CrossSiteRules:
    """The checks themselves, made once per app from its settings; ``CrossSiteGuard`` and the ingest hot
    path (``hotpath.py``, which reads the headers in its own pass) both ask ``refusal``.

    Args:
        settings: ``host``, ``allowed_hosts``, ``allowed_origins``, ``ingest_url`` and ``status_url``.
        unsafe_get_paths: paths whose GET changes state (``/`` on ingest queues a scan).
    """

    def __init__(self, settings: Settings, *, unsafe_get_paths: Collection[str] = ()) -> None:
        self._hosts = allowed_hosts(settings)
        self._origins = allowed_origins(settings)
        self._unsafe_get_paths = frozenset(unsafe_get_paths)
        self._host_verdicts: dict[bytes, bool] = {}

    def check(self, scope: Scope) -> Refusal | None:
        """Read the request's headers (the last of a repeated one counts) and judge them."""
        host = origin = fetch_site = content_type = content_length = None
        is_chunked = has_fetch_metadata = False
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
            elif name == b"origin":
                origin = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                is_chunked = True
            elif name.startswith(b"sec-fetch-"):
                has_fetch_metadata = True
                if name == b"sec-fetch-site":
                    fetch_site = value
        return self.refusal(
            scope["method"],
            scope["path"],
            scope["scheme"],
            host,
            origin,
            fetch_site,
            content_type,
            content_length,
            is_chunked,
            has_fetch_metadata,
        )

    def refusal(
        self,
        method: str,
        path: str,
        scheme: str,
        host: bytes | None,
        origin: bytes | None,
        fetch_site: bytes | None,
        content_type: bytes | None,
        content_length: bytes | None,
        is_chunked: bool,
        has_fetch_metadata: bool,
    ) -> Refusal | None:
        """Why a request with these headers is refused (see the module docstring), or None."""
        if self._hosts is not None and host is not None and not self._is_allowed_host(host):
            name = host_name(host.decode("latin-1"))
            return 400, "host_not_allowed", f"host {name!r} is not served here (see allowed_hosts)"
        if method in SAFE_METHODS and not (method == "GET" and path in self._unsafe_get_paths):
            return None
        if origin is not None:
            if not self._is_allowed_origin(origin.decode("latin-1"), scheme=scheme, host=host):
                return (
                    403,
                    "cross_site_refused",
                    f"requests from origin {origin.decode('latin-1')!r} may not change anything here "
                    "(see allowed_origins)",
                )
        elif fetch_site in FOREIGN_SITES:
            return 403, "cross_site_refused", "requests started by another site may not change anything here"
        if method != "POST":
            return None
        if content_type is not None:
            if content_type != JSON_CONTENT_TYPE and not is_json_media_type(content_type.decode("latin-1")):
                return (
                    415,
                    "unsupported_media_type",
                    f"send the body as Content-Type: application/json (got {content_type.decode('latin-1')!r})",
                )
            return None
        has_body = is_chunked or (content_length is not None and content_length.strip() not in (b"", b"0"))
        if has_body or origin is not None or has_fetch_metadata:
            return 415, "unsupported_media_type", "send the body as Content-Type: application/json"
        return None

    def _is_allowed_host(self, host: bytes) -> bool:
        # Clients send the same few Host values again and again: remember the verdicts (a bounded number).
        verdict = self._host_verdicts.get(host)
        if verdict is None:
            assert self._hosts is not None
            verdict = host_name(host.decode("latin-1")) in self._hosts
            if len(self._host_verdicts) < HOST_VERDICTS_KEPT:
                self._host_verdicts[host] = verdict
        return verdict

    def _is_allowed_origin(self, origin: str, *, scheme: str, host: bytes | None) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self._origins:
            return True
        # The service's own pages (the dashboard on `scanq api`) are same-origin.
        return host is not None and origin == f"{scheme}://{host.decode('latin-1').lower()}"


class CrossSiteGuard:
    """Refuse disallowed hosts, cross-site state changes and non-JSON POST bodies (see the module docstring).

    Args:
        app: the rest of the stack.
        rules: the checks (``CrossSiteRules``), shared with the hot path.
    """

    def __init__(self, app: ASGIApp, *, rules: CrossSiteRules) -> None:
        self.app = app
        self._rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._rules.check(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status_code, code, message = refusal
        await error_response(status_code, code, message)(scope, receive, send)


__all__ = [
    "CrossSiteGuard",
    "CrossSiteRules",
    "Refusal",
    "allowed_hosts",
    "allowed_origins",
    "host_name",
    "is_loopback",
]
