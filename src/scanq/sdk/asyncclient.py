"""``AsyncClient``: the scanq API for asyncio code (the CLI is built on it)."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from contextlib import aclosing, asynccontextmanager
from types import TracebackType
from typing import Any, Self

import httpx
import msgspec

from scanq.sdk.errors import ScanqConnectionError, WaitTimeout, error_from_response
from scanq.sdk.models import BatchAnswer, Page, Scan, ScanEvent, Stats, SubmitRequest
from scanq.sdk.webhooks import AsyncWebhooks
from scanq.sdk.wire import (
    STREAM_RECONNECTS,
    Call,
    Endpoints,
    EventStreamParser,
    RetryPolicy,
    check_event_stream,
    decode,
    default_headers,
    is_event_stream,
    new_idempotency_key,
    resolve_token,
    stream_timeout,
    submission,
    submissions,
)

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_POLL_S = 0.5
DEFAULT_PAGE_SIZE = 100


class AsyncClient:
    """A client of the scanq ingest and status services, for asyncio.

    ::

        async with scanq.AsyncClient(token="scanq_…") as client:
            scan = await client.submit(target="example.com", scanner="tls")
            done = await client.wait(scan.scan_id, timeout_s=300)

    Args:
        ingest_url: the ingest service (default ``SCANQ_INGEST_URL``, else ``http://127.0.0.1:10550``).
        status_url: the status service (default ``SCANQ_STATUS_URL``, else ``http://127.0.0.1:10551``);
            against ``scanq api`` (both in one process) pass its URL as both.
        token: the API token sent as ``Authorization: Bearer`` (default ``SCANQ_TOKEN``; ``""``: none).
        timeout_s: connect, read and write timeout of one request.
        retries: how many times a failed request is tried again: on 429 (after ``Retry-After``), on 503 and on
            connection failures, with exponential backoff and jitter; what is safe to repeat is in
            ``scanq.sdk.wire``. With ``retries`` above 0, ``submit`` sends an idempotency key of its own when
            given none, so a retried submission never stores a second scan.
        retry_policy: the backoff in full (overrides ``retries``).
        transport: an httpx transport (tests: ``httpx.MockTransport``, ``httpx.ASGITransport``).
        sleep: what waits between retries and polls (default ``asyncio.sleep``; tests pass one that records).
    """

    def __init__(
        self,
        ingest_url: str | None = None,
        status_url: str | None = None,
        *,
        token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = 3,
        retry_policy: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.endpoints = Endpoints.resolve(ingest_url, status_url)
        self.retry_policy = retry_policy or RetryPolicy(retries=retries)
        self._sleep: Callable[[float], Awaitable[None]] = sleep or asyncio.sleep
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(
            timeout=timeout_s, headers=default_headers(resolve_token(token)), transport=transport
        )
        self.webhooks = AsyncWebhooks(self.endpoints, self._send)
        """Webhook endpoints and their deliveries (``await client.webhooks.create(url)``…)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections (``async with`` does it)."""
        await self._http.aclose()

    # -- submitting ----------------------------------------------------------------------------

    async def submit(
        self,
        target: str | None = None,
        scanner: str | None = None,
        options: Mapping[str, Any] | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
    ) -> Scan:
        """Queue one scan (``POST /scans``) and return it as stored: Accepted.

        Arguments left None take the service's defaults. ``idempotency_key``: the same key again answers the
        scan stored the first time, as it is now (a different request with it is ``Conflict``); the client
        makes one up when it may retry and none is given. ``callback_url``: the scan's end is also POSTed
        there, signed with the secret of ``webhooks.get("callbacks")`` (``InvalidRequest`` for a URL the
        service refuses, as for a webhook endpoint).
        """
        request = submission(
            target=target,
            scanner=scanner,
            options=options,
            priority=priority,
            max_attempts=max_attempts,
            callback_url=callback_url,
        )
        if idempotency_key is None and self.retry_policy.retries > 0:
            idempotency_key = new_idempotency_key()
        call = self.endpoints.submit(request, idempotency_key=idempotency_key)
        return decode(await self._send(call), Scan)

    async def submit_batch(self, scans: Iterable[SubmitRequest | Mapping[str, Any]]) -> builtins.list[Scan]:
        """Queue several scans in one ``POST /scans/batch``: all are stored, or none. Scans in request order.

        Each item is a ``SubmitRequest`` or a mapping with its keys (``{"target": "example.com"}``). The
        service caps a batch (``--max-batch``, 1000 by default; a larger one is ``InvalidRequest``).

        A batch carries no idempotency key, so it is retried only when nothing can have been stored: after
        a 429 or a connection that could not be opened. A connection that breaks after the batch went out,
        or a 503, raises at once: the batch may or may not have been stored, and sending it again could
        store it twice. Submit one scan at a time with ``submit`` where that matters.
        """
        requests = submissions(scans)
        if not requests:
            return []
        return decode(await self._send(self.endpoints.submit_batch(requests)), BatchAnswer).scans

    async def cancel(self, scan_id: str) -> Scan:
        """Cancel a scan: Cancelled at once when it waits; a Running scan gets ``cancel_requested`` and stops soon.

        ``Conflict`` when it already finished (Complete or Error); cancelling a Cancelled scan answers it again.
        """
        return decode(await self._send(self.endpoints.cancel(scan_id)), Scan)

    # -- reading -------------------------------------------------------------------------------

    async def get(self, scan_id: str) -> Scan:
        """One scan with its history (``NotFound`` for an unknown id, or another tenant's)."""
        return decode(await self._send(self.endpoints.get(scan_id)), Scan)

    async def list_page(
        self,
        *,
        status: str | None = None,
        tenant: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Page:
        """One page of scans, newest first; pass its ``next_cursor`` as ``cursor`` for the next one."""
        call = self.endpoints.page(status=status, tenant=tenant, limit=limit, cursor=cursor)
        return decode(await self._send(call), Page)

    async def list(
        self, status: str | None = None, tenant: str | None = None, page_size: int = DEFAULT_PAGE_SIZE
    ) -> AsyncIterator[Scan]:
        """Every scan, newest first, page after page (``async for scan in client.list(status="Error")``).

        ``tenant``: an admin token's filter (other tokens see their own tenant only). Pages are fetched as
        the iteration reaches them; scans submitted meanwhile are newer than the first page and not listed.
        """
        page = await self.list_page(status=status, tenant=tenant, limit=page_size)
        while True:
            for scan in page.scans:
                yield scan
            if page.next_cursor is None:
                return
            # The cursor carries the status filter: the next pages name only the cursor.
            page = await self.list_page(tenant=tenant, limit=page_size, cursor=page.next_cursor)

    async def stats(self, tenant: str | None = None) -> Stats:
        """Counts by status, the oldest waiting scan's age and the busiest tenants (``tenant``: an admin's filter)."""
        return decode(await self._send(self.endpoints.stats(tenant=tenant)), Stats)

    async def wait(self, scan_id: str, timeout_s: float | None = None, poll_s: float = DEFAULT_POLL_S) -> Scan:
        """Wait until the scan is Complete, Error or Cancelled, and return it (findings in ``result``).

        Follows the scan's event stream (``GET /scans/{id}/events``, server-sent events) and, once it says
        the scan ended, answers the scan as ``get`` reads it. A stream that breaks is opened again after the
        last event read; when there is no stream to follow (a service without it, a proxy in the way, or
        one that keeps breaking), this polls ``GET /scans/{id}`` every ``poll_s`` instead.

        Raises:
            WaitTimeout: ``timeout_s`` passed first (its ``scan`` is the last one seen); the scan keeps running.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        done = await self._wait_on_stream(scan_id, deadline=deadline, pause_s=poll_s)
        if done is not None:
            return done
        last: Scan | None = None
        async with aclosing(self._sightings(scan_id, poll_s=poll_s, deadline=deadline)) as sightings:
            async for scan in sightings:
                if scan.is_terminal:
                    return scan
                last = scan
        assert last is not None and timeout_s is not None  # the sightings end only at the deadline
        raise WaitTimeout(last, timeout_s)

    @asynccontextmanager
    async def events(
        self,
        statuses: Collection[str] | None = None,
        tenant: str | None = None,
        last_event_id: str | None = None,
    ) -> AsyncIterator[AsyncIterator[ScanEvent]]:
        """Follow every transition the token may read (``GET /events``), from the moment the block is entered.

        ::

            async with client.events(statuses=["Complete", "Error", "Cancelled"]) as events:
                async for event in events:
                    print(event.scan_id, event.status)

        ``statuses``: only transitions to these; ``tenant``: an admin's filter; ``last_event_id``: resume
        after that event instead of starting now. The iteration ends only when the service ends the stream
        (it stops); a connection that breaks raises ``ScanqConnectionError`` (resume after the last
        ``event_id``). A refusal raises as every call does (``Unauthorized``, ``Forbidden``…).
        """
        call = self.endpoints.events(statuses=statuses, tenant=tenant, last_event_id=last_event_id)
        try:
            async with self._http.stream(
                call.method,
                call.url,
                params=call.params,
                headers=call.headers,
                timeout=stream_timeout(self._timeout_s, None),
            ) as response:
                if not response.is_success:
                    await response.aread()
                check_event_stream(response, call)
                yield _events_of(response)
        except httpx.TransportError as exc:
            raise ScanqConnectionError(call.method, call.url, exc) from exc

    async def _wait_on_stream(self, scan_id: str, *, deadline: float | None, pause_s: float) -> Scan | None:
        """The scan once its event stream says it ended; None when there is no stream to follow, or at ``deadline``."""
        last_event_id: str | None = None
        is_open = False
        breaks = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            call = self.endpoints.scan_events(scan_id, last_event_id=last_event_id)
            has_ended = False
            try:
                async with asyncio.timeout(remaining):
                    async with self._http.stream(
                        call.method,
                        call.url,
                        headers=call.headers,
                        timeout=stream_timeout(self._timeout_s, None),
                    ) as response:
                        # 204: resumed after the scan's last event, and it had ended.
                        has_ended = response.status_code == 204
                        if not has_ended and not is_event_stream(response):
                            return None  # polling says why (404, 401…) or works where the stream does not
                        is_open = True
                        parser = EventStreamParser()
                        async for line in response.aiter_lines():
                            event = parser.feed(line)
                            if event is not None:
                                last_event_id, breaks = event.event_id, 0
                                if event.is_terminal:
                                    has_ended = True
                                    break
            except TimeoutError:
                return None
            except (httpx.TransportError, msgspec.DecodeError, msgspec.ValidationError):
                pass
            if has_ended:
                return await self.get(scan_id)
            breaks += 1
            if not is_open or breaks > STREAM_RECONNECTS:
                return None
            await self._sleep(pause_s if remaining is None else min(pause_s, remaining))

    async def _sightings(self, scan_id: str, *, poll_s: float, deadline: float | None) -> AsyncGenerator[Scan, None]:
        """The scan as it changes, until ``deadline`` (monotonic; None: forever), by polling."""
        while True:
            yield await self.get(scan_id)
            pause = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
            if pause <= 0:
                return
            await self._sleep(pause)

    # -- sending -------------------------------------------------------------------------------

    async def _send(self, call: Call) -> httpx.Response:
        """Send ``call``, retrying as ``retry_policy`` allows; a success, or the error it ended with."""
        failures = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, call.url, params=call.params, content=call.body, headers=call.headers
                )
            except httpx.TransportError as exc:
                failures += 1
                delay = self.retry_policy.after_error(call, exc, failures)
                if delay is None:
                    raise ScanqConnectionError(call.method, call.url, exc) from exc
            else:
                if response.is_success:
                    return response
                failures += 1
                delay = self.retry_policy.after_response(call, response, failures)
                if delay is None:
                    raise error_from_response(response)
            await self._sleep(delay)


async def _events_of(response: httpx.Response) -> AsyncIterator[ScanEvent]:
    parser = EventStreamParser()
    async for line in response.aiter_lines():
        event = parser.feed(line)
        if event is not None:
            yield event


__all__ = ["AsyncClient"]
