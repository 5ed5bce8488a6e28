"""``scanq webhooks …`` and ``scanq submit --wait`` on the Python client, against answers written out here.

The client's transport is an ``httpx.MockTransport`` (as in ``test_cli.py``): each test says what the
services answer and checks what the command asked and printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from scanq import client
from scanq.cli import cli
from scanq.sdk import AsyncClient

SCAN_A = "0190a6c2-5b1e-7c3a-9d2e-3f4a5b6c7d8e"
SCAN_B = "0190a6c2-5b1e-7c3a-9d2e-3f4a5b6c7d8f"
ENDPOINT = "wh_0123456789abcdef01234567"
AT = "2026-01-01T00:00:00Z"
URLS = ["--ingest-url", "http://ingest.test", "--status-url", "http://status.test"]


def scan(scan_id: str, status: str, **fields: Any) -> dict[str, Any]:
    return {
        "scan_id": scan_id,
        "status": status,
        "scanner": "mock",
        "max_attempts": 3,
        "created_at": AT,
        "updated_at": AT,
        "available_at": AT,
        **fields,
    }


def endpoint(**fields: Any) -> dict[str, Any]:
    return {
        "endpoint_id": ENDPOINT,
        "tenant": "default",
        "url": "https://hooks.example/scanq",
        "event_types": ["scan.completed", "scan.failed"],
        "description": "ticketing",
        "created_at": AT,
        "updated_at": AT,
        "previous_secret_until": None,
        **fields,
    }


def sse(*events: tuple[str, str, str]) -> httpx.Response:
    body = "retry: 2000\n\n"
    for event_id, scan_id, status in events:
        kind = {"Accepted": "scan.accepted", "Running": "scan.started", "Complete": "scan.completed"}[status]
        data = {"event_id": event_id, "type": kind, "scan_id": scan_id, "status": status, "at": AT}
        body += f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=body)


class Services:
    """Answers by (method, path); records every request."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answers: dict[tuple[str, str], Any]) -> None:
        self.requests: list[httpx.Request] = []
        self.answers = answers
        transport = httpx.MockTransport(self.handle)
        monkeypatch.setattr(
            client,
            "_client",
            lambda settings: AsyncClient(settings.ingest_url, settings.status_url, retries=0, transport=transport),
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[(request.method, request.url.path)]
        if callable(answer):
            answer = answer(request)
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if (r.method, r.url.path) == (method, path)]


def run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_webhooks_add_prints_the_endpoint_and_its_secret_last(monkeypatch: pytest.MonkeyPatch) -> None:
    created = endpoint(secret="whsec_c2VjcmV0")
    services = Services(monkeypatch, {("POST", "/webhooks"): httpx.Response(201, json=created)})

    code, out, err = run(
        [
            "webhooks",
            "add",
            "https://hooks.example/scanq",
            "--event",
            "scan.completed",
            "--event",
            "scan.failed",
            "--description",
            "ticketing",
            *URLS,
        ]
    )

    assert code == 0, out + err
    (request,) = services.requests
    assert str(request.url) == "http://ingest.test/webhooks"
    assert json.loads(request.content) == {
        "url": "https://hooks.example/scanq",
        "event_types": ["scan.completed", "scan.failed"],
        "description": "ticketing",
    }
    assert out.splitlines()[-1] == "whsec_c2VjcmV0"
    assert ENDPOINT in out and "scan.completed,scan.failed" in out
    assert "shown once" in err


def test_webhooks_list_show_delete_rotate(monkeypatch: pytest.MonkeyPatch) -> None:
    path = f"/webhooks/{ENDPOINT}"
    services = Services(
        monkeypatch,
        {
            ("GET", "/webhooks"): {"webhooks": [endpoint()]},
            ("GET", path): endpoint(),
            ("DELETE", path): httpx.Response(204),
            ("POST", f"{path}/rotate-secret"): endpoint(secret="whsec_bmV3", previous_secret_until=AT),
        },
    )

    listed = run(["webhooks", "list", "--tenant", "acme", *URLS])
    shown = run(["webhooks", "show", ENDPOINT, *URLS])
    rotated = run(["webhooks", "rotate-secret", ENDPOINT, *URLS])
    deleted = run(["webhooks", "delete", ENDPOINT, *URLS])

    assert [code for code, _, _ in (listed, shown, rotated, deleted)] == [0, 0, 0, 0]
    assert listed[1].splitlines()[0].split() == ["endpoint_id", "url", "event_types", "description", "created_at"]
    assert ENDPOINT in listed[1].splitlines()[2] and "secret" not in listed[1]
    assert services.sent("GET", "/webhooks")[0].url.params["tenant"] == "acme"
    assert json.loads(shown[1])["endpoint_id"] == ENDPOINT
    assert rotated[1].strip() == "whsec_bmV3" and "2026-01-01T00:00:00+00:00" in rotated[2]
    assert deleted[1].strip() == f"{ENDPOINT} deleted"


def test_webhooks_deliveries_and_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    path = f"/webhooks/{ENDPOINT}/deliveries"
    event = {"event_id": "42", "type": "scan.completed", "scan_id": SCAN_A, "status": "Complete", "at": AT}
    delivery = {
        "endpoint_id": ENDPOINT,
        "event_id": "42",
        "event": event,
        "status": "failed",
        "attempts": 12,
        "created_at": AT,
        "next_attempt_at": AT,
        "last_status_code": 503,
        "last_error": "HTTP 503",
    }
    services = Services(
        monkeypatch,
        {
            ("GET", path): {"deliveries": [delivery]},
            ("POST", f"{path}/42/retry"): {**delivery, "status": "pending"},
        },
    )

    code, out, _ = run(["webhooks", "deliveries", ENDPOINT, "--status", "failed", "--limit", "5", *URLS])
    retry_code, retried, _ = run(["webhooks", "retry", ENDPOINT, "42", *URLS])

    assert code == retry_code == 0
    row = out.splitlines()[2].split()
    assert row == ["42", "scan.completed", SCAN_A, "failed", "12", "503", "HTTP", "503"]
    assert dict(services.sent("GET", path)[0].url.params) == {"status": "failed", "limit": "5"}
    assert retried.strip() == "42 pending (attempts so far: 12)"


def test_a_refused_registration_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    refusal = {"error": {"code": "invalid_request", "message": "webhook URL refused: 127.0.0.1 is loopback"}}
    Services(monkeypatch, {("POST", "/webhooks"): httpx.Response(422, json=refusal)})

    code, _, err = run(["webhooks", "add", "http://127.0.0.1/", *URLS])

    assert code == 1
    assert err.strip() == "Error: POST http://ingest.test/webhooks: 422 webhook URL refused: 127.0.0.1 is loopback"


def test_submit_wait_follows_the_scans_event_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    findings = {"findings": [{"status": "fail", "severity": "high", "check_id": "tls.expired"}]}
    reads = iter([scan(SCAN_A, "Complete", result=findings)] * 2)  # the wait's answer, then the details
    services = Services(
        monkeypatch,
        {
            ("POST", "/scans"): httpx.Response(202, json=scan(SCAN_A, "Accepted")),
            ("GET", f"/scans/{SCAN_A}/events"): sse(("1", SCAN_A, "Accepted"), ("2", SCAN_A, "Complete")),
            ("GET", f"/scans/{SCAN_A}"): lambda request: httpx.Response(200, json=next(reads)),
        },
    )

    code, out, err = run(["submit", "--wait", *URLS])

    assert code == 0, out + err
    assert out.splitlines()[0] == SCAN_A
    assert f"scan {SCAN_A}: Complete" in out and "tls.expired" in out
    assert services.sent("GET", f"/scans/{SCAN_A}/events")[0].headers["Accept"] == "text/event-stream"


def test_submit_wait_for_many_reads_the_terminal_events(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = {"scans": [scan(SCAN_A, "Accepted"), scan(SCAN_B, "Accepted")]}
    states = {SCAN_A: iter(["Complete", "Complete"]), SCAN_B: iter(["Accepted", "Complete"])}

    def read(request: httpx.Request) -> httpx.Response:
        scan_id = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(200, json=scan(scan_id, next(states[scan_id])))

    answers: dict[tuple[str, str], Any] = {
        ("POST", "/scans/batch"): httpx.Response(202, json=batch),
        ("GET", "/events"): sse(("7", SCAN_B, "Complete")),
        ("GET", f"/scans/{SCAN_A}"): read,
        ("GET", f"/scans/{SCAN_B}"): read,
    }
    services = Services(monkeypatch, answers)

    code, out, err = run(["submit", "--count", "2", "--wait", *URLS])

    assert code == 0, out + err
    events = services.sent("GET", "/events")
    assert len(events) == 1 and events[0].url.params.get_list("status") == ["Cancelled", "Complete", "Error"]
    # One read round (A had already finished, B not), then B's end from the stream; then the details.
    assert [r.url.path for r in services.requests if r.method == "GET"][:3] == [
        "/events",
        f"/scans/{SCAN_A}",
        f"/scans/{SCAN_B}",
    ]
    assert "Complete  2" in err


def test_submit_wait_for_many_polls_without_a_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = {"scans": [scan(SCAN_A, "Accepted"), scan(SCAN_B, "Accepted")]}
    reads: dict[str, Callable[[], str]] = {
        SCAN_A: iter(["Accepted", "Complete", "Complete"]).__next__,
        SCAN_B: iter(["Complete", "Complete"]).__next__,
    }

    def read(request: httpx.Request) -> httpx.Response:
        scan_id = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(200, json=scan(scan_id, reads[scan_id]()))

    monkeypatch.setattr(client, "WAIT_POLL_S", 0.0)
    Services(
        monkeypatch,
        {
            ("POST", "/scans/batch"): httpx.Response(202, json=batch),
            ("GET", "/events"): httpx.Response(404, json={"error": {"code": "not_found", "message": "no route"}}),
            ("GET", f"/scans/{SCAN_A}"): read,
            ("GET", f"/scans/{SCAN_B}"): read,
        },
    )

    code, out, err = run(["submit", "--count", "2", "--wait", *URLS])

    assert code == 0, out + err
    assert "Complete  2" in err


def test_submit_callback_url_goes_in_the_body_of_one_and_of_many(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = "https://hooks.example/cb"
    services = Services(
        monkeypatch,
        {
            ("POST", "/scans"): httpx.Response(202, json=scan(SCAN_A, "Accepted", callback_url=hook)),
            ("POST", "/scans/batch"): httpx.Response(
                202, json={"scans": [scan(SCAN_A, "Accepted"), scan(SCAN_B, "Accepted")]}
            ),
        },
    )

    one = run(["submit", "--callback-url", hook, *URLS])
    many = run(["submit", "--callback-url", hook, "--count", "2", *URLS])

    assert one[0] == many[0] == 0, one[1] + one[2] + many[2]
    assert json.loads(services.sent("POST", "/scans")[0].content)["callback_url"] == hook
    batch = json.loads(services.sent("POST", "/scans/batch")[0].content)
    assert [item["callback_url"] for item in batch["scans"]] == [hook, hook]


def test_webhooks_show_callbacks_prints_its_secret_and_list_shows_it_without_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    callbacks = endpoint(endpoint_id="callbacks", url=None, description="One-off callbacks")
    Services(
        monkeypatch,
        {
            ("GET", "/webhooks/callbacks"): {**callbacks, "secret": "whsec_Y2I="},
            ("GET", "/webhooks"): {"webhooks": [callbacks, endpoint()]},
        },
    )

    shown = run(["webhooks", "show", "callbacks", *URLS])
    listed = run(["webhooks", "list", *URLS])

    assert shown[0] == listed[0] == 0, shown[2] + listed[2]
    assert json.loads(shown[1])["secret"] == "whsec_Y2I=" and json.loads(shown[1])["url"] is None
    rows = listed[1].splitlines()
    assert rows[2].split()[0] == "callbacks" and ENDPOINT in rows[3]
