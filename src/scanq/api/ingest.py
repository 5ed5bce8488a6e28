"""The ingest service (port 10550): queue scans, one, many or by ``GET /``, and cancel them."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive

from scanq.api.callers import OPEN, Callers
from scanq.api.errors import JSON_MEDIA_TYPE
from scanq.api.http import decode_json, encoder, json_headers, json_response, read_body, receive_body
from scanq.api.openapi import (
    AUTH_ERRORS,
    BODY_ERRORS,
    QUOTA_ERRORS,
    SCAN_ID_PARAM,
    STORE_ERRORS,
    Operation,
    Param,
    Reply,
    error_reply,
)
from scanq.api.schemas import BatchRequest, BatchResponse, NotFoundResponse, ScanRequest
from scanq.config import Settings
from scanq.exceptions import ValidationError
from scanq.models import OPERATOR
from scanq.scans import DEFAULT_SUBMISSION, MAX_IDEMPOTENCY_KEY_LENGTH, ScanService
from scanq.views import ScanOut, scan_out

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"  # set on a replay's answer, as Stripe does
TAG = "ingest"
_IDEMPOTENCY_NAME = IDEMPOTENCY_HEADER.lower().encode("latin-1")
_REPLAYED_NAME = REPLAYED_HEADER.lower().encode("latin-1")


def scan_location(scan_id: str) -> str:
    """Where the status service serves a scan (relative: ingest and status may sit behind one proxy)."""
    return f"/scans/{scan_id}"


def answer_headers(body: bytes, *, location: str, is_new: bool) -> list[tuple[bytes, bytes]]:
    """``POST /scans``'s header list, in the order ``Response.init_headers`` gives it (pinned by a test)."""
    headers = [(b"location", location.encode("latin-1"))]
    if not is_new:
        headers.append((_REPLAYED_NAME, b"true"))
    headers += json_headers(body)
    return headers


class ScanAnswer(Response):
    """``POST /scans``'s answer: 202 with the new scan, or 200 replaying an earlier one.

    The bytes are those of ``json_response(body, status_code=…, headers={"Location": …})``
    (plus ``Idempotent-Replayed: true`` on a replay); only the header list is built
    directly (``answer_headers``) instead of from a dict.
    """

    media_type = JSON_MEDIA_TYPE

    def __init__(self, body: bytes, *, location: str, is_new: bool) -> None:
        self.status_code = 202 if is_new else 200
        self.background = None
        self.body = body
        self.raw_headers = answer_headers(body, location=location, is_new=is_new)


def _idempotency_key(request: Request) -> str | None:
    """The ``Idempotency-Key`` header (the first one, as ``request.headers.get`` reads it), in one pass."""
    headers: list[tuple[bytes, bytes]] = request.scope["headers"]
    for name, value in headers:
        if name == _IDEMPOTENCY_NAME:
            return value.decode("latin-1")
    return None


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


class IngestEndpoints:
    """The ingest handlers.

    Args:
        scans: the scan service.
        settings: the body size limit.
        callers: who each request is from (default: authentication off).
    """

    def __init__(self, *, scans: ScanService, settings: Settings, callers: Callers = OPEN) -> None:
        self._scans = scans
        self._callers = callers
        self._max_body_bytes = settings.max_body_bytes
        self._scan_decoder = msgspec.json.Decoder(ScanRequest)
        self._batch_decoder = msgspec.json.Decoder(BatchRequest)

    async def queue_default(self, request: Request) -> Response:
        """``GET /``: queue a default scan and answer its id as text (``ID=$(curl -s localhost:10550)``)."""
        caller = await self._callers(request)
        created = await self._scans.submit(DEFAULT_SUBMISSION, caller=caller)
        return PlainTextResponse(created.scan.scan_id)

    async def submit(self, request: Request) -> Response:
        """``POST /scans``: 202 with the new scan, or 200 with the earlier one when the idempotency key matched."""
        caller = await self._callers(request)
        body = await read_body(request, max_bytes=self._max_body_bytes)
        submission = decode_json(body, self._scan_decoder) if body else DEFAULT_SUBMISSION
        created = await self._scans.submit(submission, idempotency_key=_idempotency_key(request), caller=caller)
        scan = created.scan
        return ScanAnswer(encoder.encode(scan_out(scan)), location=scan_location(scan.scan_id), is_new=created.is_new)

    async def submit_raw(
        self, receive: Receive, authorization: bytes | None, content_length: bytes | None, idempotency_key: bytes | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """``submit`` for the hot path (``hotpath.HotEntry``), from the headers it read: status, headers, body.

        The same steps in the same order (caller, body, decode, service), so the same refusals; without a
        ``Request``, and without a coroutine for the caller when authentication is off.
        """
        callers = self._callers
        caller = OPERATOR if not callers.required else await callers.authenticate(authorization)
        body = await receive_body(receive, _text(content_length), max_bytes=self._max_body_bytes)
        submission = decode_json(body, self._scan_decoder) if body else DEFAULT_SUBMISSION
        created = await self._scans.submit(submission, idempotency_key=_text(idempotency_key), caller=caller)
        scan = created.scan
        is_new = created.is_new
        answer = encoder.encode(scan_out(scan))
        headers = answer_headers(answer, location=scan_location(scan.scan_id), is_new=is_new)
        return (202 if is_new else 200), headers, answer

    async def submit_batch(self, request: Request) -> Response:
        """``POST /scans/batch``: store every scan or none (one transaction)."""
        caller = await self._callers(request)
        if IDEMPOTENCY_HEADER in request.headers:
            # A per-batch key cannot be honoured all-or-none without a lookup the store does not offer.
            raise ValidationError(f"{IDEMPOTENCY_HEADER} is not supported on /scans/batch; use POST /scans per scan")
        body = await read_body(request, max_bytes=self._max_body_bytes)
        if not body:
            raise ValidationError('send a JSON body {"scans": [...]}')
        batch = decode_json(body, self._batch_decoder)
        scans = await self._scans.submit_many(batch.scans, caller=caller)
        return json_response(BatchResponse(scans=[scan_out(s) for s in scans]), status_code=202)

    async def cancel(self, request: Request) -> Response:
        """``POST /scans/{scan_id}/cancel``: the scan (Cancelled, or cancel requested while it runs)."""
        caller = await self._callers(request)
        scan = await self._scans.cancel(request.path_params["scan_id"], caller=caller)
        return json_response(scan_out(scan))

    def operations(self, *, with_root: bool = True) -> list[Operation]:
        """The ingest routes with their documentation; ``with_root`` False leaves ``GET /`` to the caller."""
        scan_created = Reply(
            description="Accepted: the scan is stored durably",
            body=ScanOut,
            headers={"Location": "The scan's path on the status service"},
        )
        ops = [
            Operation(
                method="POST",
                path="/scans",
                endpoint=self.submit,
                operation_id="submit_scan",
                summary="Queue one scan",
                tag=TAG,
                secured=True,
                request=ScanRequest,
                params=(
                    Param(
                        name=IDEMPOTENCY_HEADER,
                        location="header",
                        description="Replaying a key answers the same scan (200); a different request with it is a 409",
                        schema={"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
                    ),
                ),
                replies={
                    202: scan_created,
                    200: Reply(
                        description="The scan stored earlier under this Idempotency-Key",
                        body=ScanOut,
                        headers={
                            "Location": "The scan's path on the status service",
                            REPLAYED_HEADER: "Always true: this answer replays an earlier submission",
                        },
                    ),
                    **BODY_ERRORS,
                    **AUTH_ERRORS,
                    409: error_reply("The Idempotency-Key was used for a different request"),
                    **QUOTA_ERRORS,
                    **STORE_ERRORS,
                },
            ),
            Operation(
                method="POST",
                path="/scans/batch",
                endpoint=self.submit_batch,
                operation_id="submit_scans",
                summary="Queue several scans: all or none",
                tag=TAG,
                secured=True,
                request=BatchRequest,
                request_required=True,
                replies={
                    202: Reply(description="Accepted: every scan is stored durably", body=BatchResponse),
                    **BODY_ERRORS,
                    **AUTH_ERRORS,
                    **QUOTA_ERRORS,
                    **STORE_ERRORS,
                },
            ),
            Operation(
                method="POST",
                path="/scans/{scan_id}/cancel",
                endpoint=self.cancel,
                operation_id="cancel_scan",
                summary="Cancel a scan",
                tag=TAG,
                secured=True,
                params=(SCAN_ID_PARAM,),
                replies={
                    200: Reply(
                        description="The scan: Cancelled (also when it already was), or cancel_requested while it runs",
                        body=ScanOut,
                    ),
                    404: Reply(description="No scan with that id", body=NotFoundResponse),
                    409: error_reply("The scan already finished: Complete or Error"),
                    415: BODY_ERRORS[415],
                    **AUTH_ERRORS,
                    **STORE_ERRORS,
                },
            ),
        ]
        if with_root:
            ops.insert(0, self.root_operation())
        return ops

    def root_operation(self) -> Operation:
        """``GET /`` (never HEAD: it writes)."""
        return Operation(
            method="GET",
            path="/",
            endpoint=self.queue_default,
            operation_id="queue_default_scan",
            summary="Queue a default scan; the body is its id",
            tag=TAG,
            secured=True,
            allow_head=False,
            replies={
                200: Reply(
                    description="The new scan's id",
                    media_type="text/plain",
                    schema={"type": "string", "format": "uuid"},
                ),
                422: error_reply("The default scanner needs a target"),
                **AUTH_ERRORS,
                **QUOTA_ERRORS,
                **STORE_ERRORS,
            },
        )
