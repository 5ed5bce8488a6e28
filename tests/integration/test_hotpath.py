"""The hot path (POST /scans, POST /scans/batch past routing) answers exactly what the full stack answers.

A request with an ``Origin`` header takes the full stack (CORS), one without takes the hot path:
the same request both ways must give the same status, headers and error body, and that answer must
be the expected one (a bug shared by both paths would otherwise pass).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from scanq.auth import new_token
from scanq.models import Scope
from tests.integration.apps import Services, services

ORIGIN = {"Origin": "http://127.0.0.1:10551"}  # the dashboard's: allowed to submit
JSON = {"Content-Type": "application/json"}

# (path, body, extra headers, expected status, expected error code or, for a 202, the scanners stored):
# valid and invalid submissions of every kind the handlers refuse.
REQUESTS = [
    ("/scans", b'{"scanner": "noop"}', JSON, 202, ["noop"]),
    # No body: a scan with every default, as the original ingest took it (a browser's must declare JSON too).
    ("/scans", b"", JSON, 202, ["mock"]),
    ("/scans", b"{not json", JSON, 400, "malformed_json"),
    ("/scans", b'{"priority": "high"}', JSON, 422, "invalid_request"),
    ("/scans", b'{"scanner": "no-such-plugin"}', JSON, 422, "unknown_scanner"),
    ("/scans", b'{"scanner": "noop"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    ("/scans", b'{"scanner": "noop"}', {**JSON, "Idempotency-Key": ""}, 422, "invalid_request"),
    ("/scans", b'{"scanner": "noop", "target": "' + b"x" * 5000 + b'"}', JSON, 413, "body_too_large"),
    ("/scans", b"{}", {**JSON, "Content-Length": "abc"}, 400, "bad_request"),
    ("/scans", b'{"scanner": "noop"}', {**JSON, "Content-Length": "9999"}, 413, "body_too_large"),
    ("/scans", b'{"scanner": "noop", "options": {"a": "\\u0000"}}', JSON, 422, "invalid_request"),
    ("/scans", b'{"scanner": "noop", "surprise": 1}', JSON, 422, "invalid_request"),
    ("/scans/batch", b'{"scans": [{"scanner": "noop"}, {"scanner": "noop"}]}', JSON, 202, ["noop", "noop"]),
    ("/scans/batch", b'{"scans": []}', JSON, 422, "invalid_request"),
    ("/scans/batch", b"", JSON, 422, "invalid_request"),
    ("/scans/batch", b'{"scans": [{"scanner": "noop"}]}', {**JSON, "Idempotency-Key": "k"}, 422, "invalid_request"),
]


def assert_expected(answer: httpx.Response, path: str, status: int, expected: str | list[str]) -> None:
    """The one right answer: the status, and the error code or the scans stored."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    if isinstance(expected, str):
        assert body["error"]["code"] == expected
        assert body["error"]["message"]
        assert "location" not in answer.headers
        return
    scans = body["scans"] if path == "/scans/batch" else [body]
    assert [(scan["status"], scan["scanner"], scan["attempt"]) for scan in scans] == [
        ("Accepted", scanner, 0) for scanner in expected
    ]
    if path == "/scans":
        assert answer.headers["location"].endswith(f"/scans/{body['scan_id']}")
    else:
        assert "location" not in answer.headers


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Services]:
    async with services(f"sqlite:///{tmp_path / 'scanq.db'}", max_body_bytes=4096) as s:
        yield s


@pytest.mark.parametrize(("path", "body", "headers", "status", "expected"), REQUESTS)
async def test_hot_path_answers_as_the_full_stack(
    api: Services, path: str, body: bytes, headers: dict[str, str], status: int, expected: str | list[str]
) -> None:
    hot = await api.ingest.post(path, content=body, headers=headers)
    full = await api.ingest.post(path, content=body, headers={**headers, **ORIGIN})

    assert_expected(hot, path, status, expected)
    assert_expected(full, path, status, expected)
    if status >= 400:
        assert hot.content == full.content
    else:
        assert set(hot.json()) == set(full.json())
    # CORS headers only where an Origin was sent.
    assert "access-control-allow-origin" not in hot.headers


async def test_hot_path_requests_are_counted_under_their_route(api: Services) -> None:
    for _ in range(3):
        assert (await api.ingest.post("/scans", json={"scanner": "noop"})).status_code == 202
    metrics = (await api.ingest.get("/metrics")).text
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("scanq_http_request_duration_seconds_count")
        and 'route="/scans"' in line
        and 'code="202"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) == 3.0


async def test_other_methods_and_paths_still_route(api: Services) -> None:
    assert (await api.ingest.get("/scans")).status_code == 405
    slash = await api.ingest.post("/scans/")
    # The router's redirect, to the same service.
    assert (slash.status_code, slash.headers["location"]) == (307, str(api.ingest.base_url.join("/scans")))
    assert (await api.ingest.get("/healthz")).status_code == 200


# Headers that differ between two answers for reasons other than the path taken.
VARYING = {"location", "content-length"}


def same_answer(hot: httpx.Response, full: httpx.Response) -> None:
    """The same status and headers (but CORS's, and the new scan's id and length), the same body but its times."""
    assert hot.status_code == full.status_code, (hot.text, full.text)
    cors = {name for name in full.headers if name.startswith("access-control-") or name == "vary"}
    assert [(k, v) for k, v in hot.headers.multi_items() if k not in VARYING] == [
        (k, v) for k, v in full.headers.multi_items() if k not in VARYING | cors
    ]
    assert "access-control-allow-origin" not in hot.headers
    if hot.status_code >= 300:
        assert hot.content == full.content
        return
    varying = {"scan_id", "created_at", "updated_at", "available_at"}
    assert {k: v for k, v in hot.json().items() if k not in varying} == {
        k: v for k, v in full.json().items() if k not in varying
    }
    assert list(hot.json()) == list(full.json())


@pytest.fixture
async def with_tokens(tmp_path: Path) -> AsyncIterator[tuple[Services, dict[str, str]]]:
    async with services(f"sqlite:///{tmp_path / 'scanq.db'}", auth="tokens") as s:
        submitter, submitter_token = new_token(tenant="acme", scopes=frozenset({Scope.SUBMIT}), name="ci")
        reader, reader_token = new_token(tenant="acme", scopes=frozenset({Scope.READ}))
        for token in (submitter_token, reader_token):
            await s.store.create_token(token=token)
        yield s, {"submitter": submitter, "reader": reader}


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 401), ("Bearer nope", 401), ("Basic eDp5", 401), ("submitter", 202), ("reader", 403)],
)
async def test_tokens_are_checked_the_same_on_the_hot_path(
    with_tokens: tuple[Services, dict[str, str]], authorization: str | None, status: int
) -> None:
    api, secrets = with_tokens
    headers = dict(JSON)
    if authorization is not None:
        headers["Authorization"] = f"Bearer {secrets[authorization]}" if authorization in secrets else authorization
    hot = await api.ingest.post("/scans", content=b'{"scanner": "noop"}', headers=headers)
    full = await api.ingest.post("/scans", content=b'{"scanner": "noop"}', headers={**headers, **ORIGIN})
    assert hot.status_code == status, hot.text
    same_answer(hot, full)
    if status == 202:
        assert hot.json()["tenant"] == "acme" and hot.json()["submitted_by"]["token_name"] == "ci"


async def test_idempotent_replays_and_conflicts_are_the_same_on_the_hot_path(api: Services) -> None:
    answers: dict[str, list[httpx.Response]] = {}
    for way, origin in (("hot", {}), ("full", ORIGIN)):
        headers = {**JSON, "Idempotency-Key": "key-1", **origin}
        sent = [
            await api.ingest.post("/scans", content=body, headers=headers)
            for body in (b'{"scanner": "noop", "priority": 3}', b'{"priority": 3, "scanner": "noop"}', b"{}")
        ]
        assert [answer.status_code for answer in sent] == [202 if way == "hot" else 200, 200, 409]
        answers[way] = sent
    hot, full = answers["hot"], answers["full"]
    # The full stack's first request replays the hot path's scan: every answer is about that one scan.
    assert hot[1].content == full[0].content == full[1].content == hot[1].content
    assert hot[1].headers["idempotent-replayed"] == "true"
    same_answer(hot[1], full[1])
    same_answer(hot[2], full[2])
    assert hot[1].headers["location"] == full[1].headers["location"] == hot[0].headers["location"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example", **JSON},
        {"Sec-Fetch-Site": "cross-site", **JSON},
        {"Sec-Fetch-Mode": "no-cors"},
        {"Content-Type": "text/plain;charset=UTF-8"},
        {"Transfer-Encoding": "chunked"},
        {"Content-Length": "abc", **JSON},
        {"Content-Length": "3", "content-length": "3", **JSON},
    ],
)
async def test_requests_refused_before_the_handler_get_the_routed_answer(
    api: Services, headers: dict[str, str]
) -> None:
    """The hot path's refusals against a routed POST that the same rules refuse (the guard's own answer)."""
    body = b"{}" if "Transfer-Encoding" not in headers else None
    hot = await api.ingest.post("/scans", content=body, headers=headers)
    routed = await api.ingest.post(f"/scans/{'0' * 8}-0000-7000-8000-{'0' * 12}/cancel", content=body, headers=headers)
    if routed.status_code == 404:  # not refused by the guard: the cancel handler answered
        assert hot.status_code in (400, 202), hot.text
        return
    assert hot.status_code == routed.status_code and hot.content == routed.content
    assert [(k, v) for k, v in hot.headers.multi_items()] == [(k, v) for k, v in routed.headers.multi_items()]
