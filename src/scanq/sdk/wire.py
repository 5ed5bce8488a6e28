"""What the sync and the async client share, free of I/O: where to send, what to send, when to try again.

Each operation is built here as a ``Call`` (method, URL, query, body, headers,
and whether sending it twice is harmless); ``Client`` and ``AsyncClient`` only
send calls, sleep between tries and decode the answers with ``decode``. So the
two clients cannot drift apart in what they ask or in when they retry.

When a call is tried again (``RetryPolicy``):

- a 429 (a quota): always, since nothing was written; after the service's
  ``Retry-After`` when it sent one, else after a backoff. A ``Retry-After``
  longer than ``max_retry_after_s`` is not waited for: ``QuotaExceeded`` is
  raised at once with ``retry_after_s``, for the caller to decide.
- a 503 (the store is unreachable) and a connection that broke or timed out
  after the request went out: only a call that is safe to repeat (reads, cancel,
  a submission carrying an ``Idempotency-Key``), after a backoff.
- a connection that could not be opened (nothing was sent): always, after a backoff.

A backoff doubles from ``backoff_base_s`` up to ``backoff_max_s``, with jitter
(uniform in the upper half, so two clients do not retry in step).
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from scanq.sdk.errors import ScanqApiError, error_from_response, retry_after_s
from scanq.sdk.models import BatchRequest, ScanEvent, SubmitRequest, WebhookRequest

T = TypeVar("T")

DEFAULT_INGEST_URL = "http://127.0.0.1:10550"
DEFAULT_STATUS_URL = "http://127.0.0.1:10551"
INGEST_URL_ENV = "SCANQ_INGEST_URL"
STATUS_URL_ENV = "SCANQ_STATUS_URL"
TOKEN_ENV = "SCANQ_TOKEN"
IDEMPOTENCY_HEADER = "Idempotency-Key"
JSON_HEADERS = {"Content-Type": "application/json"}
USER_AGENT = f"scanq-python httpx/{httpx.__version__}"
EVENT_STREAM = "text/event-stream"
LAST_EVENT_ID_HEADER = "Last-Event-ID"
STREAM_HEADERS = {"Accept": EVENT_STREAM}
# The service sends a keep-alive every 15 s: a stream silent for this long is dead.
STREAM_READ_TIMEOUT_S = 45.0
# A stream that breaks is opened again (after the last event read) this many times before polling takes over.
STREAM_RECONNECTS = 3

# Raised before a byte of the request went out: trying again cannot repeat it.
NOT_SENT_ERRORS: tuple[type[httpx.TransportError], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# May come after the request arrived (a timeout, a reset, a broken answer): tried again only when repeatable.
BROKEN_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True, kw_only=True)
class Call:
    """One request to make.

    ``repeatable``: sending it twice does no harm (reads, cancel, a submission with an idempotency key).
    """

    method: str
    url: str
    params: Mapping[str, str | int | list[str]] | None = None
    body: bytes | None = None
    headers: dict[str, str] | None = None
    repeatable: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how long to retry (see the module docstring for what is retried).

    Args:
        retries: tries after the first (0: never retry).
        backoff_base_s: the first backoff's ceiling; it doubles on each failure.
        backoff_max_s: the largest backoff.
        max_retry_after_s: the longest ``Retry-After`` waited for.
    """

    retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 60.0

    def after_error(self, call: Call, error: httpx.TransportError, failures: int) -> float | None:
        """Seconds to wait before trying ``call`` again after ``error`` (its ``failures``-th), or None: give up."""
        if failures > self.retries:
            return None
        if isinstance(error, NOT_SENT_ERRORS) or (call.repeatable and isinstance(error, BROKEN_ERRORS)):
            return self.backoff(failures)
        return None

    def after_response(self, call: Call, response: httpx.Response, failures: int) -> float | None:
        """Seconds to wait before trying ``call`` again after an error answer, or None: give up."""
        if failures > self.retries:
            return None
        status = response.status_code
        if status != 429 and not (status == 503 and call.repeatable):
            return None
        wait_s = retry_after_s(response)
        if wait_s is None:
            return self.backoff(failures)
        return wait_s if wait_s <= self.max_retry_after_s else None

    def backoff(self, failures: int) -> float:
        """The wait after the ``failures``-th failure in a row: doubling, capped, jittered in its upper half."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** min(max(failures - 1, 0), 30))
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoints:
    """The two services' base URLs, and every operation as a ``Call`` on them."""

    ingest_url: str
    status_url: str

    @classmethod
    def resolve(cls, ingest_url: str | None, status_url: str | None) -> Endpoints:
        """The URLs given, else ``SCANQ_INGEST_URL`` / ``SCANQ_STATUS_URL``, else the local defaults."""
        ingest = ingest_url or os.environ.get(INGEST_URL_ENV) or DEFAULT_INGEST_URL
        status = status_url or os.environ.get(STATUS_URL_ENV) or DEFAULT_STATUS_URL
        return cls(ingest_url=ingest.rstrip("/"), status_url=status.rstrip("/"))

    def submit(self, request: SubmitRequest, *, idempotency_key: str | None) -> Call:
        """``POST /scans``; repeatable only with an idempotency key (the service then answers the same scan)."""
        headers = dict(JSON_HEADERS)
        if idempotency_key is not None:
            headers[IDEMPOTENCY_HEADER] = idempotency_key
        return Call(
            method="POST",
            url=f"{self.ingest_url}/scans",
            body=_encoder.encode(request),
            headers=headers,
            repeatable=idempotency_key is not None,
        )

    def submit_batch(self, requests: list[SubmitRequest]) -> Call:
        """``POST /scans/batch``: never repeatable (the service takes no idempotency key for a batch)."""
        body = _encoder.encode(BatchRequest(scans=requests))
        return Call(
            method="POST", url=f"{self.ingest_url}/scans/batch", body=body, headers=JSON_HEADERS, repeatable=False
        )

    def get(self, scan_id: str) -> Call:
        """``GET /scans/{scan_id}``."""
        return Call(method="GET", url=f"{self.status_url}/scans/{_segment(scan_id)}")

    def page(self, *, status: str | None, tenant: str | None, limit: int, cursor: str | None) -> Call:
        """``GET /scans``: one page (a cursor carries its status filter: another ``status`` with it is refused)."""
        params: dict[str, str | int] = {"limit": limit}
        if status is not None:
            params["status"] = status
        if cursor is not None:
            params["cursor"] = cursor
        if tenant is not None:
            params["tenant"] = tenant
        return Call(method="GET", url=f"{self.status_url}/scans", params=params)

    def stats(self, *, tenant: str | None) -> Call:
        """``GET /stats``."""
        return Call(method="GET", url=f"{self.status_url}/stats", params=None if tenant is None else {"tenant": tenant})

    def cancel(self, scan_id: str) -> Call:
        """``POST /scans/{scan_id}/cancel``: repeatable (cancelling a Cancelled scan answers the scan again)."""
        return Call(method="POST", url=f"{self.ingest_url}/scans/{_segment(scan_id)}/cancel")

    # -- server-sent events (status service) ---------------------------------------------------

    def scan_events(self, scan_id: str, *, last_event_id: str | None = None) -> Call:
        """``GET /scans/{scan_id}/events``: the scan's events until it ends (after ``last_event_id``)."""
        return Call(
            method="GET",
            url=f"{self.status_url}/scans/{_segment(scan_id)}/events",
            headers=_stream_headers(last_event_id),
        )

    def events(self, *, statuses: Collection[str] | None, tenant: str | None, last_event_id: str | None = None) -> Call:
        """``GET /events``: every transition the token may read, from now (or after ``last_event_id``)."""
        params: dict[str, str | int | list[str]] = {}
        if statuses:
            params["status"] = sorted(statuses)
        if tenant is not None:
            params["tenant"] = tenant
        return Call(
            method="GET", url=f"{self.status_url}/events", params=params or None, headers=_stream_headers(last_event_id)
        )

    # -- webhooks (ingest service) -------------------------------------------------------------

    def create_webhook(self, request: WebhookRequest) -> Call:
        """``POST /webhooks``: not repeatable (a second try would register a second endpoint)."""
        return Call(
            method="POST",
            url=f"{self.ingest_url}/webhooks",
            body=_encoder.encode(request),
            headers=JSON_HEADERS,
            repeatable=False,
        )

    def list_webhooks(self, *, tenant: str | None) -> Call:
        """``GET /webhooks``."""
        return Call(
            method="GET", url=f"{self.ingest_url}/webhooks", params=None if tenant is None else {"tenant": tenant}
        )

    def get_webhook(self, endpoint_id: str) -> Call:
        """``GET /webhooks/{endpoint_id}``."""
        return Call(method="GET", url=self._webhook(endpoint_id))

    def delete_webhook(self, endpoint_id: str) -> Call:
        """``DELETE /webhooks/{endpoint_id}``: repeatable (a repeat after a lost answer is a 404, nothing worse)."""
        return Call(method="DELETE", url=self._webhook(endpoint_id))

    def rotate_webhook_secret(self, endpoint_id: str) -> Call:
        """``POST /webhooks/{endpoint_id}/rotate-secret``: not repeatable (a repeat would drop the secret it made)."""
        return Call(method="POST", url=f"{self._webhook(endpoint_id)}/rotate-secret", repeatable=False)

    def webhook_deliveries(self, endpoint_id: str, *, status: str | None, limit: int | None) -> Call:
        """``GET /webhooks/{endpoint_id}/deliveries``."""
        params: dict[str, str | int | list[str]] = {}
        if status is not None:
            params["status"] = status
        if limit is not None:
            params["limit"] = limit
        return Call(method="GET", url=f"{self._webhook(endpoint_id)}/deliveries", params=params or None)

    def retry_delivery(self, endpoint_id: str, event_id: str) -> Call:
        """``POST /webhooks/{endpoint_id}/deliveries/{event_id}/retry``: repeatable (it only makes it due now)."""
        return Call(method="POST", url=f"{self._webhook(endpoint_id)}/deliveries/{_segment(event_id)}/retry")

    def _webhook(self, endpoint_id: str) -> str:
        return f"{self.ingest_url}/webhooks/{_segment(endpoint_id)}"


class EventStreamParser:
    """The lines of a ``text/event-stream`` in, scanq's events out.

    Feed it each line (without its line break); it answers a ``ScanEvent`` when a blank line ends an event
    with data, else None (comments such as the keep-alive, ``retry:`` and unknown fields are skipped).
    A ``data`` that is not a scan event raises ``msgspec.DecodeError`` / ``msgspec.ValidationError``.
    """

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> ScanEvent | None:
        if not line:
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return msgspec.json.decode(data, type=ScanEvent)
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value.removeprefix(" "))
        return None


def is_event_stream(response: httpx.Response) -> bool:
    """True for a 200 whose body is a ``text/event-stream`` (anything else: not a stream to follow)."""
    content_type = response.headers.get("content-type", "")
    return response.status_code == 200 and content_type.split(";", 1)[0].strip().lower() == EVENT_STREAM


def check_event_stream(response: httpx.Response, call: Call) -> None:
    """Raise unless ``response`` opens the stream ``call`` asked for: an error answer (its body read) as every
    call does (``Unauthorized``…), any other answer but a ``text/event-stream`` as ``bad_response``."""
    if not response.is_success:
        raise error_from_response(response)
    if not is_event_stream(response):
        why = f"not an event stream: {response.headers.get('content-type')}"
        raise ScanqApiError(response.status_code, "bad_response", why, method=call.method, url=call.url)


def stream_timeout(timeout_s: float, remaining_s: float | None) -> httpx.Timeout:
    """A stream's timeouts: ``timeout_s`` to connect and send, and a read timeout that outlasts the keep-alive
    (or the time left before a deadline, when that is shorter)."""
    read_s = STREAM_READ_TIMEOUT_S if remaining_s is None else max(0.001, min(STREAM_READ_TIMEOUT_S, remaining_s))
    return httpx.Timeout(timeout_s, read=read_s)


def resolve_token(token: str | None) -> str | None:
    """The token given, else ``SCANQ_TOKEN``; an empty one means none."""
    chosen = os.environ.get(TOKEN_ENV) if token is None else token
    return chosen or None


def default_headers(token: str | None) -> dict[str, str]:
    """The headers of every request: who we are, and the bearer token if there is one."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def submission(
    *,
    target: str | None,
    scanner: str | None,
    options: Mapping[str, Any] | None,
    priority: int | None,
    max_attempts: int | None,
    callback_url: str | None = None,
) -> SubmitRequest:
    """One scan to queue, from ``submit``'s arguments."""
    return SubmitRequest(
        target=target,
        scanner=scanner,
        options=None if options is None else dict(options),
        priority=priority,
        max_attempts=max_attempts,
        callback_url=callback_url,
    )


def submissions(items: Iterable[SubmitRequest | Mapping[str, Any]]) -> list[SubmitRequest]:
    """``submit_batch``'s items as requests; ``ValueError`` naming the first item that is not one."""
    requests: list[SubmitRequest] = []
    for index, item in enumerate(items):
        if isinstance(item, SubmitRequest):
            requests.append(item)
            continue
        try:
            requests.append(msgspec.convert(item, SubmitRequest))
        except msgspec.ValidationError as exc:
            raise ValueError(f"scan {index} of the batch: {exc}") from None
    return requests


def new_idempotency_key() -> str:
    """A fresh key, so that a retried submission cannot store a second scan."""
    return str(uuid.uuid4())


def decode(response: httpx.Response, into: type[T]) -> T:
    """A successful answer's body as ``into``; a body that is not one is an ``ScanqApiError`` (``bad_response``)."""
    try:
        return msgspec.json.decode(response.content, type=into)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        request = response.request
        raise ScanqApiError(
            response.status_code,
            "bad_response",
            f"the answer is not what scanq sends: {exc}",
            method=request.method,
            url=str(request.url),
        ) from None


def _stream_headers(last_event_id: str | None) -> dict[str, str]:
    headers = dict(STREAM_HEADERS)
    if last_event_id is not None:
        headers[LAST_EVENT_ID_HEADER] = last_event_id
    return headers


def _segment(scan_id: str) -> str:
    # A scan id is a UUID; anything else is sent escaped, so it reaches the service as one path segment (a 404).
    return quote(scan_id, safe="")


__all__ = [
    "DEFAULT_INGEST_URL",
    "DEFAULT_STATUS_URL",
    "IDEMPOTENCY_HEADER",
    "Call",
    "Endpoints",
    "EventStreamParser",
    "RetryPolicy",
    "check_event_stream",
    "decode",
    "default_headers",
    "is_event_stream",
    "new_idempotency_key",
    "resolve_token",
    "stream_timeout",
    "submission",
    "submissions",
]
