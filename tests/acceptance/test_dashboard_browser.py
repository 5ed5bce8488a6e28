"""The dashboard in a real browser: Debian's chromium driven by Playwright against real scanq processes.

``scanq ingest`` and ``scanq status`` start first, without a worker, so a scan
submitted with the button stays Accepted long enough to be cancelled with
the button; then ``scanq worker`` starts and a second scan runs to Complete.
Nothing reloads the page: a marker set on ``window`` at the start must
survive to the end.

With ``SCANQ_AUTH=tokens`` the page asks for an API token, keeps it in
``sessionStorage`` only (never in a URL), shows the token's tenant only, and
asks again once the token is revoked (``scanq tokens revoke``).

Chromium is never downloaded: ``scripts/ensure-chromium.sh`` (run by
``./test``) installs Debian's package. Without it the test skips locally and
fails under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.acceptance.conftest import READY_TIMEOUT_S, Spawn, free_port, wait_http_ready
from tests.servers.availability import backend_unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
UI_TIMEOUT_MS = 15_000
TERMINAL = re.compile(r"^(Complete|Error|Cancelled)$")


def require_chromium() -> str:
    """Debian's chromium, or a skip (a failure under ``CI=true``) when it is not installed."""
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        backend_unavailable(f"{CHROMIUM} is not installed (scripts/ensure-chromium.sh installs it)")
    return CHROMIUM


def dashboard_env(tmp_path: Path) -> dict[str, str]:
    """Settings shared by every process of one test: one SQLite file, free ports, short mock scans."""
    ingest_port, status_port = free_port(), free_port()
    return {
        "SCANQ_DATABASE_URL": f"sqlite:///{tmp_path / 'scanq.db'}",
        "SCANQ_INGEST_PORT": str(ingest_port),
        "SCANQ_STATUS_PORT": str(status_port),
        "SCANQ_INGEST_URL": f"http://127.0.0.1:{ingest_port}",
        "SCANQ_STATUS_URL": f"http://127.0.0.1:{status_port}",
        "SCANQ_MOCK_MIN_SLEEP": "0.3",
        "SCANQ_MOCK_MAX_SLEEP": "0.6",
        "SCANQ_MOCK_FAILURE_RATE": "0",
        "SCANQ_SHUTDOWN_SECONDS": "1",
    }


@pytest.fixture
def chromium_path() -> str:
    return require_chromium()


@pytest.fixture
def scanq_env(tmp_path: Path) -> dict[str, str]:
    return dashboard_env(tmp_path)


def start_service(spawn: Spawn, env: dict[str, str], command: str) -> str:
    """Start ``scanq ingest`` or ``scanq status`` and wait until it is ready; return its URL."""
    url = env[f"SCANQ_{command.upper()}_URL"]
    wait_http_ready(f"{url}/readyz", process=spawn(command, env=env))
    return url


def test_dashboard_submits_cancels_and_follows_scans_live_without_reloading(
    spawn: Spawn, scanq_env: dict[str, str], chromium_path: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    start_service(spawn, scanq_env, "ingest")
    status_url = start_service(spawn, scanq_env, "status")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            errors: list[Any] = []
            page.on("pageerror", lambda error: errors.append(error))
            page.goto(f"{status_url}/")
            expect(page.locator("#live")).to_have_attribute("data-state", "live")
            page.evaluate("window.__notReloaded = true")

            # No worker yet: the scan stays Accepted, and the detail's button cancels it through ingest (CORS).
            page.fill("#submit-target", "cancel-me.example")
            page.click("#submit-button")
            expect(page.locator("#submit-result")).to_have_text(re.compile(r"^submitted "))
            cancelled_id = page.locator("#submit-result").get_attribute("data-scan-id")
            assert cancelled_id
            cancelled_row = page.locator(f'#scan-rows tr[data-scan-id="{cancelled_id}"]')
            expect(cancelled_row).to_have_attribute("data-status", "Accepted")
            # The per-tenant queue: without tokens every scan is tenant "default" (no filter to set: plain text).
            expect(tenant_queue(page, "default", "accepted")).to_have_text("1")
            expect(page.locator("#tenant-rows button")).to_have_count(0)
            expect(page.locator("#detail-id")).to_have_text(cancelled_id)
            page.click("#detail-cancel")
            expect(page.locator("#detail-status")).to_have_text("Cancelled")
            expect(cancelled_row).to_have_attribute("data-status", "Cancelled")
            expect(page.locator('[data-count="Cancelled"]')).to_have_text("1")
            expect(page.locator("#tenant-queues")).to_be_hidden()  # nothing waiting or running

            spawn("worker", env=scanq_env)
            page.fill("#submit-target", "example.com")
            page.click("#submit-button")
            expect(page.locator("#submit-result")).not_to_have_text(f"submitted {cancelled_id}")
            scan_id = page.locator("#submit-result").get_attribute("data-scan-id")
            assert scan_id and scan_id != cancelled_id
            row = page.locator(f'#scan-rows tr[data-scan-id="{scan_id}"]')
            expect(row).to_be_visible()
            expect(row).to_have_attribute("data-status", TERMINAL, timeout=30_000)
            expect(row).to_have_attribute("data-status", "Complete")
            expect(page.locator('[data-count="Complete"]')).to_have_text("1")

            # Its detail, with the attempt history.
            page.click("#detail-close")
            expect(page.locator("#detail")).to_be_hidden()
            row.click()
            expect(page.locator("#detail")).to_be_visible()
            expect(page.locator("#detail-id")).to_have_text(scan_id)
            expect(page.locator("#detail-status")).to_have_text("Complete")
            history = page.locator("#detail-history tbody tr")
            expect(history).to_have_count(1)
            expect(history.first).to_have_attribute("data-outcome", "Complete")
            expect(history.first.locator("td").nth(1)).not_to_be_empty()
            expect(page.locator("#detail-result pre")).to_contain_text('"slept_s"')

            # Filter by status and look up by ID.
            page.select_option("#status-filter", "Cancelled")
            expect(page.locator("#scan-rows tr")).to_have_count(1)
            expect(page.locator("#scan-rows tr").first).to_have_attribute("data-scan-id", cancelled_id)
            page.fill("#lookup-id", cancelled_id)
            page.click("#lookup-button")
            expect(page.locator("#detail-id")).to_have_text(cancelled_id)
            expect(page.locator("#detail-status")).to_have_text("Cancelled")
            expect(page.locator("#detail-history tbody tr")).to_have_text(["not started yet"])

            assert page.evaluate("window.__notReloaded") is True
            screenshot = tmp_path / "dashboard.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000
            assert errors == []
        finally:
            browser.close()


def tenant_queue(page: Page, tenant: str, field: str) -> Locator:
    """One cell of a tenant's row in the dashboard's per-tenant queue (``accepted``, ``running``, ``oldest``)."""
    return page.locator(f'#tenant-rows tr[data-tenant="{tenant}"] [data-field="{field}"]')


def tenant_queue_names(page: Page) -> set[str]:
    """The tenants the per-tenant queue shows now."""
    names = page.locator("#tenant-rows tr").evaluate_all("rows => rows.map(row => row.dataset.tenant)")
    return set(names)


def wait_finished(status_url: str, expected: dict[str, int]) -> None:
    """Poll ``GET /stats`` until the counts hold ``expected``."""
    deadline = time.monotonic() + 30
    while True:
        counts = httpx.get(f"{status_url}/stats").json()["counts"]
        if all(counts[name] == n for name, n in expected.items()):
            return
        assert time.monotonic() < deadline, counts
        time.sleep(0.2)


def test_dashboard_chart_shows_the_finished_history_with_axes_as_soon_as_it_opens(
    spawn: Spawn, scanq_env: dict[str, str], chromium_path: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    ingest_url = start_service(spawn, scanq_env, "ingest")
    status_url = start_service(spawn, scanq_env, "status")
    # Before the page exists: one scan cancelled while queued, then five run to Complete by a worker.
    queued = httpx.post(f"{ingest_url}/scans", json={"target": "never-runs.example"}).json()["scan_id"]
    assert httpx.post(f"{ingest_url}/scans/{queued}/cancel").json()["status"] == "Cancelled"
    spawn("worker", env=scanq_env)
    batch = {"scans": [{"target": f"done{i}.example"} for i in range(5)]}
    assert httpx.post(f"{ingest_url}/scans/batch", json=batch).status_code == 202
    wait_finished(status_url, {"Complete": 5, "Cancelled": 1, "Accepted": 0, "Running": 0})

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            errors: list[Any] = []
            page.on("pageerror", lambda error: errors.append(error))
            page.goto(f"{status_url}/")

            bars = page.locator("#throughput .step")
            expect(bars).to_have_count(30)  # 5 minutes in steps of 10 s
            # The history is drawn from GET /stats/throughput: what finished before the page opened is there.
            complete = page.locator('#throughput .step [data-status="Complete"]')
            cancelled = page.locator('#throughput .step [data-status="Cancelled"]')
            expect(complete.first).to_be_attached()
            expect(cancelled.first).to_be_attached()
            assert sum(int(n) for n in complete.evaluate_all("nodes => nodes.map(n => n.dataset.count)")) == 5
            assert sum(int(n) for n in cancelled.evaluate_all("nodes => nodes.map(n => n.dataset.count)")) == 1
            totals = [int(n) for n in bars.evaluate_all("nodes => nodes.map(n => n.dataset.total)")]
            assert sum(totals) == 6
            tallest = bars.nth(totals.index(max(totals)))
            assert "finished" in (tallest.get_attribute("title") or "")
            # Axis values: counts up the side (the top is the tallest bar rounded up to 1, 2 or 5), clock times below.
            expect(page.locator("#throughput-y span")).to_have_count(3)
            expect(page.locator("#throughput-y span").last).to_have_text("0")
            top = int(page.locator("#throughput-y span").first.inner_text().replace(",", ""))
            assert top >= max(totals) and top in (1, 2, 5, 10)
            expect(page.locator("#throughput-x span")).to_have_count(5)
            for label in page.locator("#throughput-x span").all_inner_texts():
                assert re.fullmatch(r"\d{2}:\d{2}", label), label
            assert errors == []
            page.screenshot(path=str(tmp_path / "throughput.png"), full_page=True)
        finally:
            browser.close()


FAKE_ID = "01a22030-0000-7000-8000-000000000001"
HOSTILE = '<img src=x onerror="window.__owned = true">'


def scan_with_findings() -> dict[str, Any]:
    finding = {
        "plugin": "tls",
        "asset": {"host": "example.com", "ip": "192.0.2.1", "port": 443},
        "evidence": {"expected": "valid", "actual": "expired"},
        "remediation": "Renew the certificate",
    }
    return {
        "scan_id": FAKE_ID,
        "status": "Complete",
        "target": "example.com",
        "scanner": "tls",
        "options": {},
        "priority": 0,
        "attempt": 1,
        "max_attempts": 3,
        "created_at": "2025-01-01T00:00:00Z",
        "updated_at": "2025-01-01T00:00:02Z",
        "available_at": "2025-01-01T00:00:00Z",
        "started_at": "2025-01-01T00:00:01Z",
        "finished_at": "2025-01-01T00:00:02Z",
        "lease_owner": None,
        "lease_expires_at": None,
        "error": None,
        "idempotency_key": None,
        "cancel_requested": False,
        "history": [
            {
                "attempt": 1,
                "worker": "host:1:abc",
                "started_at": "2025-01-01T00:00:01Z",
                "finished_at": "2025-01-01T00:00:02Z",
                "outcome": "Complete",
                "error": None,
            }
        ],
        "result": {
            "summary": {"pass": 1, "fail": 2},
            "findings": [
                {**finding, "check_id": "tls.protocol", "status": "pass", "severity": "medium", "title": "TLS 1.2+"},
                {**finding, "check_id": "tls.hsts", "status": "fail", "severity": "low", "title": HOSTILE},
                {**finding, "check_id": "tls.cert.expired", "status": "fail", "severity": "high", "title": "Expired"},
            ],
        },
    }


def test_dashboard_renders_findings_as_a_table_worst_first_and_never_as_html(
    spawn: Spawn, scanq_env: dict[str, str], chromium_path: str, tmp_path: Path
) -> None:
    from playwright.sync_api import Route, expect, sync_playwright

    status_url = start_service(spawn, scanq_env, "status")

    def fulfil(route: Route) -> None:
        route.fulfill(status=200, content_type="application/json", body=json.dumps(scan_with_findings()))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.route(f"**/scans/{FAKE_ID}", fulfil)
            page.goto(f"{status_url}/")
            page.fill("#lookup-id", FAKE_ID)
            page.click("#lookup-button")
            rows = page.locator("#findings tbody tr")
            expect(rows).to_have_count(3)
            expect(rows.locator("td:nth-child(3) code")).to_have_text(["tls.cert.expired", "tls.hsts", "tls.protocol"])
            expect(rows.nth(1).locator(".title")).to_have_text(HOSTILE)
            expect(rows.first.locator("td").nth(3)).to_have_text("example.com:443 (192.0.2.1)")
            expect(rows.first.locator("td").nth(4)).to_contain_text("Fix: Renew the certificate")
            expect(page.locator("#detail-result p")).to_have_text("1 passed, 2 failed")
            assert page.locator("#detail img").count() == 0
            assert page.evaluate("window.__owned === undefined") is True
            page.screenshot(path=str(tmp_path / "findings.png"), full_page=True)
        finally:
            browser.close()


TOKEN_LINE = re.compile(r"^(scanq_[A-Za-z0-9_-]{43})$", re.MULTILINE)
TOKEN_ID = re.compile(r"\btoken (tok_[0-9a-f]+) for tenant\b")
AUTH_DEADLINE_MS = 30_000  # the server refuses a revoked token within a second; the page notices on its next poll


def create_token(spawn: Spawn, env: dict[str, str], tenant: str, scopes: str, name: str) -> tuple[str, str]:
    """``scanq tokens create`` on the test's store: (the secret, the token id)."""
    process = spawn("tokens", "create", "--tenant", tenant, "--scopes", scopes, "--name", name, env=env)
    assert process.wait(READY_TIMEOUT_S) == 0, process.output()
    secret, token_id = TOKEN_LINE.search(process.output()), TOKEN_ID.search(process.output())
    assert secret and token_id, process.output()
    return secret.group(1), token_id.group(1)


def submit_as(ingest_url: str, secret: str, target: str) -> str:
    reply = httpx.post(f"{ingest_url}/scans", json={"target": target}, headers={"Authorization": f"Bearer {secret}"})
    assert reply.status_code == 202, reply.text
    scan_id: str = reply.json()["scan_id"]
    return scan_id


def test_dashboard_with_tokens_signs_in_shows_one_tenant_and_signs_out_when_the_token_is_revoked(
    spawn: Spawn, scanq_env: dict[str, str], chromium_path: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    env = {**scanq_env, "SCANQ_AUTH": "tokens"}
    ingest_url = start_service(spawn, env, "ingest")
    status_url = start_service(spawn, env, "status")
    secret_a, id_a = create_token(spawn, env, "A", "submit,read,cancel", "alice-dashboard")
    secret_b, _ = create_token(spawn, env, "B", "submit,read,cancel", "bob-dashboard")
    secret_admin, _ = create_token(spawn, env, "ops", "read,admin", "ops-dashboard")
    secrets = (secret_a, secret_b, secret_admin)
    scans_a = [submit_as(ingest_url, secret_a, "a-one.example")]
    scans_b = [submit_as(ingest_url, secret_b, f"b-{i}.example") for i in range(2)]
    # No worker: every scan stays Accepted.
    assert httpx.get(f"{status_url}/scans").status_code == 401

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            errors: list[Any] = []
            requested: list[str] = []
            page.on("pageerror", lambda error: errors.append(error))
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{status_url}/")
            page.evaluate("window.__notReloaded = true")

            # Tokens required: the sign-in form, a password input, and nothing of the dashboard.
            expect(page.locator("#login")).to_be_visible()
            expect(page.locator("#login-token")).to_have_attribute("type", "password")
            expect(page.locator("#main")).to_be_hidden()
            expect(page.locator("#sign-out")).to_be_hidden()

            # A wrong token: the server's message, still signed out.
            page.fill("#login-token", "scanq_" + "x" * 43)
            page.click("#login-button")
            expect(page.locator("#login-message")).to_contain_text("unknown API token")
            expect(page.locator("#main")).to_be_hidden()

            # Tenant A: only A's scans, each marked with its tenant.
            page.fill("#login-token", secret_a)
            page.click("#login-button")
            expect(page.locator("#login")).to_be_hidden()
            expect(page.locator("#live")).to_have_attribute("data-state", "live")
            expect(page.locator("#sign-out")).to_be_visible()
            rows = page.locator("#scan-rows tr")
            expect(rows).to_have_count(len(scans_a))
            expect(rows.first).to_have_attribute("data-scan-id", scans_a[0])
            expect(rows.first.locator("td.col-tenant")).to_have_text("A")
            expect(page.locator('[data-count="Accepted"]')).to_have_text("1")
            # The per-tenant queue: A's own row only, with its waiting scan and how long it has waited.
            tenant_rows = page.locator("#tenant-rows tr")
            expect(tenant_queue(page, "A", "accepted")).to_have_text("1")
            expect(tenant_rows).to_have_count(1)
            expect(tenant_queue(page, "A", "running")).to_have_text("0")
            expect(tenant_queue(page, "A", "oldest")).to_have_text(re.compile(r"^\d+ (s|min)$"))

            # Another tenant's filter is refused for a token that is not admin: the message, the filter cleared.
            page.fill("#tenant-filter", "B")
            page.press("#tenant-filter", "Tab")
            expect(page.locator("#tenant-message")).to_contain_text("admin")
            expect(page.locator("#tenant-filter")).to_have_value("")
            expect(rows).to_have_count(len(scans_a))

            # Submit from the dashboard: through ingest with the token (CORS), the new scan is A's.
            page.fill("#submit-target", "a-two.example")
            with page.expect_request(lambda r: r.url == f"{ingest_url}/scans" and r.method == "POST") as posted:
                page.click("#submit-button")
            assert posted.value.all_headers().get("authorization") == f"Bearer {secret_a}"
            expect(page.locator("#submit-result")).to_have_text(re.compile(r"^submitted "))
            new_id = page.locator("#submit-result").get_attribute("data-scan-id")
            assert new_id and new_id not in scans_a
            scans_a.append(new_id)
            new_row = page.locator(f'#scan-rows tr[data-scan-id="{new_id}"]')
            expect(new_row).to_have_attribute("data-status", "Accepted")
            expect(new_row.locator("td.col-tenant")).to_have_text("A")
            expect(rows).to_have_count(len(scans_a))
            expect(tenant_queue(page, "A", "accepted")).to_have_text(str(len(scans_a)))
            expect(tenant_rows).to_have_count(1)
            expect(page.locator("#detail-id")).to_have_text(new_id)
            expect(page.locator("#detail-fields")).to_contain_text("alice-dashboard")
            for scan_id in scans_b:
                expect(page.locator(f'#scan-rows tr[data-scan-id="{scan_id}"]')).to_have_count(0)
            stored = httpx.get(f"{status_url}/scans/{new_id}", headers={"Authorization": f"Bearer {secret_a}"})
            assert stored.json()["tenant"] == "A"

            # The token lives in this tab's sessionStorage only.
            assert page.evaluate("Object.values(sessionStorage)") == [secret_a]
            assert page.evaluate("localStorage.length") == 0

            # Revoked: the page's next poll gets 401, drops the token and asks again, with the server's reason.
            revoke = spawn("tokens", "revoke", id_a, env=env)
            assert revoke.wait(READY_TIMEOUT_S) == 0, revoke.output()
            expect(page.locator("#login")).to_be_visible(timeout=AUTH_DEADLINE_MS)
            expect(page.locator("#login-message")).to_contain_text("revoked")
            expect(page.locator("#main")).to_be_hidden()
            assert page.evaluate("sessionStorage.length") == 0
            page.screenshot(path=str(tmp_path / "dashboard-login.png"), full_page=True)

            # Tenant B sees B's scans only, and signs out with the button.
            page.fill("#login-token", secret_b)
            page.click("#login-button")
            expect(rows).to_have_count(len(scans_b))
            expect(page.locator("#scan-rows td.col-tenant")).to_have_text(["B"] * len(scans_b))
            expect(tenant_queue(page, "B", "accepted")).to_have_text(str(len(scans_b)))
            expect(tenant_rows).to_have_count(1)
            page.click("#sign-out")
            expect(page.locator("#login")).to_be_visible()
            expect(page.locator("#main")).to_be_hidden()
            assert page.evaluate("sessionStorage.length") == 0

            # An admin token sees every tenant, and its tenant filter narrows the list and the counts.
            page.fill("#login-token", secret_admin)
            page.click("#login-button")
            expect(rows).to_have_count(len(scans_a) + len(scans_b))
            # Its per-tenant queue has every tenant with waiting scans (not its own "ops", which has none).
            expect(tenant_queue(page, "A", "accepted")).to_have_text(str(len(scans_a)))
            expect(tenant_queue(page, "B", "accepted")).to_have_text(str(len(scans_b)))
            expect(tenant_rows).to_have_count(2)
            assert tenant_queue_names(page) == {"A", "B"}
            page.fill("#tenant-filter", "B")
            page.press("#tenant-filter", "Tab")
            expect(rows).to_have_count(len(scans_b))
            expect(page.locator('[data-count="Accepted"]')).to_have_text(str(len(scans_b)))
            expect(page.locator("#tenant-message")).to_have_text("")
            expect(tenant_rows).to_have_count(1)
            expect(tenant_queue(page, "B", "accepted")).to_have_text(str(len(scans_b)))
            page.fill("#tenant-filter", "")
            page.press("#tenant-filter", "Tab")
            expect(rows).to_have_count(len(scans_a) + len(scans_b))
            expect(tenant_rows).to_have_count(2)

            # A tenant's name in the queue sets the tenant filter; clicking it again clears it.
            page.locator('#tenant-rows tr[data-tenant="A"] button').click()
            expect(page.locator("#tenant-filter")).to_have_value("A")
            expect(rows).to_have_count(len(scans_a))
            expect(page.locator("#scan-rows td.col-tenant")).to_have_text(["A"] * len(scans_a))
            expect(tenant_rows).to_have_count(1)
            expect(page.locator('#tenant-rows tr[data-tenant="A"]')).to_have_class("selected")
            page.locator('#tenant-rows tr[data-tenant="A"] button').click()
            expect(page.locator("#tenant-filter")).to_have_value("")
            expect(rows).to_have_count(len(scans_a) + len(scans_b))
            expect(tenant_rows).to_have_count(2)

            assert any(url.startswith(f"{status_url}/scans?") and "tenant=B" in url for url in requested)
            leaked = [url for url in [*requested, page.url] if any(secret in url for secret in secrets)]
            assert leaked == []
            assert page.evaluate("window.__notReloaded") is True
            page.screenshot(path=str(tmp_path / "dashboard-tokens.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()
