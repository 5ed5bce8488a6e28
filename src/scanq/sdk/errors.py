"""Everything the client raises, one tree under ``ScanqClientError``.

ScanqClientError
 ├── ScanqApiError           the service answered with an error (status_code, code, message)
 │    ├── InvalidRequest     400, 413, 415, 422: the request was refused as it is; nothing was written
 │    ├── Unauthorized       401: no token, or an unknown, revoked or expired one
 │    ├── Forbidden          403: the token lacks the scope (or names another tenant)
 │    ├── NotFound           404: no scan with that id (another tenant's scans are not found either)
 │    ├── Conflict           409: the scan already finished, or an idempotency key was reused for another request
 │    ├── QuotaExceeded      429: the tenant is over a quota; ``retry_after_s`` says when to come back
 │    └── Unavailable        503: the service cannot reach its store right now
 ├── ScanqConnectionError    no answer: the connection failed or timed out (``error`` is httpx's exception)
 └── WaitTimeout             ``wait`` gave up before the scan finished (``scan``: how it was last seen)

The client has already retried what was safe to retry before it raises
(``retries``); ``code`` is the service's stable error code (``scan_finished``,
``quota_exceeded``, ``store_unavailable``…; see the OpenAPI document).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import msgspec

from scanq.sdk.models import Scan


class ScanqClientError(Exception):
    """The scanq client failed."""


class ScanqApiError(ScanqClientError):
    """The service answered with an error.

    Attributes:
        status_code: the HTTP status.
        code: the service's error code (``not_found``, ``quota_exceeded``…; ``http_<status>`` when it sent none).
        message: the service's message for people.
        method, url: the request that was refused.
    """

    def __init__(self, status_code: int, code: str, message: str, *, method: str = "", url: str = "") -> None:
        super().__init__(f"{method} {url}: {status_code} {message}" if method else f"{status_code} {message}")
        self.status_code = status_code
        self.code = code
        self.message = message
        self.method = method
        self.url = url


class InvalidRequest(ScanqApiError):
    """The request was refused as it is (400, 413, 415, 422): fix it before sending it again."""


class Unauthorized(ScanqApiError):
    """401: send a valid API token (``token=`` or ``SCANQ_TOKEN``)."""


class Forbidden(ScanqApiError):
    """403: the token does not allow this."""


class NotFound(ScanqApiError):
    """404: no such scan (or route)."""


class Conflict(ScanqApiError):
    """409: the scan already finished, or the idempotency key was used for a different request."""


class QuotaExceeded(ScanqApiError):
    """429: the tenant is over its quota; ``retry_after_s`` is the service's ``Retry-After`` (None: not sent)."""

    def __init__(
        self, status_code: int, code: str, message: str, *, method: str = "", url: str = "", retry_after_s: float | None
    ) -> None:
        super().__init__(status_code, code, message, method=method, url=url)
        self.retry_after_s = retry_after_s


class Unavailable(ScanqApiError):
    """503: the service cannot reach its store right now; try again later."""


class ScanqConnectionError(ScanqClientError):
    """No answer: the connection failed, broke or timed out.

    Attributes:
        method, url: the request.
        error: httpx's exception (``httpx.ConnectError``: nothing was sent; others: the request may have arrived).
    """

    def __init__(self, method: str, url: str, error: httpx.TransportError) -> None:
        super().__init__(f"{method} {url} failed: {str(error) or type(error).__name__}")
        self.method = method
        self.url = url
        self.error = error


class WaitTimeout(ScanqClientError):
    """``wait`` reached its timeout before the scan finished; ``scan`` is how it was last seen."""

    def __init__(self, scan: Scan, timeout_s: float) -> None:
        super().__init__(f"scan {scan.scan_id} is still {scan.status} after {timeout_s:g}s")
        self.scan = scan
        self.timeout_s = timeout_s


_BY_STATUS: dict[int, type[ScanqApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidRequest,
    503: Unavailable,
}


def retry_after_s(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """The response's ``Retry-After`` in seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def error_from_response(response: httpx.Response) -> ScanqApiError:
    """The exception for an error answer: its class by status, its code and message from the body."""
    status = response.status_code
    code = f"http_{status}"
    message = response.text.strip() or response.reason_phrase
    try:
        body: Any = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            message = str(error["message"])
            code = str(error.get("code", code))
        elif body.get("status") == "Not Found":
            # The scan 404 keeps the original system's shape: {"scan_id": ..., "status": "Not Found"}.
            message = f"no scan with id {body.get('scan_id')!r}"
            code = "not_found"
    method, url = response.request.method, str(response.request.url)
    if status == 429:
        return QuotaExceeded(status, code, message, method=method, url=url, retry_after_s=retry_after_s(response))
    return _BY_STATUS.get(status, ScanqApiError)(status, code, message, method=method, url=url)


__all__ = [
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "QuotaExceeded",
    "ScanqApiError",
    "ScanqClientError",
    "ScanqConnectionError",
    "Unauthorized",
    "Unavailable",
    "WaitTimeout",
    "error_from_response",
    "retry_after_s",
]
