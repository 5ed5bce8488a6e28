"""The command-line client: submit, get, list, stats, cancel and webhooks, on the Python client (``scanq.sdk``).

Each public function is one CLI command's work: it talks to the ingest or
status service named in ``Settings`` through ``scanq.sdk.AsyncClient`` and
prints for a human (tables, a progress bar) or, for ``get``, pretty JSON.
``submit --wait`` follows the status service's event stream (server-sent
events) and polls only where there is none. The
client's errors (an error answer, no answer at all) become a one-line
``click.ClickException``. The commands do not retry (``CLI_RETRIES``): one
command is one try, and a stopped service is reported at once.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import click
import httpx
import msgspec

from scanq.config import Settings
from scanq.scanners.net.findings import format_findings_table
from scanq.sdk import (
    TERMINAL_STATUSES,
    AsyncClient,
    Delivery,
    Scan,
    ScanqApiError,
    ScanqConnectionError,
    SubmitRequest,
    Webhook,
)
from scanq.tables import cell as _cell
from scanq.tables import text_table as _table

REQUEST_TIMEOUT_S = 10.0
# One command is one try: the client's retries (429, 503, connection failures) stay off for the CLI.
CLI_RETRIES = 0
WAIT_POLL_S = 0.25
# How many unfinished scans one polling round asks about (oldest first), and how many requests at once.
WAIT_WINDOW = 200
WAIT_PARALLEL_REQUESTS = 16
CLIENT_MAX_BATCH = 1000
# Up to this many submitted scans, --wait prints each one's outcome (findings table or error).
DETAIL_MAX_SCANS = 10
LIST_COLUMNS = ("scan_id", "status", "scanner", "target", "attempt", "created_at")
WEBHOOK_COLUMNS = ("endpoint_id", "url", "event_types", "description", "created_at")
DELIVERY_COLUMNS = ("event_id", "type", "scan_id", "status", "attempts", "last_status_code", "last_error")


async def submit(
    settings: Settings,
    *,
    target: str | None,
    scanner: str | None,
    options: Mapping[str, Any],
    priority: int | None,
    count: int,
    wait: bool,
    callback_url: str | None = None,
) -> None:
    """Submit ``count`` scans (one POST /scans, or POST /scans/batch chunks), print their ids, optionally wait.

    Args:
        settings: ``ingest_url``, ``status_url``, ``token`` and ``max_batch`` are used.
        target, scanner, options, priority, callback_url: the request body fields (None: the service default).
        count: how many identical scans to submit.
        wait: show a progress bar until every one has finished, then a summary by status.
    """
    ids: list[str] = []
    async with _session(settings) as client:
        if count == 1:
            scan = await client.submit(
                target=target, scanner=scanner, options=options, priority=priority, callback_url=callback_url
            )
            ids.append(scan.scan_id)
        else:
            request = SubmitRequest(
                target=target, scanner=scanner, options=dict(options), priority=priority, callback_url=callback_url
            )
            chunk = min(settings.max_batch, CLIENT_MAX_BATCH)
            for start in range(0, count, chunk):
                n = min(chunk, count - start)
                ids.extend(scan.scan_id for scan in await client.submit_batch([request] * n))
        for scan_id in ids:
            click.echo(scan_id)
        if wait:
            try:
                statuses = await _wait_for(client, ids)
            except (asyncio.CancelledError, KeyboardInterrupt):
                # Ctrl-C stops the waiting, not the scans: say so, and how to follow them.
                follow = f"scanq get {ids[0]}" if len(ids) == 1 else "scanq list"
                click.echo(
                    f"\nstopped waiting: the {len(ids)} scan(s) keep running; follow them with "
                    f"`{follow}` or `scanq stats --watch`",
                    err=True,
                )
                raise
            if len(ids) <= DETAIL_MAX_SCANS:
                for scan_id in ids:
                    click.echo(_describe_outcome(await client.get(scan_id)))
            counts = Counter(statuses.values())
            click.echo(_table(["status", "scans"], sorted(counts.items())), err=True)


def _describe_outcome(scan: Scan) -> str:
    """One finished scan for a terminal: its status, then its findings table or its error."""
    head = f"\nscan {scan.scan_id}: {scan.status}"
    if scan.error:
        return f"{head}\nerror: {scan.error}"
    if scan.result is not None and "findings" in scan.result:
        return f"{head}\n{format_findings_table(scan.result)}"
    return head


async def _wait_for(client: AsyncClient, ids: Sequence[str]) -> dict[str, str]:
    """Wait until every id is terminal, with a progress bar; return id → its final status.

    One scan: ``AsyncClient.wait`` (its event stream). Many: the tenant's terminal events (``GET /events``),
    opened first, then one round of reads for the scans that finished before it opened; polling a window
    of the oldest unfinished scans per round where the stream cannot be had or breaks.
    """
    finished: dict[str, str] = {}
    pending = dict.fromkeys(ids)  # ordered: the oldest unfinished first
    with click.progressbar(length=len(ids), label="scans finished", file=sys.stderr) as bar:

        def done(scan_id: str, status: str) -> None:
            if scan_id in pending and status in TERMINAL_STATUSES:
                del pending[scan_id]
                finished[scan_id] = status
                bar.update(1)

        if len(ids) == 1:
            done(ids[0], (await client.wait(ids[0])).status)
            return finished
        try:
            async with client.events(statuses=TERMINAL_STATUSES) as events:
                # Open: every scan that finishes from now on comes through it; one round finds the others.
                await _read_round(client, list(pending), done)
                if pending:
                    async for event in events:
                        done(event.scan_id, event.status)
                        if not pending:
                            break
        except (ScanqConnectionError, ScanqApiError):
            pass  # no stream, or it broke: polling finishes the job (and reports a real refusal)
        while pending:
            before = len(pending)
            await _read_round(client, list(pending)[:WAIT_WINDOW], done)
            if len(pending) == before:
                await asyncio.sleep(WAIT_POLL_S)
    return finished


async def _read_round(client: AsyncClient, ids: Sequence[str], done: Callable[[str, str], None]) -> None:
    """Read each scan once (a few requests at a time) and report its status to ``done``."""
    limiter = asyncio.Semaphore(WAIT_PARALLEL_REQUESTS)

    async def status_of(scan_id: str) -> Scan:
        async with limiter:
            return await client.get(scan_id)

    for start in range(0, len(ids), WAIT_WINDOW):
        for scan in await asyncio.gather(*(status_of(scan_id) for scan_id in ids[start : start + WAIT_WINDOW])):
            done(scan.scan_id, scan.status)


async def get(settings: Settings, *, scan_id: str) -> None:
    """Print one scan as pretty JSON; a 404 is an error."""
    async with _session(settings) as client:
        scan = await client.get(scan_id)
    click.echo(json.dumps(msgspec.to_builtins(scan), indent=2))


async def list_scans(settings: Settings, *, status: str | None, limit: int, cursor: str | None) -> None:
    """Print one page of scans (newest first) as a table, and the cursor of the next page."""
    async with _session(settings) as client:
        page = await client.list_page(status=status or None, limit=limit, cursor=cursor or None)
    scans = [msgspec.to_builtins(scan) for scan in page.scans]
    rows = [[_cell(scan.get(column)) for column in LIST_COLUMNS] for scan in scans]
    click.echo(_table(LIST_COLUMNS, rows))
    if page.next_cursor:
        click.echo(f"next page: --cursor {page.next_cursor}")


async def stats(settings: Settings) -> None:
    """Print the counts by status, then any other figure the status service reports."""
    async with _session(settings) as client:
        answer = msgspec.to_builtins(await client.stats())
    counts = answer.get("counts", {})
    click.echo(_table(["status", "scans"], [(name, counts[name]) for name in counts]))
    for key, value in answer.items():
        if key == "oldest_accepted_age_s" and value is None:
            click.echo(f"{key}: none (no scan is waiting)")
        elif key != "counts":
            click.echo(f"{key}: {_cell(value)}")


async def cancel(settings: Settings, *, scan_id: str) -> None:
    """Cancel one scan and print its status afterwards (Cancelled, or Running until the worker stops it)."""
    async with _session(settings) as client:
        scan = await client.cancel(scan_id)
    note = " (cancel requested; the worker stops it)" if scan.status == "Running" else ""
    click.echo(f"{scan.scan_id} {scan.status}{note}")


# -- webhooks (ingest service) -------------------------------------------------------------------


async def webhook_add(settings: Settings, *, url: str, event_types: Sequence[str], description: str | None) -> None:
    """Register an endpoint; print it, and its secret (stdout, alone on the last line: it is not shown again)."""
    async with _session(settings) as client:
        endpoint = await client.webhooks.create(url, event_types=event_types or None, description=description)
    _print_webhook(endpoint)
    click.echo("signing secret (shown once; deliveries are signed with it, Standard Webhooks):", err=True)
    click.echo(endpoint.secret)


async def webhook_list(settings: Settings, *, tenant: str | None) -> None:
    """Print the endpoints as a table (never their secrets)."""
    async with _session(settings) as client:
        endpoints = await client.webhooks.list(tenant=tenant)
    click.echo(_table(WEBHOOK_COLUMNS, [_webhook_row(endpoint) for endpoint in endpoints]))


async def webhook_show(settings: Settings, *, endpoint_id: str) -> None:
    """Print one endpoint as pretty JSON."""
    async with _session(settings) as client:
        endpoint = await client.webhooks.get(endpoint_id)
    click.echo(json.dumps(msgspec.to_builtins(endpoint), indent=2))


async def webhook_delete(settings: Settings, *, endpoint_id: str) -> None:
    """Delete an endpoint."""
    async with _session(settings) as client:
        await client.webhooks.delete(endpoint_id)
    click.echo(f"{endpoint_id} deleted")


async def webhook_rotate_secret(settings: Settings, *, endpoint_id: str) -> None:
    """Give an endpoint a new secret and print it (the old one keeps signing for 24 hours)."""
    async with _session(settings) as client:
        endpoint = await client.webhooks.rotate_secret(endpoint_id)
    until = endpoint.previous_secret_until
    note = f" until {until.isoformat()}" if until is not None else ""
    click.echo(f"new signing secret (the previous one is still sent too{note}):", err=True)
    click.echo(endpoint.secret)


async def webhook_deliveries(settings: Settings, *, endpoint_id: str, status: str | None, limit: int) -> None:
    """Print an endpoint's deliveries, newest event first."""
    async with _session(settings) as client:
        deliveries = await client.webhooks.deliveries(endpoint_id, status=status, limit=limit)
    click.echo(_table(DELIVERY_COLUMNS, [_delivery_row(delivery) for delivery in deliveries]))


async def webhook_retry(settings: Settings, *, endpoint_id: str, event_id: str) -> None:
    """Send a delivery again now."""
    async with _session(settings) as client:
        delivery = await client.webhooks.retry(endpoint_id, event_id)
    click.echo(f"{delivery.event_id} {delivery.status} (attempts so far: {delivery.attempts})")


def _print_webhook(endpoint: Webhook) -> None:
    click.echo(_table(WEBHOOK_COLUMNS, [_webhook_row(endpoint)]))


def _webhook_row(endpoint: Webhook) -> list[str]:
    values: dict[str, Any] = {
        "endpoint_id": endpoint.endpoint_id,
        "url": endpoint.url,
        "event_types": ",".join(endpoint.event_types),
        "description": endpoint.description,
        "created_at": endpoint.created_at.isoformat(),
    }
    return [_cell(values[column]) for column in WEBHOOK_COLUMNS]


def _delivery_row(delivery: Delivery) -> list[str]:
    values: dict[str, Any] = {
        "event_id": delivery.event_id,
        "type": delivery.event.type,
        "scan_id": delivery.event.scan_id,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
    }
    return [_cell(values[column]) for column in DELIVERY_COLUMNS]


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``k=v`` pairs to an options object; each value is read as JSON when it is JSON (numbers, booleans)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--option")
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return options


def _client(settings: Settings) -> AsyncClient:
    """The Python client on ``settings``' services, sending ``settings.token`` (``--token`` / ``SCANQ_TOKEN``)."""
    return AsyncClient(
        settings.ingest_url,
        settings.status_url,
        token=settings.token,
        timeout_s=REQUEST_TIMEOUT_S,
        retries=CLI_RETRIES,
    )


@asynccontextmanager
async def _session(settings: Settings) -> AsyncIterator[AsyncClient]:
    """A client for one command; its errors come out as one-line ``click.ClickException``s."""
    async with _client(settings) as client:
        with _reported():
            yield client


@contextmanager
def _reported() -> Iterator[None]:
    """Turn the client's errors into one line: the request, the status and the service's message."""
    try:
        yield
    except ScanqApiError as exc:
        message = exc.message
        if exc.status_code == 401:
            message += " (pass an API token with --token or SCANQ_TOKEN; make one with `scanq tokens create`)"
        raise click.ClickException(f"{exc.method} {exc.url}: {exc.status_code} {message}") from None
    except ScanqConnectionError as exc:
        if isinstance(exc.error, httpx.ConnectError):
            parts = httpx.URL(exc.url)
            service = f"{parts.scheme}://{parts.netloc.decode()}"
            raise click.ClickException(
                f"{exc}: is the scanq service running at {service}? "
                "(start it with ./run or scanq up, or name another with --ingest-url/--status-url)"
            ) from None
        raise click.ClickException(str(exc)) from None
