"""Cross-site protection on real ``scanq ingest`` and ``scanq status`` processes, with the headers browsers send.

What a page on another site can make a visitor's browser send must change
nothing; curl and scripts (no ``Origin``, no ``Sec-Fetch-*``) keep the
original contract, ``GET /`` included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx
import pytest

from tests.acceptance.conftest import Spawn, free_port, wait_http_ready

pytestmark = pytest.mark.slow

EVIL = "http://evil.example"
CONSOLE = "https://console.example"  # configured in SCANQ_ALLOWED_ORIGINS
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}
CROSS_SITE_GET = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}


@dataclass(frozen=True)
class Services:
    ingest: str
    status: str

    def total(self) -> int:
        total: int = httpx.get(f"{self.status}/stats", timeout=5.0).json()["total"]
        return total


@pytest.fixture(scope="module")
def services(spawn_for_module: Spawn, tmp_path_factory: pytest.TempPathFactory) -> Services:
    ingest_port, status_port = free_port(), free_port()
    ingest, status = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{status_port}"
    env = {
        "SCANQ_DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('cross-site') / 'scanq.db'}",
        "SCANQ_INGEST_PORT": str(ingest_port),
        "SCANQ_STATUS_PORT": str(status_port),
        "SCANQ_INGEST_URL": ingest,
        "SCANQ_STATUS_URL": status,
        "SCANQ_ALLOWED_ORIGINS": CONSOLE,
    }
    ingest_process = spawn_for_module("ingest", env=env)
    status_process = spawn_for_module("status", env=env)
    wait_http_ready(f"{ingest}/healthz", process=ingest_process)
    wait_http_ready(f"{status}/healthz", process=status_process)
    return Services(ingest=ingest, status=status)


def queue_one(services: Services) -> str:
    scan_id: str = httpx.post(f"{services.ingest}/scans", json={}, timeout=5.0).json()["scan_id"]
    return scan_id


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def post(url: str, *, headers: Mapping[str, str] = {}, content: bytes = b"") -> httpx.Response:
    return httpx.post(url, content=content, headers=dict(headers), timeout=5.0)


def test_another_site_cannot_cancel_a_scan(services: Services) -> None:
    scan_id = queue_one(services)

    response = post(f"{services.ingest}/scans/{scan_id}/cancel", headers={"Origin": EVIL, **FORM})

    assert response.status_code == 403
    assert error_code(response) == "cross_site_refused"
    assert httpx.get(f"{services.status}/scans/{scan_id}", timeout=5.0).json()["status"] == "Accepted"


def test_another_site_cannot_queue_scans_with_a_form(services: Services) -> None:
    before = services.total()

    foreign_form = post(f"{services.ingest}/scans", headers={"Origin": EVIL, **FORM})
    foreign_json = post(f"{services.ingest}/scans", headers={"Origin": EVIL, **JSON}, content=b"{}")
    # Without an Origin (an old browser, or one that leaves it out): the form type alone is refused.
    empty_form = post(f"{services.ingest}/scans", headers=FORM)
    marked_form = post(f"{services.ingest}/scans/batch", headers={"Sec-Fetch-Site": "cross-site", **FORM})

    assert [foreign_form.status_code, foreign_json.status_code] == [403, 403]
    assert [empty_form.status_code, marked_form.status_code] == [415, 403]
    assert error_code(empty_form) == "unsupported_media_type"
    assert services.total() == before


def test_another_site_cannot_queue_scans_with_get(services: Services) -> None:
    before = services.total()

    image = httpx.get(f"{services.ingest}/", headers=CROSS_SITE_GET, timeout=5.0)
    same_site = httpx.get(f"{services.ingest}/", headers={"Sec-Fetch-Site": "same-site"}, timeout=5.0)

    assert (image.status_code, error_code(image)) == (403, "cross_site_refused")
    assert same_site.status_code == 403
    assert services.total() == before


def test_curl_and_scripts_keep_the_original_contract(services: Services) -> None:
    before = services.total()

    queued = httpx.get(f"{services.ingest}/", timeout=5.0)  # ID=$(curl -s localhost:10550)
    typed = httpx.get(f"{services.ingest}/", headers={"Sec-Fetch-Site": "none"}, timeout=5.0)  # the address bar
    bare_post = post(f"{services.ingest}/scans")  # curl -X POST: no body, no type
    json_post = post(f"{services.ingest}/scans", headers=JSON, content=b'{"priority": 1}')
    cancelled = post(f"{services.ingest}/scans/{queued.text}/cancel")

    assert queued.status_code == 200 and queued.headers["content-type"].startswith("text/plain")
    assert typed.status_code == 200
    assert [bare_post.status_code, json_post.status_code, cancelled.status_code] == [202, 202, 200]
    assert services.total() == before + 4


def test_a_body_needs_a_json_content_type(services: Services) -> None:
    missing = post(f"{services.ingest}/scans", content=b"{}")
    text = post(f"{services.ingest}/scans", headers={"Content-Type": "text/plain"}, content=b"{}")
    problem_json = post(f"{services.ingest}/scans", headers={"Content-Type": "application/problem+json"}, content=b"{}")

    assert [missing.status_code, text.status_code, problem_json.status_code] == [415, 415, 202]
    assert "Content-Type: application/json" in missing.json()["error"]["message"]


def test_an_empty_browser_post_must_declare_json(services: Services) -> None:
    scan_id = queue_one(services)
    dashboard = services.status

    untyped = post(f"{services.ingest}/scans/{scan_id}/cancel", headers={"Origin": dashboard})
    typed = post(f"{services.ingest}/scans/{scan_id}/cancel", headers={"Origin": dashboard, **JSON})

    assert (untyped.status_code, error_code(untyped)) == (415, "unsupported_media_type")
    assert typed.status_code == 200 and typed.json()["status"] == "Cancelled"


def test_the_dashboard_and_configured_origins_may_submit(services: Services) -> None:
    for origin in (services.status, services.status.replace("127.0.0.1", "localhost"), CONSOLE):
        response = post(f"{services.ingest}/scans", headers={"Origin": origin, **JSON}, content=b"{}")
        assert response.status_code == 202, (origin, response.text)
        assert response.headers.get("access-control-allow-origin") in (origin, None)


def test_a_foreign_host_name_is_refused_against_dns_rebinding(services: Services) -> None:
    port = services.status.rsplit(":", 1)[1]
    for base in (services.status, services.ingest):
        rebound = httpx.get(f"{base}/stats", headers={"Host": f"evil.example:{port}"}, timeout=5.0)
        assert (rebound.status_code, error_code(rebound)) == (400, "host_not_allowed")
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert httpx.get(f"{services.status}/stats", headers={"Host": host}, timeout=5.0).status_code == 200


def test_reading_stays_open_to_other_sites(services: Services) -> None:
    # Reads change nothing; what another site may read is CORS's business (no Access-Control-Allow-Origin for it).
    response = httpx.get(f"{services.status}/stats", headers={"Origin": EVIL, **CROSS_SITE_GET}, timeout=5.0)

    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
