"""A real ``scanq ingest`` process answers an identical replay with awkward numbers 200, on every database.

PostgreSQL's jsonb rewrote ``1.5e308`` and ``-0.0`` in options, so the replay of an
identical request with the same ``Idempotency-Key`` was a 409 there (200 on SQLite).
"""

from __future__ import annotations

import httpx
import pytest

from tests.acceptance.conftest import Spawn, free_port, wait_http_ready

pytestmark = pytest.mark.slow

BODY = b'{"scanner": "noop", "options": {"huge": 1.5e308, "neg_zero": -0.0, "z": [2.5, -0.0], "a": 1.0}}'
OPTIONS_TEXT = b'{"huge":1.5e308,"neg_zero":-0.0,"z":[2.5,-0.0],"a":1.0}'
HEADERS = {"Content-Type": "application/json", "Idempotency-Key": "numbers-over-http"}


@pytest.mark.parametrize("database_url", ["sqlite", "postgres", "mongo"], indirect=True)
def test_an_identical_replay_answers_200_with_the_options_as_sent(database_url: str, spawn: Spawn) -> None:
    port = free_port()
    ingest = spawn("ingest", env={"SCANQ_DATABASE_URL": database_url, "SCANQ_INGEST_PORT": str(port)})
    url = f"http://127.0.0.1:{port}"
    wait_http_ready(f"{url}/healthz", process=ingest)

    with httpx.Client(base_url=url, timeout=10.0) as client:
        first = client.post("/scans", content=BODY, headers=HEADERS)
        again = client.post("/scans", content=BODY, headers=HEADERS)

    assert first.status_code == 202, first.text
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["scan_id"] == first.json()["scan_id"]
    for response in (first, again):
        assert OPTIONS_TEXT in response.content
