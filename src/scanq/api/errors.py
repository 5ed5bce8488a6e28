"""The one JSON error shape, and the one place that maps errors to HTTP.

Handlers raise domain errors (``scanq.exceptions``) or ``ApiError`` for a
refusal that only exists on the wire (malformed JSON, a body too large, a
wrong content type); the Starlette exception handlers registered by
``EXCEPTION_HANDLERS`` turn each into a status code and a body:

====================================================  ======  =========================
error                                                 status  body
====================================================  ======  =========================
ValidationError, TargetRefused, UnknownScanner        422     ``ErrorResponse``
ScanNotFound                                          404     ``NotFoundResponse``
EndpointNotFound, DeliveryNotFound                    404     ``ErrorResponse``
ScanFinished, IdempotencyConflict                     409     ``ErrorResponse``
Unauthenticated (+ ``WWW-Authenticate: Bearer``)      401     ``ErrorResponse``
Forbidden                                             403     ``ErrorResponse``
QuotaExceeded (+ ``Retry-After``)                     429     ``ErrorResponse``
StoreUnavailable, StoreError                          503     ``ErrorResponse``
ApiError (400 malformed JSON, 413, 415)               as set  ``ErrorResponse``
unknown route / wrong method (Starlette)              404/405 ``ErrorResponse``
anything else                                         500     ``ErrorResponse``
====================================================  ======  =========================
"""

from __future__ import annotations

import http
import logging
import math
from collections.abc import Mapping

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ExceptionHandler

from scanq.api.schemas import NotFoundResponse
from scanq.exceptions import (
    DeliveryNotFound,
    EndpointNotFound,
    Forbidden,
    IdempotencyConflict,
    QuotaExceeded,
    ScanFinished,
    ScanNotFound,
    ScanqError,
    StoreError,
    StoreUnavailable,
    TargetRefused,
    Unauthenticated,
    UnknownScanner,
    ValidationError,
)

logger = logging.getLogger(__name__)

JSON_MEDIA_TYPE = "application/json"
INTERNAL_ERROR_MESSAGE = "internal server error"


class ErrorDetail(msgspec.Struct, kw_only=True):
    """What went wrong: a stable machine-readable ``code`` and a message for people."""

    code: str
    message: str


class ErrorResponse(msgspec.Struct, kw_only=True):
    """Every error except the scan 404 has this shape."""

    error: ErrorDetail


class ApiError(HTTPException):
    """A refusal that exists only on the wire: malformed JSON, a body too large, a wrong content type.

    Args:
        status_code: the HTTP status.
        code: the ``ErrorDetail.code``.
        message: the ``ErrorDetail.message``.
        headers: extra response headers.
    """

    def __init__(self, status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status_code, detail=message, headers=headers)
        self.code = code


# Most specific first is not needed: the lookup walks each error's MRO.
DOMAIN_ERRORS: Mapping[type[ScanqError], tuple[int, str]] = {
    TargetRefused: (422, "target_refused"),
    ValidationError: (422, "invalid_request"),
    UnknownScanner: (422, "unknown_scanner"),
    EndpointNotFound: (404, "endpoint_not_found"),
    DeliveryNotFound: (404, "delivery_not_found"),
    ScanFinished: (409, "scan_finished"),
    IdempotencyConflict: (409, "idempotency_conflict"),
    Unauthenticated: (401, "unauthenticated"),
    Forbidden: (403, "forbidden"),
    QuotaExceeded: (429, "quota_exceeded"),
    StoreUnavailable: (503, "store_unavailable"),
    StoreError: (503, "store_error"),
}

# Codes for Starlette's own HTTPExceptions (routing) and any ApiError raised without one.
HTTP_CODES: Mapping[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}

_encoder = msgspec.json.Encoder()


def error_body(code: str, message: str) -> bytes:
    """The one error body as bytes (for answers written below the ASGI app, see ``edge.py``)."""
    return _encoder.encode(ErrorResponse(error=ErrorDetail(code=code, message=message)))


def error_response(status_code: int, code: str, message: str, *, headers: Mapping[str, str] | None = None) -> Response:
    """The one error body, encoded."""
    return Response(error_body(code, message), status_code=status_code, headers=headers, media_type=JSON_MEDIA_TYPE)


def not_found_response(scan_id: str) -> Response:
    """The original system's 404 for an unknown or malformed scan id."""
    return Response(_encoder.encode(NotFoundResponse(scan_id=scan_id)), status_code=404, media_type=JSON_MEDIA_TYPE)


def classify(exc: ScanqError) -> tuple[int, str]:
    """The HTTP status and error code for a domain error (500 ``internal_error`` when unmapped)."""
    for cls in type(exc).__mro__:
        mapped = DOMAIN_ERRORS.get(cls)
        if mapped is not None:
            return mapped
    return 500, "internal_error"


async def handle_scanq_error(request: Request, exc: Exception) -> Response:
    """Map a domain error raised by a handler or the scan service."""
    assert isinstance(exc, ScanqError)
    if isinstance(exc, ScanNotFound):
        return not_found_response(exc.scan_id)
    status_code, code = classify(exc)
    if isinstance(exc, StoreUnavailable):
        # An outage answers every request with 503; one traceback per request would flood the log.
        logger.warning("%s %s: store unavailable: %s", request.method, request.url.path, exc)
        return error_response(status_code, code, exc.message)
    if status_code >= 500:
        logger.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
        message = exc.message if isinstance(exc, StoreError) else INTERNAL_ERROR_MESSAGE
        return error_response(status_code, code, message)
    logger.debug("%s %s refused (%s): %s", request.method, request.url.path, code, exc)
    return error_response(status_code, code, exc.message, headers=refusal_headers(exc, request))


def refusal_headers(exc: ScanqError, request: Request) -> Mapping[str, str] | None:
    """The headers a refusal carries: the Bearer challenge of a 401 (RFC 6750), the wait of a 429."""
    if isinstance(exc, Unauthenticated):
        if "authorization" not in request.headers:
            return {"WWW-Authenticate": 'Bearer realm="scanq"'}
        return {"WWW-Authenticate": 'Bearer realm="scanq", error="invalid_token"'}
    if isinstance(exc, Forbidden):
        return {"WWW-Authenticate": 'Bearer realm="scanq", error="insufficient_scope"'}
    if isinstance(exc, QuotaExceeded):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return None


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's routing errors (404 unknown route, 405 wrong method) and ``ApiError`` in the one shape."""
    assert isinstance(exc, HTTPException)
    code = exc.code if isinstance(exc, ApiError) else HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail
    headers = exc.headers
    if not isinstance(exc, ApiError):
        if exc.status_code == 404:
            message = f"no route for {request.method} {request.url.path}"
        elif exc.status_code == 405:
            # Starlette builds Allow from a set; sort it so the answer is the same every time.
            allowed = ", ".join(sorted(m.strip() for m in (headers or {}).get("Allow", "").split(",") if m.strip()))
            headers = {**(headers or {}), "Allow": allowed}
            message = f"method {request.method} is not allowed on {request.url.path} (allowed: {allowed})"
        else:
            message = message or http.HTTPStatus(exc.status_code).phrase
    return error_response(exc.status_code, code, message, headers=headers)


async def handle_client_disconnect(request: Request, exc: Exception) -> Response:
    """The client went away while sending its body: nothing was written, and nobody reads this answer."""
    logger.debug("%s %s: client disconnected", request.method, request.url.path)
    return error_response(400, "client_disconnected", "the client disconnected before sending the whole body")


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """The 500 body; Starlette's ServerErrorMiddleware re-raises, so uvicorn logs the traceback once."""
    return error_response(500, "internal_error", INTERNAL_ERROR_MESSAGE)


EXCEPTION_HANDLERS: Mapping[object, ExceptionHandler] = {
    ScanqError: handle_scanq_error,
    HTTPException: handle_http_exception,
    ClientDisconnect: handle_client_disconnect,
    Exception: handle_unexpected,
}
