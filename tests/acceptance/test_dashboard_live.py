"""The dashboard follows scans through the status service's event stream (``GET /events``), in the real Chromium.

Real ``scanq ingest``, ``scanq status`` and ``scanq worker`` processes on one SQLite file, as in
``test_dashboard_browser.py``. A scan submitted from outside the page appears and moves Accepted →
Running → Complete in its row, its detail and the counts without a reload; a ``MutationObserver`` in the
page records every status its row showed, so the order is checked too. The page reads the stream with
``fetch()`` (an ``EventSource`` cannot send the token), so the other tests check what it sends:
``Last-Event-ID`` after the stream ends (a stream Playwright answers, in CR, LF and CRLF lines) and after
the status service restarts, and polling when the server has no stream (404, an older scanq).

Every wait is an ``expect`` with a generous deadline; nothing asserts how long anything took.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.acceptance.conftest import EXIT_WITHIN_S, Spawn, wait_http_ready
from tests.acceptance.test_dashboard_browser import (
    CHROMIUM_ARGS,
    UI_TIMEOUT_MS,
    dashboard_env,
    require_chromium,
    start_service,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page, Request, Route

pytestmark = pytest.mark.slow

# Long enough to see Running in the page (events arrive within a second); the test never times it.
RUN_S = 4.0
TRANSITION_TIMEOUT_MS = 30_000
EVENTS_URL = re.compile(r"^https?://[^/]+/events(\?.*)?$")  # the page's stream, not a scan's
SCAN_STATUSES_SEEN = """
() => {
  window.__seen = {};
  const record = () => {
    for (const row of document.querySelectorAll("#scan-rows tr")) {
      const seen = (window.__seen[row.dataset.scanId] ||= []);
      if (seen[seen.length - 1] !== row.dataset.status) seen.push(row.dataset.status);
    }
  };
  new MutationObserver(record).observe(document.getElementById("scan-rows"), {
    childList: true, subtree: true, attributes: true, attributeFilter: ["data-status"],
  });
  record();
}
"""


@pytest.fixture
def chromium_path() -> str:
    return require_chromium()


@pytest.fixture
def scanq_env(tmp_path: Path) -> dict[str, str]:
    return dashboard_env(tmp_path)


@dataclass
class Browsing:
    """The dashboard open in Chromium, with what it requested and every uncaught error since it loaded."""

    page: Page
    requests: list[Request] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)

    def streams(self) -> list[Request]:
        """The page's requests for ``GET /events``, oldest first."""
        return [request for request in self.requests if EVENTS_URL.search(request.url)]


@contextmanager
def dashboard(
    chromium_path: str, status_url: str, *, routes: dict[re.Pattern[str], Any] | None = None
) -> Iterator[Browsing]:
    """A headless Chromium page on the dashboard (``routes``: Playwright handlers installed before it loads).

    At the end: the page was never reloaded and raised no error.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            browsing = Browsing(page=page)
            # Before the page loads: its script opens the stream before the load event.
            page.on("request", lambda request: browsing.requests.append(request))
            page.on("pageerror", lambda error: browsing.errors.append(error))
            for pattern, handler in (routes or {}).items():
                page.route(pattern, handler)
            page.goto(f"{status_url}/")
            page.evaluate("window.__notReloaded = true")
            yield browsing
            assert page.evaluate("window.__notReloaded") is True
            assert browsing.errors == []
        finally:
            browser.close()


def submit(ingest_url: str, *, target: str, run_s: float = 0.0) -> str:
    """Queue one mock scan that runs ``run_s`` seconds (through ingest, not the page); return its id."""
    options = {"min_sleep": run_s, "max_sleep": run_s, "failure_rate": 0}
    reply = httpx.post(f"{ingest_url}/scans", json={"target": target, "scanner": "mock", "options": options})
    assert reply.status_code == 202, reply.text
    scan_id: str = reply.json()["scan_id"]
    return scan_id


def test_a_scan_moves_accepted_running_complete_in_the_page_as_events_arrive(
    spawn: Spawn, scanq_env: dict[str, str], chromium_path: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    ingest_url = start_service(spawn, scanq_env, "ingest")
    status_url = start_service(spawn, scanq_env, "status")
    with dashboard(chromium_path, status_url) as browsing:
        page = browsing.page
        live = page.locator("#live")
        expect(live).to_have_attribute("data-state", "live")
        expect(live).to_have_text("live")
        page.evaluate(SCAN_STATUSES_SEEN)

        # Submitted elsewhere, no worker yet: the Accepted event brings the row and the count.
        scan_id = submit(ingest_url, target="live.example", run_s=RUN_S)
        row = page.locator(f'#scan-rows tr[data-scan-id="{scan_id}"]')
        expect(row).to_have_attribute("data-status", "Accepted")
        expect(page.locator('[data-count="Accepted"]')).to_have_text("1")
        row.click()
        expect(page.locator("#detail-status")).to_have_text("Accepted")

        spawn("worker", env=scanq_env)
        expect(row).to_have_attribute("data-status", "Running", timeout=TRANSITION_TIMEOUT_MS)
        expect(page.locator("#detail-status")).to_have_text("Running")
        expect(page.locator('[data-count="Running"]')).to_have_text("1")
        expect(row).to_have_attribute("data-status", "Complete", timeout=TRANSITION_TIMEOUT_MS)
        expect(page.locator("#detail-status")).to_have_text("Complete")
        expect(page.locator('[data-count="Complete"]')).to_have_text("1")
        expect(page.locator('[data-count="Running"]')).to_have_text("0")
        expect(page.locator('#throughput .step [data-status="Complete"]')).to_have_count(1)

        assert page.evaluate(f"window.__seen[{json.dumps(scan_id)}]") == ["Accepted", "Running", "Complete"]
        # One stream all along, and the page remembers where it is in it.
        expect(live).to_have_attribute("data-state", "live")
        expect(live).to_have_attribute("data-last-event-id", re.compile(r".+"))
        streams = browsing.streams()
        assert len(streams) == 1, [request.url for request in streams]
        assert streams[0].all_headers().get("accept") == "text/event-stream"
        assert "last-event-id" not in streams[0].all_headers()
        page.screenshot(path=str(tmp_path / "dashboard-live.png"), full_page=True)


def test_without_an_event_stream_the_page_says_polling_and_still_follows_scans(
    spawn: Spawn, scanq_env: dict[str, str], chromium_path: str
) -> None:
    from playwright.sync_api import expect

    refused: list[str] = []

    def older_server(route: Route) -> None:
        refused.append(route.request.url)
        route.fulfill(status=404, content_type="application/json", body='{"error": {"message": "Not Found"}}')

    ingest_url = start_service(spawn, scanq_env, "ingest")
    status_url = start_service(spawn, scanq_env, "status")
    spawn("worker", env=scanq_env)
    with dashboard(chromium_path, status_url, routes={EVENTS_URL: older_server}) as browsing:
        page = browsing.page
        expect(page.locator("#live")).to_have_attribute("data-state", "polling")
        expect(page.locator("#live")).to_have_text("polling")
        scan_id = submit(ingest_url, target="polled.example")
        row = page.locator(f'#scan-rows tr[data-scan-id="{scan_id}"]')
        expect(row).to_have_attribute("data-status", "Complete", timeout=TRANSITION_TIMEOUT_MS)
        expect(page.locator('[data-count="Complete"]')).to_have_text("1")
        expect(page.locator("#live")).to_have_attribute("data-state", "polling")
        assert len(refused) == 1, refused  # an older server is asked again only minutes later


def event(event_id: str, scan_id: str, status: str, type_: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type_,
        "scan_id": scan_id,
        "tenant": "default",
        "status": status,
        "attempt": 1,
        "at": "2026-01-01T00:00:00Z",
    }


def test_the_page_parses_the_stream_and_resumes_with_the_last_event_id_it_handled(
    spawn: Spawn, scanq_env: dict[str, str], chromium_path: str
) -> None:
    from playwright.sync_api import expect

    scan = "01a22030-0000-7000-8000-0000000000aa"
    first, second = event("e-1", scan, "Accepted", "scan.accepted"), event("e-2", scan, "Running", "scan.started")
    split = json.dumps(first).replace(", ", ",\n", 1).split("\n")  # one event in two data lines
    bodies = [
        # CRLF lines, a short retry, a keep-alive comment, an event without data (only moves the id), then a
        # "data:" without its space. The body ends: the page must reconnect after e-2.
        "retry: 50\r\n: keep-alive\r\n\r\n"
        f"id: e-1\r\nevent: scan.accepted\r\ndata: {split[0]}\r\ndata: {split[1]}\r\n\r\n"
        f"id: e-2\r\nevent: scan.started\r\ndata:{json.dumps(second)}\r\n\r\n"
        "id: e-2b\r\n\r\n",
        # CR-only lines; the unfinished event at the end (no empty line) is not handled: its id is not kept.
        f"id: e-3\revent: scan.completed\rdata: {json.dumps(event('e-3', scan, 'Complete', 'scan.completed'))}\r\r"
        "id: e-4\rdata: {}",
    ]
    seen: list[dict[str, str]] = []

    def crafted_stream(route: Route) -> None:
        seen.append(route.request.headers)
        if len(seen) <= len(bodies):
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=bodies[len(seen) - 1])
        else:
            route.fulfill(status=501, content_type="application/json", body="{}")

    status_url = start_service(spawn, scanq_env, "status")
    with dashboard(chromium_path, status_url, routes={EVENTS_URL: crafted_stream}) as browsing:
        page = browsing.page
        # Two short streams then a 501: the page ends up polling.
        expect(page.locator("#live")).to_have_attribute("data-state", "polling")
        deadline = time.monotonic() + TRANSITION_TIMEOUT_MS / 1000
        while len(seen) < len(bodies) + 1:
            assert time.monotonic() < deadline, seen
            page.wait_for_timeout(100)
        assert "last-event-id" not in seen[0]
        assert seen[1].get("last-event-id") == "e-2b"
        assert seen[2].get("last-event-id") == "e-3"
        assert all(headers.get("accept") == "text/event-stream" for headers in seen)
        expect(page.locator("#live")).to_have_attribute("data-last-event-id", "e-3")


def events_of(status_url: str, scan_id: str) -> list[dict[str, Any]]:
    """``GET /scans/{id}/events`` of a finished scan: its kept events from the start (the stream then ends)."""
    found: list[dict[str, Any]] = []
    with httpx.stream("GET", f"{status_url}/scans/{scan_id}/events", timeout=20.0) as response:
        assert response.status_code == 200
        data: list[str] = []
        for line in response.iter_lines():
            if line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif line == "" and data:
                found.append(json.loads("\n".join(data)))
                data = []
    return found


def test_after_the_status_service_restarts_the_page_resumes_from_the_last_event_it_had(
    spawn: Spawn, scanq_env: dict[str, str], chromium_path: str
) -> None:
    from playwright.sync_api import expect

    ingest_url = start_service(spawn, scanq_env, "ingest")
    status_url = scanq_env["SCANQ_STATUS_URL"]
    status = spawn("status", env=scanq_env)
    wait_http_ready(f"{status_url}/readyz", process=status)
    with dashboard(chromium_path, status_url) as browsing:
        page = browsing.page
        live = page.locator("#live")
        expect(live).to_have_attribute("data-state", "live")
        scan_id = submit(ingest_url, target="restart.example", run_s=1.0)
        row = page.locator(f'#scan-rows tr[data-scan-id="{scan_id}"]')
        expect(row).to_have_attribute("data-status", "Accepted")
        expect(live).to_have_attribute("data-last-event-id", re.compile(r".+"))
        before = live.get_attribute("data-last-event-id")

        # The status service goes away; meanwhile the scan runs to its end; then the service is back.
        status.signal(signal.SIGTERM)
        status.wait(EXIT_WITHIN_S)
        expect(live).not_to_have_attribute("data-state", "live")
        spawn("worker", env=scanq_env)
        start_service(spawn, scanq_env, "status")

        expect(live).to_have_attribute("data-state", "live", timeout=TRANSITION_TIMEOUT_MS)
        expect(row).to_have_attribute("data-status", "Complete", timeout=TRANSITION_TIMEOUT_MS)
        # The page resumed right after the last event it had: the scan's Accepted.
        accepted = [e["event_id"] for e in events_of(status_url, scan_id) if e["status"] == "Accepted"]
        assert before == accepted[0]
        resumed = browsing.streams()[1:]
        assert resumed, "the page never asked for the stream again"
        assert {request.all_headers().get("last-event-id") for request in resumed} == {before}
