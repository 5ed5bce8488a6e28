"""The hot path (POST /scans, POST /scans/batch past routing) answers exactly what the full stack answers.

A request with an ``Origin`` header takes the full stack (CORS), one without takes the hot path:
the same request both ways must give the same status, headers and error body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.apps import Services, services

ORIGIN = {"Origin": "http://127.0.0.1:10551"}  # the dashboard's: allowed to submit
JSON = {"Content-Type": "application/json"}

# (path, body, extra headers): valid and invalid submissions of every kind the handlers refuse.
REQUESTS = [
    ("/scans", b'{"scanner": "noop"}', JSON),
    ("/scans", b"", JSON),  # a browser's empty body must declare JSON too
    ("/scans", b"{not json", JSON),
    ("/scans", b'{"priority": "high"}', JSON),
    ("/scans", b'{"scanner": "no-such-plugin"}', JSON),
    ("/scans", b'{"scanner": "noop"}', {"Content-Type": "text/plain"}),
    ("/scans", b'{"scanner": "noop"}', {**JSON, "Idempotency-Key": ""}),
    ("/scans", b'{"scanner": "noop", "target": "' + b"x" * 5000 + b'"}', JSON),
    ("/scans/batch", b'{"scans": [{"scanner": "noop"}, {"scanner": "noop"}]}', JSON),
    ("/scans/batch", b'{"scans": []}', JSON),
    ("/scans/batch", b"", JSON),
    ("/scans/batch", b'{"scans": [{"scanner": "noop"}]}', {**JSON, "Idempotency-Key": "k"}),
]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Services]:
    async with services(f"sqlite:///{tmp_path / 'scanq.db'}", max_body_bytes=4096) as s:
        yield s


@pytest.mark.parametrize(("path", "body", "headers"), REQUESTS)
async def test_hot_path_answers_as_the_full_stack(
    api: Services, path: str, body: bytes, headers: dict[str, str]
) -> None:
    hot = await api.ingest.post(path, content=body, headers=headers)
    full = await api.ingest.post(path, content=body, headers={**headers, **ORIGIN})
    assert hot.status_code == full.status_code
    assert hot.headers.get("content-type") == full.headers.get("content-type")
    assert ("location" in hot.headers) == ("location" in full.headers)
    if hot.status_code >= 400:
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
    assert (await api.ingest.post("/scans/")).status_code in (307, 404, 405)
    assert (await api.ingest.get("/healthz")).status_code == 200
