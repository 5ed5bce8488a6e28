"""The command-line client: submit, get, list, stats and cancel over the HTTP API.

Each public function is one CLI command's work: it talks to the ingest or
status service named in ``Settings`` and prints for a human (tables, a
progress bar) or, for ``get``, pretty JSON. HTTP and connection failures
become a one-line ``click.ClickException``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import click
import httpx

from scanq.config import Settings
from scanq.scanners.net.findings import format_findings_table
from scanq.tables import cell as _cell
from scanq.tables import text_table as _table

REQUEST_TIMEOUT_S = 10.0
WAIT_POLL_S = 0.25
# How many unfinished scans one polling round asks about (oldest first), and how many requests at once.
WAIT_WINDOW = 200
WAIT_PARALLEL_REQUESTS = 16
CLIENT_MAX_BATCH = 1000
# Up to this many submitted scans, --wait prints each one's outcome (findings table or error).
DETAIL_MAX_SCANS = 10
TERMINAL = frozenset({"Complete", "Error", "Cancelled"})
LIST_COLUMNS = ("scan_id", "status", "scanner", "target", "attempt", "created_at")


async def submit(
    settings: Settings,
    *,
    target: str | None,
    scanner: str | None,
    options: Mapping[str, Any],
    priority: int | None,
    count: int,
    wait: bool,
) -> None:
    """Submit ``count`` scans (one POST /scans, or POST /scans/batch chunks), print their ids, optionally wait.

    Args:
        settings: ``ingest_url``, ``status_url`` and ``max_batch`` are used.
        target, scanner, options, priority: the request body fields (None: the service default).
        count: how many identical scans to submit.
        wait: show a progress bar until every one has finished, then a summary by status.
    """
    body: dict[str, Any] = {"options": dict(options)}
    for key, value in (("target", target), ("scanner", scanner), ("priority", priority)):
        if value is not None:
            body[key] = value
    ids: list[str] = []
    async with _client(settings) as client:
        if count == 1:
            ids.append(_expect(await _call(client, "POST", f"{settings.ingest_url}/scans", json=body))["scan_id"])
        else:
            chunk = min(settings.max_batch, CLIENT_MAX_BATCH)
            for start in range(0, count, chunk):
                n = min(chunk, count - start)
                answer = _expect(
                    await _call(client, "POST", f"{settings.ingest_url}/scans/batch", json={"scans": [body] * n})
                )
                ids.extend(scan["scan_id"] for scan in answer["scans"])
        for scan_id in ids:
            click.echo(scan_id)
        if wait:
            try:
                finished = await _wait_for(client, settings, ids)
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
                    click.echo(_describe_outcome(finished[scan_id]))
            statuses = Counter(str(scan["status"]) for scan in finished.values())
            click.echo(_table(["status", "scans"], sorted(statuses.items())), err=True)


def _describe_outcome(scan: Mapping[str, Any]) -> str:
    """One finished scan for a terminal: its status, then its findings table or its error."""
    head = f"\nscan {scan['scan_id']}: {scan['status']}"
    if scan.get("error"):
        return f"{head}\nerror: {scan['error']}"
    result = scan.get("result")
    if isinstance(result, Mapping) and "findings" in result:
        return f"{head}\n{format_findings_table(result)}"
    return head


async def _wait_for(client: httpx.AsyncClient, settings: Settings, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Poll the status service until every id is terminal; return id → the finished scan."""
    pending = list(ids)
    finished: dict[str, dict[str, Any]] = {}
    limiter = asyncio.Semaphore(WAIT_PARALLEL_REQUESTS)

    async def status_of(scan_id: str) -> dict[str, Any]:
        async with limiter:
            scan: dict[str, Any] = _expect(await _call(client, "GET", f"{settings.status_url}/scans/{scan_id}"))
            return scan

    with click.progressbar(length=len(ids), label="scans finished", file=sys.stderr) as bar:
        while pending:
            window = pending[:WAIT_WINDOW]
            scans = await asyncio.gather(*(status_of(scan_id) for scan_id in window))
            done = {scan["scan_id"]: scan for scan in scans if scan["status"] in TERMINAL}
            finished.update(done)
            pending = [scan_id for scan_id in pending if scan_id not in done]
            bar.update(len(done))
            if not done and pending:
                await asyncio.sleep(WAIT_POLL_S)
    return finished


async def get(settings: Settings, *, scan_id: str) -> None:
    """Print one scan as pretty JSON; a 404 is an error."""
    async with _client(settings) as client:
        scan = _expect(await _call(client, "GET", f"{settings.status_url}/scans/{scan_id}"))
    click.echo(json.dumps(scan, indent=2))


async def list_scans(settings: Settings, *, status: str | None, limit: int, cursor: str | None) -> None:
    """Print one page of scans (newest first) as a table, and the cursor of the next page."""
    params: dict[str, str | int] = {"limit": limit}
    if status:
        params["status"] = status
    if cursor:
        params["cursor"] = cursor
    async with _client(settings) as client:
        page = _expect(await _call(client, "GET", f"{settings.status_url}/scans", params=params))
    rows = [[_cell(scan.get(column)) for column in LIST_COLUMNS] for scan in page["scans"]]
    click.echo(_table(LIST_COLUMNS, rows))
    if page.get("next_cursor"):
        click.echo(f"next page: --cursor {page['next_cursor']}")


async def stats(settings: Settings) -> None:
    """Print the counts by status, then any other figure the status service reports."""
    async with _client(settings) as client:
        answer = _expect(await _call(client, "GET", f"{settings.status_url}/stats"))
    counts = answer.get("counts", {})
    click.echo(_table(["status", "scans"], [(name, counts[name]) for name in counts]))
    for key, value in answer.items():
        if key == "oldest_accepted_age_s" and value is None:
            click.echo(f"{key}: none (no scan is waiting)")
        elif key != "counts":
            click.echo(f"{key}: {_cell(value)}")


async def cancel(settings: Settings, *, scan_id: str) -> None:
    """Cancel one scan and print its status afterwards (Cancelled, or Running until the worker stops it)."""
    async with _client(settings) as client:
        scan = _expect(await _call(client, "POST", f"{settings.ingest_url}/scans/{scan_id}/cancel"))
    note = " (cancel requested; the worker stops it)" if scan.get("status") == "Running" else ""
    click.echo(f"{scan['scan_id']} {scan['status']}{note}")


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


def _client(settings: Settings) -> httpx.AsyncClient:
    """An HTTP client that sends ``settings.token`` (``--token`` / ``SCANQ_TOKEN``) as a bearer token, if set."""
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else None
    return httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, headers=headers)


async def _call(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return await client.request(method, url, **kwargs)
    except httpx.ConnectError as exc:
        parts = httpx.URL(url)
        service = f"{parts.scheme}://{parts.netloc.decode()}"
        raise click.ClickException(
            f"{method} {url} failed: {exc or type(exc).__name__}: is the scanq service running at {service}? "
            "(start it with ./run or scanq up, or name another with --ingest-url/--status-url)"
        ) from None
    except httpx.HTTPError as exc:
        raise click.ClickException(f"{method} {url} failed: {exc or type(exc).__name__}") from None


def _expect(response: httpx.Response) -> Any:
    """The JSON body of a successful response; else a one-line error with the service's message."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success and body is not None:
        return body
    message = response.text.strip() or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            message = str(error["message"])
        elif body.get("status") == "Not Found":
            message = f"no scan with id {body.get('scan_id')!r}"
    if response.status_code == 401:
        message += " (pass an API token with --token or SCANQ_TOKEN; make one with `scanq tokens create`)"
    raise click.ClickException(f"{response.request.method} {response.request.url}: {response.status_code} {message}")
