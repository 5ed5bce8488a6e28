"""A real webhook receiver for tests: a threaded HTTP server that verifies every delivery with ``standardwebhooks``.

The verifier is the Standard Webhooks reference library from PyPI, not code of
ours: a delivery counts only if its signature verifies with one of the
receiver's secrets. The receiver can be stopped and started again on the same
port (an endpoint that is down refuses connections), and can be told to answer
an error status instead of 204.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class Received:
    """One verified delivery."""

    webhook_id: str
    body: dict[str, Any]
    received_at: float  # time.time() when it arrived
    path: str = "/hook"  # the request's path (callbacks of different scans go to different paths)


@dataclass
class WebhookReceiver:
    """Collects verified deliveries on ``127.0.0.1:port``; ``rejected`` counts those that failed verification."""

    port: int
    secrets: list[str] = field(default_factory=list)
    answer: int = 204
    received: list[Received] = field(default_factory=list)
    rejected: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("content-length", "0")), MAX_BODY_BYTES)
                body = self.rfile.read(length)
                receiver._take(body, {k.lower(): v for k, v in self.headers.items()}, path=self.path)
                self.send_response(receiver.answer)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def url_for(self, path: str) -> str:
        """The receiver's URL with another path."""
        return f"http://127.0.0.1:{self.port}{path}"

    def _take(self, body: bytes, headers: dict[str, str], *, path: str = "/hook") -> None:
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            with self._lock:
                self.received.append(
                    Received(
                        webhook_id=headers["webhook-id"], body=json.loads(body), received_at=time.time(), path=path
                    )
                )
            return
        with self._lock:
            self.rejected += 1

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def per_id(self) -> Counter[str]:
        """How many times each event id arrived (at-least-once: duplicates are allowed, losses are not)."""
        return Counter(item.webhook_id for item in self.snapshot())

    def scans_by_type(self) -> dict[str, set[str]]:
        """Scan ids received per event type."""
        found: dict[str, set[str]] = {}
        for item in self.snapshot():
            found.setdefault(item.body["type"], set()).add(item.body["data"]["scan_id"])
        return found

    def wait_for(self, done: Callable[[WebhookReceiver], bool], *, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not done(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout_s:.0f}s ({len(self.snapshot())} received)")
            time.sleep(0.1)


@contextmanager
def running_receiver(port: int, *secrets: str) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(port=port, secrets=list(secrets))
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
