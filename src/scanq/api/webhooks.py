"""The webhook routes of the ingest service: a tenant's endpoints and their deliveries (scope ``webhooks``)."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from scanq.api.callbacks import CallbackRoutes
from scanq.api.callers import OPEN, Callers
from scanq.api.http import decode_json, json_response, read_body
from scanq.api.openapi import AUTH_ERRORS, BODY_ERRORS, STORE_ERRORS, Operation, Param, Reply, error_reply
from scanq.api.schemas import (
    DeliveryList,
    DeliveryOut,
    WebhookList,
    WebhookOut,
    WebhookRequest,
    WebhookSecretOut,
    delivery_out,
    webhook_out,
    webhook_secret_out,
)
from scanq.auth import TENANT_PATTERN, check_tenant
from scanq.config import Settings
from scanq.exceptions import ValidationError
from scanq.models import DeliveryStatus
from scanq.webhook_service import (
    DEFAULT_DELIVERIES_LIMIT,
    MAX_DELIVERIES_LIMIT,
    MAX_EVENT_ID_LENGTH,
    WebhookService,
)

TAG = "webhooks"

ENDPOINT_ID_PARAM = Param(
    name="endpoint_id",
    location="path",
    description="The endpoint's id (wh_…)",
    schema={"type": "string"},
    required=True,
)
EVENT_ID_PARAM = Param(
    name="event_id",
    location="path",
    description="The event's id (opaque; as in the delivery and the webhook-id header)",
    schema={"type": "string", "minLength": 1, "maxLength": MAX_EVENT_ID_LENGTH},
    required=True,
)
TENANT_PARAM = Param(
    name="tenant",
    location="query",
    description="Only this tenant's endpoints (an admin token's filter; any other token may only name its own)",
    schema={"type": "string", "pattern": TENANT_PATTERN},
)
DELIVERY_FILTERS = (
    Param(
        name="status",
        location="query",
        description="Only deliveries in this state",
        schema={"type": "string", "enum": [s.value for s in DeliveryStatus]},
    ),
    Param(
        name="limit",
        location="query",
        description="At most this many (newest event first)",
        schema={"type": "integer", "minimum": 1, "maximum": MAX_DELIVERIES_LIMIT, "default": DEFAULT_DELIVERIES_LIMIT},
    ),
)
DELIVERY_PARAMS = (ENDPOINT_ID_PARAM, *DELIVERY_FILTERS)


def endpoint_location(endpoint_id: str) -> str:
    """Where an endpoint is read and deleted."""
    return f"/webhooks/{endpoint_id}"


class WebhookEndpoints:
    """The webhook handlers.

    Args:
        webhooks: the webhook service.
        settings: the body size limit.
        callers: who each request is from (default: authentication off).
    """

    def __init__(self, *, webhooks: WebhookService, settings: Settings, callers: Callers = OPEN) -> None:
        self._webhooks = webhooks
        self._callers = callers
        self._max_body_bytes = settings.max_body_bytes
        self._decoder = msgspec.json.Decoder(WebhookRequest)
        self._callbacks = CallbackRoutes(
            webhooks=webhooks,
            callers=callers,
            deliveries_params=DELIVERY_FILTERS,
            event_id_param=EVENT_ID_PARAM,
            limit=parse_limit,
        )

    async def create(self, request: Request) -> Response:
        """``POST /webhooks``: 201 with the endpoint and its secret (shown this once)."""
        caller = await self._callers(request)
        body = await read_body(request, max_bytes=self._max_body_bytes)
        if not body:
            raise ValidationError('send a JSON body {"url": "https://…"}')
        wanted = decode_json(body, self._decoder)
        endpoint = await self._webhooks.create(wanted.to_request(), caller=caller)
        return json_response(
            webhook_secret_out(endpoint),
            status_code=201,
            headers={"Location": endpoint_location(endpoint.endpoint_id)},
        )

    async def list_endpoints(self, request: Request) -> Response:
        """``GET /webhooks``: the endpoints, oldest first."""
        caller = await self._callers(request)
        raw = request.query_params.get("tenant")
        tenant = None if raw is None else check_tenant(raw)
        endpoints = await self._webhooks.list_endpoints(tenant=tenant, caller=caller)
        return json_response(WebhookList(webhooks=[webhook_out(e) for e in endpoints]))

    async def get(self, request: Request) -> Response:
        """``GET /webhooks/{endpoint_id}``: one endpoint, without its secret."""
        caller = await self._callers(request)
        endpoint = await self._webhooks.get(request.path_params["endpoint_id"], caller=caller)
        return json_response(webhook_out(endpoint))

    async def delete(self, request: Request) -> Response:
        """``DELETE /webhooks/{endpoint_id}``: 204; its pending deliveries are dropped."""
        caller = await self._callers(request)
        await self._webhooks.delete(request.path_params["endpoint_id"], caller=caller)
        return Response(status_code=204)

    async def rotate_secret(self, request: Request) -> Response:
        """``POST /webhooks/{endpoint_id}/rotate-secret``: the endpoint with its new secret."""
        caller = await self._callers(request)
        endpoint = await self._webhooks.rotate_secret(request.path_params["endpoint_id"], caller=caller)
        return json_response(webhook_secret_out(endpoint))

    async def deliveries(self, request: Request) -> Response:
        """``GET /webhooks/{endpoint_id}/deliveries``: newest event first; ``?status=``, ``?limit=``."""
        caller = await self._callers(request)
        query = request.query_params
        deliveries = await self._webhooks.deliveries(
            request.path_params["endpoint_id"],
            status=query.get("status"),
            limit=parse_limit(query.get("limit")),
            caller=caller,
        )
        return json_response(DeliveryList(deliveries=[delivery_out(d) for d in deliveries]))

    async def retry(self, request: Request) -> Response:
        """``POST /webhooks/{endpoint_id}/deliveries/{event_id}/retry``: the delivery, pending and due now."""
        caller = await self._callers(request)
        params = request.path_params
        delivery = await self._webhooks.retry(params["endpoint_id"], params["event_id"], caller=caller)
        return json_response(delivery_out(delivery))

    def operations(self) -> list[Operation]:
        """The webhook routes with their documentation (the callback endpoint's first: its paths are fixed)."""
        not_found = error_reply("No webhook endpoint with that id (another tenant's is not found either)")
        no_body = {415: BODY_ERRORS[415], **AUTH_ERRORS, **STORE_ERRORS}
        return [
            *self._callbacks.operations(),
            Operation(
                method="POST",
                path="/webhooks",
                endpoint=self.create,
                operation_id="create_webhook",
                summary="Register a webhook endpoint; its signing secret is in the answer, once",
                tag=TAG,
                secured=True,
                request=WebhookRequest,
                request_required=True,
                replies={
                    201: Reply(
                        description="Registered: events of the caller's tenant from now on are delivered to it",
                        body=WebhookSecretOut,
                        headers={"Location": "The endpoint's path"},
                    ),
                    **BODY_ERRORS,
                    422: error_reply(
                        "Invalid request: wrong types, unknown fields, a URL the SSRF guard refuses (not https, "
                        "not public), or the tenant has too many endpoints"
                    ),
                    **AUTH_ERRORS,
                    **STORE_ERRORS,
                },
            ),
            Operation(
                method="GET",
                path="/webhooks",
                endpoint=self.list_endpoints,
                operation_id="list_webhooks",
                summary="The webhook endpoints, oldest first",
                tag=TAG,
                secured=True,
                params=(TENANT_PARAM,),
                replies={
                    200: Reply(description="The endpoints (without their secrets)", body=WebhookList),
                    422: error_reply("A tenant name no tenant can have"),
                    **AUTH_ERRORS,
                    **STORE_ERRORS,
                },
            ),
            Operation(
                method="GET",
                path="/webhooks/{endpoint_id}",
                endpoint=self.get,
                operation_id="get_webhook",
                summary="One webhook endpoint",
                tag=TAG,
                secured=True,
                params=(ENDPOINT_ID_PARAM,),
                replies={
                    200: Reply(description="The endpoint (without its secret)", body=WebhookOut),
                    404: not_found,
                    **AUTH_ERRORS,
                    **STORE_ERRORS,
                },
            ),
            Operation(
                method="DELETE",
                path="/webhooks/{endpoint_id}",
                endpoint=self.delete,
                operation_id="delete_webhook",
                summary="Delete a webhook endpoint and its deliveries",
                tag=TAG,
                secured=True,
                params=(ENDPOINT_ID_PARAM,),
                replies={204: Reply(description="Deleted"), 404: not_found, **AUTH_ERRORS, **STORE_ERRORS},
            ),
            Operation(
                method="POST",
                path="/webhooks/{endpoint_id}/rotate-secret",
                endpoint=self.rotate_secret,
                operation_id="rotate_webhook_secret",
                summary="Give the endpoint a new signing secret; the old one keeps signing for 24 hours",
                tag=TAG,
                secured=True,
                params=(ENDPOINT_ID_PARAM,),
                replies={
                    200: Reply(description="The endpoint with its new secret (shown this once)", body=WebhookSecretOut),
                    404: not_found,
                    **no_body,
                },
            ),
            Operation(
                method="GET",
                path="/webhooks/{endpoint_id}/deliveries",
                endpoint=self.deliveries,
                operation_id="list_webhook_deliveries",
                summary="The endpoint's deliveries, newest event first",
                tag=TAG,
                secured=True,
                params=DELIVERY_PARAMS,
                replies={
                    200: Reply(description="Deliveries with their last attempt", body=DeliveryList),
                    404: not_found,
                    422: error_reply("An unknown status, or a limit that is not an integer in range"),
                    **AUTH_ERRORS,
                    **STORE_ERRORS,
                },
            ),
            Operation(
                method="POST",
                path="/webhooks/{endpoint_id}/deliveries/{event_id}/retry",
                endpoint=self.retry,
                operation_id="retry_webhook_delivery",
                summary="Send a delivery again now (its attempts so far are kept)",
                tag=TAG,
                secured=True,
                params=(ENDPOINT_ID_PARAM, EVENT_ID_PARAM),
                replies={
                    200: Reply(description="The delivery, pending and due now", body=DeliveryOut),
                    404: error_reply("No such endpoint, or no delivery of that event to it"),
                    **no_body,
                },
            ),
        ]


def parse_limit(raw: str | None) -> int:
    """The ``?limit=`` of a deliveries list (default when absent); ``ValidationError`` when not an integer."""
    if raw is None:
        return DEFAULT_DELIVERIES_LIMIT
    try:
        return int(raw)
    except ValueError:
        raise ValidationError(f"limit must be an integer between 1 and {MAX_DELIVERIES_LIMIT} (got {raw!r})") from None


__all__ = ["WebhookEndpoints", "endpoint_location"]
