"""What a supervisor prints: its start banner, its children's lines labelled with their names, why one stopped.

Text lines get a ``[name] `` prefix; with ``--log-format json`` every line,
the supervisor's and each child's, stays one JSON object with a ``process`` key.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from scanq.config import Settings
from scanq.scanners.mock import MockSettings
from scanq.supervisor.plan import INGEST, STATUS, Service


def label_line(name: str, line: bytes, *, is_json: bool) -> bytes:
    """Mark one line of a child's output with the child's name, ending in a newline.

    Text lines get a ``[name] `` prefix. With ``--log-format json`` a JSON
    object gets a ``"process"`` key instead, so every line stays valid JSON.
    """
    if not line.endswith(b"\n"):
        line += b"\n"
    if is_json and line.startswith(b"{") and line.rstrip().endswith(b"}"):
        rest = line[1:]
        separator = b"" if rest.lstrip().startswith(b"}") else b", "
        return b'{"process": ' + json.dumps(name).encode() + separator + rest
    return b"[" + name.encode() + b"] " + line


def own_line(name: str, message: str, *, level: str, is_json: bool, logger: str) -> bytes:
    """One line the supervisor itself prints, as ``[name] message`` or a JSON log line."""
    if not is_json:
        return f"[{name}] {message}\n".encode()
    entry = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "level": level}
    entry |= {"logger": logger, "process": name, "message": message}
    return json.dumps(entry).encode() + b"\n"


def reason(line: bytes) -> str:
    """What a child said last, as one line: click's ``Error: …`` or a JSON log line's message."""
    text = line.decode(errors="replace").strip()
    if text.startswith("{"):
        try:
            message = json.loads(text).get("message")
        except (ValueError, AttributeError):
            message = None
        if isinstance(message, str):
            text = message
    return text.removeprefix("Error: ") or "it exited at once"


def redact(url: str) -> str:
    """The URL without a password, for printing."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def banner(settings: Settings, *, only: Service | None = None) -> list[str]:
    """The lines a supervisor starts with: where each service listens, the workers, how to stop."""
    s = settings
    if only is not None:
        return [f"http://{s.host}:{only.port(s)}{_shared(s, only)}; Ctrl-C stops them all"]
    mock = s.plugins[MockSettings]
    low, high, rate = mock.min_sleep, mock.max_sleep, mock.failure_rate
    lines = [
        f"ingest  http://{s.host}:{s.ingest_port}   (GET / queues a scan{_shared(s, INGEST)})",
        f"status  http://{s.host}:{s.status_port}   (GET /<id>, /scans, /stats{_shared(s, STATUS)})",
        f"workers {s.workers} x concurrency {s.concurrency}, store {redact(s.database_url)}",
        f"mock scanner: sleeps {low:g}-{high:g} s, fails {rate:.0%} of scans "
        f"(MIN_SLEEP={low:g} MAX_SLEEP={high:g} CHANCE_OF_FAILURE={rate:g})",
    ]
    if s.metrics_port:
        lines.append(f"worker metrics http://{s.host}:{s.metrics_port}..{s.metrics_port + s.workers - 1}/metrics")
    return [*lines, "Ctrl-C stops everything"]


def _shared(settings: Settings, service: Service) -> str:
    count = service.processes(settings)
    return f"; {count} processes, one socket" if count > 1 else ""


__all__ = ["banner", "label_line", "own_line", "reason", "redact"]
