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
