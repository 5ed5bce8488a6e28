"""The status service (port 10551): one scan, pages of scans, counts by status, finished scans per step."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from scanq.api.callers import OPEN, Callers
from scanq.api.hotpath import RawAnswer
from scanq.api.http import encoder, json_headers, json_response
from scanq.api.openapi import (
    READ_AUTH_ERRORS,
    SCAN_ID_PARAM,
    STORE_ERRORS,
    Endpoint,
    Operation,
    Param,
    Reply,
    error_reply,
)
from scanq.api.schemas import (
    NotFoundResponse,
    ScanPage,
    StatsResponse,
    ThroughputResponse,
    stats_out,
    throughput_out,
)
from scanq.auth import TENANT_PATTERN, check_tenant
from scanq.exceptions import ValidationError
from scanq.models import OPERATOR, ScanStatus
from scanq.scans import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_CURSOR_LENGTH,
    MAX_PAGE_SIZE,
    MAX_THROUGHPUT_BUCKETS,
    MAX_THROUGHPUT_WINDOW_S,
    MIN_THROUGHPUT_STEP_S,
    PAGE_CURSOR_PATTERN,
    ScanService,
)
from scanq.views import ScanOut, scan_out

TAG = "status"
HTML_MEDIA_TYPE = "text/html"

TENANT_PARAM = Param(
    name="tenant",
    location="query",
    description="Only this tenant's scans (an admin token's filter; any other token may only name its own tenant)",
    schema={"type": "string", "pattern": TENANT_PATTERN},
)


LIST_PARAMS = (
    Param(
        name="status",
        location="query",
        description="Only scans in this status",
        schema={"type": "string", "enum": [s.value for s in ScanStatus]},
    ),
    Param(
        name="limit",
        location="query",
        description="Page size",
        schema={"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
    ),
    Param(
        name="cursor",
        location="query",
        description=(
            "The next_cursor of the previous page (opaque). It carries the page's status filter: "
            "leave status out to follow it; another status with it is a 422"
        ),
        schema={"type": "string", "pattern": PAGE_CURSOR_PATTERN, "maxLength": MAX_PAGE_CURSOR_LENGTH},
    ),
    TENANT_PARAM,
)

DEFAULT_THROUGHPUT_WINDOW = "5m"
DEFAULT_THROUGHPUT_STEP = "10s"
# Empty is the default (as absent): the schema says so, so that the server accepts exactly what it documents.
DURATION_PATTERN = r"^([0-9]+(s|m|h)?)?$"
DURATION_UNITS_S = {"s": 1, "m": 60, "h": 3600}
THROUGHPUT_PARAMS = (
    Param(
        name="window",
        location="query",
        description=f"How far back: seconds, or a number with s, m or h (at most {MAX_THROUGHPUT_WINDOW_S:g}s)",
        schema={"type": "string", "pattern": DURATION_PATTERN, "default": DEFAULT_THROUGHPUT_WINDOW},
    ),
    Param(
        name="step",
        location="query",
        description=(
            f"Width of one bucket, at least {MIN_THROUGHPUT_STEP_S:g}s; "
            f"window / step at most {MAX_THROUGHPUT_BUCKETS} (the window is rounded up to whole steps)"
        ),
        schema={"type": "string", "pattern": DURATION_PATTERN, "default": DEFAULT_THROUGHPUT_STEP},
    ),
    TENANT_PARAM,
)


def parse_tenant(raw: str | None) -> str | None:
    """The ``?tenant=`` filter; ``ValidationError`` for a name no tenant can have."""
    return None if raw is None else check_tenant(raw)


def wants_html(request: Request) -> bool:
    """True for a browser: its ``Accept`` names text/html (API clients send JSON or nothing)."""
    return HTML_MEDIA_TYPE in request.headers.get("accept", "")


def parse_limit(raw: str | None) -> int:
    """The ``?limit=`` value (default when absent); raise ``ValidationError`` when not an integer (or empty)."""
    if raw is None:
        return DEFAULT_PAGE_SIZE
    try:
        return int(raw)
    except ValueError:
        raise ValidationError(f"limit must be an integer between 1 and {MAX_PAGE_SIZE} (got {raw!r})") from None


def parse_duration(name: str, raw: str | None, *, default: str) -> float:
    """A ``?window=``/``?step=`` value in seconds: ``90``, ``90s``, ``5m``, ``24h``; raise ``ValidationError``.

    Exactly ``DURATION_PATTERN`` (no spaces, lower-case units), as the OpenAPI document says.
    """
    text = raw or default
    unit = text[-1] if text[-1:] in DURATION_UNITS_S else "s"
    number = text[:-1] if text[-1:] in DURATION_UNITS_S else text
    if not (number.isascii() and number.isdigit()) or len(number) > 9:
        raise ValidationError(
            f"{name} must be a whole number of seconds, or of minutes (5m) or hours (1h); got {raw!r}"
        )
    return float(int(number) * DURATION_UNITS_S[unit])


class StatusEndpoints:
    """The status handlers.

    Args:
        scans: the scan service.
        callers: who each request is from (default: authentication off).
        dashboard: DASHBOARD HOOK: the handler that answers a browser's ``GET /``
            (``Accept: text/html``). None until the dashboard exists: browsers get the JSON list.
    """

    def __init__(self, *, scans: ScanService, dashboard: Endpoint | None = None, callers: Callers = OPEN) -> None:
        self._scans = scans
        self._dashboard = dashboard
        self._callers = callers

    async def root(self, request: Request) -> Response:
        """``GET /``: the dashboard for a browser (once there is one), else the first page of scans."""
        if self._dashboard is not None and wants_html(request):
            return await self._dashboard(request)
        return await self.list_scans(request)

    async def list_scans(self, request: Request) -> Response:
        """``GET /scans``: a page of scans, newest first; ``?status=``, ``?limit=``, ``?cursor=``."""
        caller = await self._callers(request)
        query = request.query_params
        # An empty value is refused like any other that is not in the schema, not read as "absent".
        page = await self._scans.list_scans(
            status=query.get("status"),
            limit=parse_limit(query.get("limit")),
            cursor=query.get("cursor"),
            tenant=parse_tenant(query.get("tenant")),
            caller=caller,
        )
        return json_response(ScanPage(scans=[scan_out(s) for s in page.scans], next_cursor=page.next_cursor))

    async def get_scan(self, request: Request) -> Response:
        """``GET /scans/{scan_id}`` and ``GET /{scan_id}``: the scan with its history, or the Not Found body."""
        caller = await self._callers(request)
        scan = await self._scans.get(request.path_params["scan_id"], caller=caller)
        return json_response(scan_out(scan))

    async def get_scan_raw(self, scan_id: str, authorization: bytes | None) -> RawAnswer:
        """``get_scan`` for the hot path (``hotpath.HotEntry``): status, headers (``json_response``'s) and body.

        The same steps in the same order (caller, service), so the same refusals; without a ``Request`` or a
        ``Response``, and without a coroutine for the caller when authentication is off.
        """
        callers = self._callers
        caller = OPERATOR if not callers.required else await callers.authenticate(authorization)
        body = encoder.encode(scan_out(await self._scans.get(scan_id, caller=caller)))
        return 200, json_headers(body), body

    async def stats(self, request: Request) -> Response:
        """``GET /stats``: counts by status and the oldest Accepted scan's age."""
        caller = await self._callers(request)
        tenant = parse_tenant(request.query_params.get("tenant"))
        return json_response(stats_out(await self._scans.stats(tenant=tenant, caller=caller)))

    async def throughput(self, request: Request) -> Response:
        """``GET /stats/throughput``: scans finished per status per ``?step=`` over the last ``?window=``."""
        caller = await self._callers(request)
        query = request.query_params
        window_s = parse_duration("window", query.get("window"), default=DEFAULT_THROUGHPUT_WINDOW)
        step_s = parse_duration("step", query.get("step"), default=DEFAULT_THROUGHPUT_STEP)
        tenant = parse_tenant(query.get("tenant"))
        throughput = await self._scans.throughput(window_s=window_s, step_s=step_s, tenant=tenant, caller=caller)
        return json_response(throughput_out(throughput))

    def operations(self, *, with_root: bool = True) -> list[Operation]:
        """The status routes, fixed paths before ``/{scan_id}``; ``with_root`` False leaves ``GET /`` to the caller."""
        page = Reply(description="A page of scans, newest first", body=ScanPage)
        bad_query = error_reply(
            "Unknown or empty status, limit not an integer in range, a cursor scanq did not make, "
            "or a cursor with another status than it continues"
        )
        scan = Reply(description="The scan with its attempt history", body=ScanOut)
        not_found = Reply(description="No scan with that id, or not a scan id", body=NotFoundResponse)
        ops = [
            Operation(
                method="GET",
                path="/stats",
                endpoint=self.stats,
                operation_id="scan_stats",
                summary="Counts by status and the oldest Accepted scan's age",
                tag=TAG,
                secured=True,
                params=(TENANT_PARAM,),
                replies={
                    200: Reply(description="Queue counts", body=StatsResponse),
                    422: error_reply("A tenant name no tenant can have"),
                    **READ_AUTH_ERRORS,
                    **STORE_ERRORS,
                },
            ),
            Operation(
                method="GET",
                path="/stats/throughput",
                endpoint=self.throughput,
                operation_id="scan_throughput",
                summary="Scans finished per status in each step of a recent window",
                tag=TAG,
                secured=True,
                params=THROUGHPUT_PARAMS,
                replies={
                    200: Reply(description="Finished scans per step, oldest first", body=ThroughputResponse),
                    422: error_reply("A window or step that is not a duration, or out of bounds"),
                    **READ_AUTH_ERRORS,
                    **STORE_ERRORS,
                },
            ),
            Operation(
                method="GET",
                path="/scans",
                endpoint=self.list_scans,
                operation_id="list_scans",
                summary="A page of scans, newest first",
                tag=TAG,
                secured=True,
                params=LIST_PARAMS,
                replies={200: page, 422: bad_query, **READ_AUTH_ERRORS, **STORE_ERRORS},
            ),
            Operation(
                method="GET",
                path="/scans/{scan_id}",
                endpoint=self.get_scan,
                operation_id="get_scan",
                summary="One scan",
                tag=TAG,
                secured=True,
                params=(SCAN_ID_PARAM,),
                replies={200: scan, 404: not_found, **READ_AUTH_ERRORS, **STORE_ERRORS},
            ),
        ]
        if with_root:
            ops.append(
                Operation(
                    method="GET",
                    path="/",
                    endpoint=self.root,
                    operation_id="list_scans_root",
                    summary="A page of scans, newest first (a browser gets the dashboard)",
                    tag=TAG,
                    secured=True,
                    params=LIST_PARAMS,
                    replies={200: page, 422: bad_query, **READ_AUTH_ERRORS, **STORE_ERRORS},
                )
            )
        ops.append(
            Operation(
                method="GET",
                path="/{scan_id}",
                endpoint=self.get_scan,
                operation_id="get_scan_short",
                summary="One scan (the original system's path)",
                tag=TAG,
                secured=True,
                params=(SCAN_ID_PARAM,),
                replies={200: scan, 404: not_found, **READ_AUTH_ERRORS, **STORE_ERRORS},
            )
        )
        return ops
