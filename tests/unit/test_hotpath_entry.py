"""The hot entry (``api/hotpath.py``) against the Starlette code it stands in for.

``HotEntry`` sends a raw answer as ``Response.__call__`` does, answers a bug as ``ServerErrorMiddleware``
does and sets ``scope["app"]`` as ``Starlette.__call__`` does: each test below runs the same request
through Starlette itself and through the hot entry and compares the ASGI messages, so a Starlette release
that changes any of them fails here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from bench.ingest_inprocess import http_scope as asgi_scope
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive

from scanq.api.crosssite import CrossSiteGuard, CrossSiteRules
from scanq.api.errors import EXCEPTION_HANDLERS
from scanq.api.hotpath import HotApp, HotEntry, RawHandler
from scanq.api.ingest import ScanAnswer
from scanq.api.metrics import HttpMetrics
from scanq.config import Settings
from scanq.exceptions import QuotaExceeded
from tests.prometheus import sample_value

BODY = b'{"scan_id": "x"}'
HEADERS = [(b"host", b"127.0.0.1:10550"), (b"content-type", b"application/json"), (b"content-length", b"2")]


def http_scope(headers: list[tuple[bytes, bytes]] = HEADERS, *, path: str = "/scans") -> dict[str, Any]:
    return asgi_scope(headers, path=path)


async def run(app: Callable[..., Awaitable[None]], scope: dict[str, Any]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def apps(
    raw: RawHandler, endpoint: Callable[[Request], Awaitable[Response]]
) -> tuple[Starlette, HotApp, CollectorRegistry]:
    """The same route on plain Starlette (through the guard) and on a HotApp serving it raw."""
    settings = Settings()
    rules = CrossSiteRules(settings)
    routes = [Route("/scans", endpoint, methods=["POST"])]
    plain = Starlette(
        routes=routes, middleware=[Middleware(CrossSiteGuard, rules=rules)], exception_handlers=EXCEPTION_HANDLERS
    )
    registry = CollectorRegistry()
    hot = HotApp(routes=routes, exception_handlers=EXCEPTION_HANDLERS)
    hot.hot = HotEntry(rules=rules, metrics=HttpMetrics(registry), handlers=EXCEPTION_HANDLERS)
    hot.hot.add(routes, raw={("POST", "/scans"): raw})
    return plain, hot, registry


async def test_a_raw_answer_is_the_messages_response_sends() -> None:
    """``Response.__call__`` sends the start (status, raw headers) and the body, nothing more."""
    answer = ScanAnswer(BODY, location="/scans/x", is_new=True)

    async def raw(receive: Receive, *headers: bytes | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return answer.status_code, answer.raw_headers, BODY

    async def endpoint(request: Request) -> Response:
        return ScanAnswer(BODY, location="/scans/x", is_new=True)

    plain, hot, registry = apps(raw, endpoint)
    assert await run(hot, http_scope()) == await run(plain, http_scope())
    metrics = (await run_metrics(registry)).decode()
    labels = {"method": "POST", "route": "/scans", "code": "202"}
    assert sample_value(metrics, "scanq_http_request_duration_seconds_count", labels) == 1


async def run_metrics(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


async def test_a_mapped_error_is_the_handlers_answer() -> None:
    async def raw(receive: Receive, *headers: bytes | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        raise QuotaExceeded("tenant default: 3 scans a second", retry_after_s=1.5)

    async def endpoint(request: Request) -> Response:
        raise QuotaExceeded("tenant default: 3 scans a second", retry_after_s=1.5)

    plain, hot, _ = apps(raw, endpoint)
    sent = await run(hot, http_scope())
    assert sent == await run(plain, http_scope())
    assert sent[0]["status"] == 429


async def test_a_bug_is_answered_500_and_raised_as_starlette_does() -> None:
    """``ServerErrorMiddleware``: the ``Exception`` handler's 500 if nothing was sent, then the error again."""

    async def raw(receive: Receive, *headers: bytes | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        raise RuntimeError("a bug")

    async def endpoint(request: Request) -> Response:
        raise RuntimeError("a bug")

    plain, hot, registry = apps(raw, endpoint)
    answers = []
    for app in (plain, hot):
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message, sent: list[Message] = sent) -> None:
            sent.append(message)

        with pytest.raises(RuntimeError, match="a bug"):
            await app(http_scope(), receive, send)
        answers.append(sent)
    assert answers[0] == answers[1]
    assert answers[1][0]["status"] == 500
    metrics = (await run_metrics(registry)).decode()
    labels = {"method": "POST", "route": "/scans", "code": "500"}
    assert sample_value(metrics, "scanq_http_request_duration_seconds_count", labels) == 1


@pytest.mark.parametrize(
    "headers",
    [
        [(b"host", b"evil.example"), (b"content-type", b"application/json")],
        [(b"host", b"127.0.0.1"), (b"sec-fetch-site", b"cross-site"), (b"content-type", b"application/json")],
        [(b"host", b"127.0.0.1"), (b"content-type", b"text/plain")],
        [(b"host", b"127.0.0.1"), (b"content-length", b"5")],
        [(b"host", b"127.0.0.1"), (b"transfer-encoding", b"chunked")],
        [(b"host", b"127.0.0.1"), (b"sec-fetch-mode", b"cors")],
    ],
)
async def test_a_cross_site_refusal_is_the_guards_and_counted_unmatched(headers: list[tuple[bytes, bytes]]) -> None:
    async def raw(receive: Receive, *headers: bytes | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        raise AssertionError("refused before the handler")

    async def endpoint(request: Request) -> Response:
        raise AssertionError("refused before the handler")

    plain, hot, registry = apps(raw, endpoint)
    sent = await run(hot, http_scope(headers))
    assert sent == await run(plain, http_scope(headers))
    assert sent[0]["status"] in (400, 403, 415)
    metrics = (await run_metrics(registry)).decode()
    labels = {"method": "POST", "route": "unmatched", "code": str(sent[0]["status"])}
    assert sample_value(metrics, "scanq_http_request_duration_seconds_count", labels) == 1


async def test_an_origin_takes_the_full_stack_and_other_requests_the_router() -> None:
    """A request with ``Origin`` is left to Starlette (nothing read or sent), which sets ``scope["app"]``."""
    seen: list[object] = []

    async def raw(receive: Receive, *headers: bytes | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        raise AssertionError("not the hot path")

    async def endpoint(request: Request) -> Response:
        seen.append(request.scope["app"])
        return Response(b"routed", status_code=201)

    _, hot, registry = apps(raw, endpoint)
    with_origin = [*HEADERS, (b"origin", b"http://127.0.0.1:10551")]
    assert (await run(hot, http_scope(with_origin)))[0]["status"] == 201
    assert seen == [hot]
    assert (await run(hot, http_scope(path="/elsewhere")))[0]["status"] == 404
    assert "scanq_http_request_duration_seconds_count" not in (await run_metrics(registry)).decode()
