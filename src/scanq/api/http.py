"""Request bodies in, JSON out: the wire helpers both services share.

Bodies are read with a hard size limit (``Content-Length`` first, then the
streamed size, so a chunked upload cannot grow without bound) and decoded
with a prebuilt msgspec decoder; responses are plain Starlette ``Response``
objects holding pre-encoded bytes (no middleware, no second serialisation).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive

from scanq.api.errors import JSON_MEDIA_TYPE, ApiError
from scanq.exceptions import ValidationError

T = TypeVar("T")

encoder = msgspec.json.Encoder()


def json_response(body: Any, *, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """Encode ``body`` (a schemas Struct) into a JSON response."""
    return Response(encoder.encode(body), status_code=status_code, headers=headers, media_type=JSON_MEDIA_TYPE)


_JSON_CONTENT_TYPE = (b"content-type", JSON_MEDIA_TYPE.encode("latin-1"))


def json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    """The header list ``json_response`` gives an encoded ``body`` (the hot path's answers build it directly)."""
    return [(b"content-length", b"%d" % len(body)), _JSON_CONTENT_TYPE]


def is_json_media_type(content_type: str) -> bool:
    """True for ``application/json`` (any parameters) and ``application/*+json``."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == JSON_MEDIA_TYPE or (media_type.startswith("application/") and media_type.endswith("+json"))


async def read_body(request: Request, *, max_bytes: int) -> bytes:
    """The request body, refused with 413 past ``max_bytes``.

    The content type was checked before the app ran (``crosssite.CrossSiteGuard``: a body must be
    declared JSON). The 413 says ``Connection: close``: the rest of the body is read and discarded
    below the app (``edge.EdgeProtocol``), then the connection closes.
    """
    return await receive_body(request.receive, request.headers.get("content-length"), max_bytes=max_bytes)


async def receive_body(receive: Receive, declared: str | None, *, max_bytes: int) -> bytes:
    """``read_body`` from the ASGI channel and the (first) ``Content-Length`` header, for the hot path."""
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", f"invalid Content-Length {declared!r}") from None
        if length > max_bytes:
            raise _too_large(max_bytes)
    # The ASGI receive channel directly: cheaper than Request.stream() on the hot path, and it stops
    # at the limit instead of buffering whatever a chunked upload sends.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode_json(body: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode and validate in one step: malformed JSON is a 400, a valid JSON body of the wrong shape a 422."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        # msgspec stops at the first problem, so `[1` reads as "expected object"; on this cold path,
        # parse again untyped so a body that is not JSON at all is always the 400.
        _check_well_formed(body)
        raise ValidationError(f"invalid request body: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # Released msgspec versions raise UnicodeDecodeError, not DecodeError, for invalid UTF-8 inside a string.
        raise _malformed(exc) from None
    except RecursionError:
        raise ValidationError("invalid request body: nested too deeply") from None


def _check_well_formed(body: bytes) -> None:
    try:
        msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise _malformed(exc) from None
    except RecursionError:
        pass  # well-formed as far as it goes; the typed error stands


def _malformed(exc: msgspec.DecodeError | UnicodeDecodeError) -> ApiError:
    if isinstance(exc, UnicodeDecodeError):
        reason = f"a string is not valid UTF-8 ({exc.reason})"
        return ApiError(400, "malformed_json", f"the body is not valid JSON: {reason}")
    return ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}")


def _too_large(max_bytes: int) -> ApiError:
    # Closing tells the client not to send its next request on this connection while the rest is drained.
    return ApiError(
        413, "body_too_large", f"the body is larger than {max_bytes} bytes", headers={"Connection": "close"}
    )
