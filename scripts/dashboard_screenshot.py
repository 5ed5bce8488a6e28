"""Make docs/dashboard.png: `scanq up` on a throwaway SQLite file, a few hundred mock scans, one screenshot.

Usage: .venv/bin/python scripts/dashboard_screenshot.py [OUTPUT.png]

The page is opened before the scans arrive, so the throughput chart (which
differences /stats counts in the browser) has a minute of history.
Needs Debian's chromium at /usr/bin/chromium (scripts/ensure-chromium.sh).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

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
WAVES = 8
WAVE_SIZE = 60
WAVE_INTERVAL_S = 5.0
CANCELLED = 6
READY_TIMEOUT_S = 20.0
TARGETS = ("example.com", "api.example.com", "10.0.0.0/30", "shop.example.org", None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} never became ready")


def wave(number: int) -> list[dict[str, object]]:
    scans: list[dict[str, object]] = []
    for i in range(WAVE_SIZE):
        scan: dict[str, object] = {"priority": 5 if i % 10 == 0 else 0}
        target = TARGETS[(number + i) % len(TARGETS)]
        if target is not None:
            scan["target"] = target
        scans.append(scan)
    return scans


def main() -> None:
    output = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png").resolve()
    ingest_port, status_port = free_port(), free_port()
    ingest, status = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{status_port}"
    with tempfile.TemporaryDirectory() as directory:
        env = {
            **os.environ,
            "SCANQ_DATABASE_URL": f"sqlite:///{directory}/scanq.db",
            "SCANQ_INGEST_PORT": str(ingest_port),
            "SCANQ_STATUS_PORT": str(status_port),
            "SCANQ_INGEST_URL": ingest,
            "SCANQ_STATUS_URL": status,
            "SCANQ_WORKERS": "2",
            "SCANQ_CONCURRENCY": "8",
            "SCANQ_MOCK_MIN_SLEEP": "0.5",
            "SCANQ_MOCK_MAX_SLEEP": "4",
            "SCANQ_MOCK_FAILURE_RATE": "0.08",
            "SCANQ_SHUTDOWN_SECONDS": "1",
        }
        up = subprocess.Popen(
            [sys.executable, "-m", "scanq", "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_ready(f"{ingest}/readyz")
            wait_ready(f"{status}/readyz")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1050})
                page.goto(f"{status}/")
                # More arrives than two workers finish: the screenshot shows a backlog draining.
                for number in range(WAVES):
                    answer = httpx.post(f"{ingest}/scans/batch", json={"scans": wave(number)}, timeout=10.0)
                    answer.raise_for_status()
                    if number == WAVES // 2:
                        for scan in answer.json()["scans"][-CANCELLED:]:
                            httpx.post(f"{ingest}/scans/{scan['scan_id']}/cancel", timeout=10.0)
                    time.sleep(WAVE_INTERVAL_S)
                done = httpx.get(f"{status}/scans", params={"status": "Complete", "limit": 1}, timeout=10.0).json()
                page.fill("#lookup-id", done["scans"][0]["scan_id"])
                page.click("#lookup-button")
                page.wait_for_selector("#detail:not([hidden])")
                page.wait_for_timeout(2500)
                page.screenshot(path=str(output))
                browser.close()
        finally:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=15)
    print(output)


if __name__ == "__main__":
    main()
