"""Bad input on every store: each answers a clear 4xx with a message, and the store is left as it was."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from scanq.exceptions import TargetRefused, ValidationError
from scanq.scanners.base import Scanner
from scanq.scans import MAX_TARGET_LENGTH
from tests.integration.apps import Services, services, snapshot

MAX_BODY_BYTES = 1024
MAX_BATCH = 5
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TEXT = {"Content-Type": "text/plain"}


class PickyScanner(Scanner):
    """Needs a target and refuses ``forbidden.example``."""

    name = "picky"

    async def validate(self, *, target: str | None, options: Mapping[str, Any]) -> str | None:
        if target is None:
            raise ValidationError("the picky scanner needs a target")
        if target == "forbidden.example":
            raise TargetRefused(f"target {target!r} is not allowed")
        return target

    async def run(self, *, scan_id: str, target: str | None, options: Mapping[str, Any]) -> Mapping[str, Any]:
        return {}


@dataclass(frozen=True)
class Case:
    """One bad request and the answer it must get."""

    service: str  # "ingest" or "status"
    method: str
    path: str
    status: int
    code: str | None  # the error code; None for the scan 404 body
    message: str  # a fragment the message must contain
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)


def post_scans(body: bytes, status: int, code: str, message: str, **headers: str) -> Case:
    return Case("ingest", "POST", "/scans", status, code, message, body=body, headers={**JSON, **headers})


def post_batch(body: bytes, status: int, code: str, message: str, **headers: str) -> Case:
    return Case("ingest", "POST", "/scans/batch", status, code, message, body=body, headers={**JSON, **headers})


def list_scans(params: Mapping[str, str], message: str) -> Case:
    return Case("status", "GET", "/scans", 422, "invalid_request", message, params=params)


def batch_of(count: int) -> bytes:
    return ('{"scans": [' + ", ".join(['{"target": "t.example"}'] * count) + "]}").encode()


CASES: list[tuple[str, Case]] = [
    # malformed JSON and wrong shapes
    ("truncated-json", post_scans(b'{"target": ', 400, "malformed_json", "not valid JSON")),
    ("not-json", post_scans(b"{target: 1}", 400, "malformed_json", "not valid JSON")),
    ("array-body", post_scans(b"[]", 422, "invalid_request", "Expected `object`, got `array`")),
    ("priority-type", post_scans(b'{"priority": "high"}', 422, "invalid_request", "`$.priority`")),
    ("options-type", post_scans(b'{"options": [1]}', 422, "invalid_request", "`$.options`")),
    ("target-type", post_scans(b'{"target": 5}', 422, "invalid_request", "Expected `str | null`")),
    (
        "options-too-deep",
        post_scans(
            b'{"options": {"a": ' + b"[" * 20 + b"]" * 20 + b"}}",
            422,
            "invalid_request",
            "options nest deeper than 16 levels",
        ),
    ),
    # values some backend cannot store as sent: refused for all, before any store sees them
    ("target-nul", post_scans(b'{"target": "a\\u0000b"}', 422, "invalid_request", "target must not contain the NUL")),
    ("option-key-nul", post_scans(b'{"options": {"a\\u0000": 1}}', 422, "invalid_request", "NUL character")),
    ("option-value-nul", post_scans(b'{"options": {"a": ["\\u0000"]}}', 422, "invalid_request", "NUL character")),
    ("option-int-64", post_scans(b'{"options": {"n": 9223372036854775808}}', 422, "invalid_request", "64 bits")),
    ("unknown-field", post_scans(b'{"tagret": "a"}', 422, "invalid_request", "unknown field `tagret`")),
    # bounds
    ("priority-high", post_scans(b'{"priority": 1001}', 422, "invalid_request", "<= 1000")),
    ("priority-low", post_scans(b'{"priority": -1001}', 422, "invalid_request", ">= -1000")),
    ("attempts-zero", post_scans(b'{"max_attempts": 0}', 422, "invalid_request", ">= 1")),
    ("attempts-high", post_scans(b'{"max_attempts": 101}', 422, "invalid_request", "<= 100")),
    ("target-empty", post_scans(b'{"target": ""}', 422, "invalid_request", "length >= 1")),
    (
        "idempotency-key-too-long",
        post_scans(b"{}", 422, "invalid_request", "Idempotency-Key must be", **{"Idempotency-Key": "k" * 256}),
    ),
    # scanners and targets
    ("scanner", post_scans(b'{"scanner": "nope"}', 422, "unknown_scanner", "unknown scanner 'nope'")),
    ("scanner-empty", post_scans(b'{"scanner": ""}', 422, "invalid_request", "length >= 1")),
    ("plugin-needs-target", post_scans(b'{"scanner": "picky"}', 422, "invalid_request", "needs a target")),
    (
        "target-refused",
        post_scans(b'{"scanner": "picky", "target": "forbidden.example"}', 422, "target_refused", "not allowed"),
    ),
    # body size and content type
    ("body-too-large", post_scans(b" " * (MAX_BODY_BYTES + 1), 413, "body_too_large", "larger than")),
    ("form-content-type", post_scans(b"target=a", 415, "unsupported_media_type", "application/json", **FORM)),
    ("text-content-type", post_scans(b"{}", 415, "unsupported_media_type", "'text/plain'", **TEXT)),
    # batches
    ("batch-too-big", post_batch(batch_of(MAX_BATCH + 1), 422, "invalid_request", "at most 5")),
    ("batch-empty", post_batch(batch_of(0), 422, "invalid_request", "at least one")),
    ("batch-no-scans", post_batch(b"{}", 422, "invalid_request", "missing required field `scans`")),
    ("batch-no-body", post_batch(b"", 422, "invalid_request", '{"scans": [...]}')),
    (
        "batch-one-bad-scanner",
        post_batch(b'{"scans": [{}, {}, {"scanner": "nope"}]}', 422, "unknown_scanner", "scans[2]: unknown scanner"),
    ),
    (
        "batch-one-bad-type",
        post_batch(b'{"scans": [{}, {"priority": "x"}]}', 422, "invalid_request", "`$.scans[1].priority`"),
    ),
    (
        "batch-one-refused",
        post_batch(
            b'{"scans": [{"scanner": "picky", "target": "forbidden.example"}]}',
            422,
            "target_refused",
            "scans[0]: target",
        ),
    ),
    (
        "batch-idempotency-key",
        post_batch(batch_of(1), 422, "invalid_request", "not supported on /scans/batch", **{"Idempotency-Key": "k"}),
    ),
    ("batch-malformed", post_batch(b"[1", 400, "malformed_json", "not valid JSON")),
    # ids
    ("cancel-bad-id", Case("ingest", "POST", "/scans/not-a-uuid/cancel", 404, None, "not-a-uuid")),
    ("get-bad-id", Case("status", "GET", "/not-a-uuid", 404, None, "not-a-uuid")),
    ("get-bad-id-long-path", Case("status", "GET", "/scans/XYZ", 404, None, "XYZ")),
    # list parameters
    ("limit-zero", list_scans({"limit": "0"}, "between 1 and 1000")),
    ("limit-high", list_scans({"limit": "1001"}, "between 1 and 1000")),
    ("limit-text", list_scans({"limit": "ten"}, "must be an integer")),
    ("status-unknown", list_scans({"status": "Done"}, "unknown status 'Done'")),
    ("status-case", list_scans({"status": "accepted"}, "unknown status")),
    ("cursor-garbage", list_scans({"cursor": "!!!"}, "invalid cursor")),
    ("cursor-not-id", list_scans({"cursor": base64.urlsafe_b64encode(b"not-an-id").decode()}, "invalid cursor")),
    ("root-status", Case("status", "GET", "/", 422, "invalid_request", "unknown status", params={"status": "x"})),
    # routes and methods
    ("ingest-method", Case("ingest", "DELETE", "/scans", 405, "method_not_allowed", "DELETE")),
    ("ingest-route", Case("ingest", "POST", "/nope", 404, "not_found", "no route for POST /nope")),
    ("ingest-root-method", Case("ingest", "PUT", "/", 405, "method_not_allowed", "PUT")),
    ("status-method", Case("status", "POST", "/stats", 405, "method_not_allowed", "(allowed: GET, HEAD)")),
    ("status-route", Case("status", "GET", "/scans/a/b", 404, "not_found", "no route")),
]


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Services]:
    async with services(
        database_url, scanners={"picky": PickyScanner}, max_body_bytes=MAX_BODY_BYTES, max_batch=MAX_BATCH
    ) as s:
        # Something already stored, so "unchanged" means more than "still empty".
        for _ in range(2):
            assert (await s.ingest.get("/")).status_code == 200
        yield s


@pytest.mark.slow
async def test_bad_input_is_refused_and_writes_nothing(api: Services, subtests: pytest.Subtests) -> None:
    # One store per backend for the whole table (a database per case would cost minutes); each case is its own
    # subtest and checks that the store is exactly as it was before it.
    for name, case in CASES:
        with subtests.test(name):
            await check_refused(api, case)


async def check_refused(api: Services, case: Case) -> None:
    client = api.ingest if case.service == "ingest" else api.status
    before = await snapshot(api.store)

    response = await client.request(
        case.method, case.path, content=case.body, headers=dict(case.headers), params=dict(case.params)
    )

    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    if case.code is None:
        assert body == {"scan_id": case.message, "status": "Not Found"}
    else:
        assert set(body) == {"error"}
        assert body["error"]["code"] == case.code
        assert case.message in body["error"]["message"]
    assert await snapshot(api.store) == before


async def test_a_streamed_body_past_the_limit_is_refused_without_a_content_length(api: Services) -> None:
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        # Far more than the limit: the server must stop reading, not buffer it all.
        for _ in range(1000):
            sent.append(1)
            yield b" " * 512

    before = await snapshot(api.store)

    response = await api.ingest.post("/scans", content=chunks(), headers=JSON)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert len(sent) < 10
    assert await snapshot(api.store) == before


async def test_a_declared_content_length_past_the_limit_is_refused_before_reading(api: Services) -> None:
    before = await snapshot(api.store)

    response = await api.ingest.post(
        "/scans", content=b"{}", headers={**JSON, "Content-Length": str(MAX_BODY_BYTES + 1)}
    )

    assert response.status_code == 413
    assert await snapshot(api.store) == before


async def test_an_overlong_target_is_refused(database_url: str) -> None:
    async with services(database_url) as api:
        before = await snapshot(api.store)

        response = await api.ingest.post("/scans", json={"target": "a" * (MAX_TARGET_LENGTH + 1)})

        assert response.status_code == 422
        assert f"length <= {MAX_TARGET_LENGTH}" in response.json()["error"]["message"]
        assert await snapshot(api.store) == before


async def test_json_nested_past_the_decoder_recursion_limit_is_refused(database_url: str) -> None:
    depth = 100_000  # 200 kB: within the default body limit, far past Python's recursion limit
    body = b'{"options": {"a": ' + b"[" * depth + b"]" * depth + b"}}"
    async with services(database_url) as api:
        before = await snapshot(api.store)

        response = await api.ingest.post("/scans", content=body, headers=JSON)

        assert response.status_code == 422
        assert "nested too deeply" in response.json()["error"]["message"]
        assert await snapshot(api.store) == before


async def test_a_replayed_key_with_another_request_writes_nothing(api: Services) -> None:
    first = await api.ingest.post("/scans", json={"target": "a"}, headers={"Idempotency-Key": "k1"})
    before = await snapshot(api.store)

    response = await api.ingest.post("/scans", json={"target": "a", "priority": 1}, headers={"Idempotency-Key": "k1"})

    assert first.status_code == 202
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_conflict"
    assert await snapshot(api.store) == before
