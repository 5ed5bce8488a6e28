"""``/healthz``, ``/readyz`` and ``/openapi.json``: the operations every service has beside its own."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from scanq.api.errors import JSON_MEDIA_TYPE
from scanq.api.http import encoder
from scanq.api.openapi import STORE_ERRORS, Operation, Reply
from scanq.api.schemas import HealthResponse, ReadyResponse
from scanq.store import Store

TAG = "health"

_HEALTHY = encoder.encode(HealthResponse())
_READY = encoder.encode(ReadyResponse())


class HealthEndpoints:
    """``/healthz``, ``/readyz`` and ``/openapi.json``, on every service.

    Args:
        store: pinged by ``/readyz``.
    """

    def __init__(self, *, store: Store) -> None:
        self._store = store
        self.document = b"{}"  # set once the service's operations are known

    async def healthz(self, request: Request) -> Response:
        """The process is up (never touches the store)."""
        return Response(_HEALTHY, media_type=JSON_MEDIA_TYPE)

    async def readyz(self, request: Request) -> Response:
        """The store answers; a ``StoreError`` becomes a 503 through the error handlers."""
        await self._store.ping()
        return Response(_READY, media_type=JSON_MEDIA_TYPE)

    async def openapi(self, request: Request) -> Response:
        """The OpenAPI 3.1 document, encoded once."""
        return Response(self.document, media_type=JSON_MEDIA_TYPE)

    def operations(self) -> list[Operation]:
        return [
            Operation(
                method="GET",
                path="/healthz",
                endpoint=self.healthz,
                operation_id="healthz",
                summary="The process is up",
                tag=TAG,
                replies={200: Reply(description="Up", body=HealthResponse)},
            ),
            Operation(
                method="GET",
                path="/readyz",
                endpoint=self.readyz,
                operation_id="readyz",
                summary="The store is reachable",
                tag=TAG,
                replies={200: Reply(description="Ready", body=ReadyResponse), **STORE_ERRORS},
            ),
            Operation(
                method="GET",
                path="/openapi.json",
                endpoint=self.openapi,
                operation_id="openapi",
                summary="This document",
                tag=TAG,
                replies={200: Reply(description="OpenAPI 3.1", schema={"type": "object"})},
            ),
        ]


__all__ = ["TAG", "HealthEndpoints"]
