"""The routes of a tenant's callback endpoint: ``/webhooks/callbacks`` (scope ``webhooks``).

The callback endpoint signs the deliveries to each scan's own ``callback_url``
(``POST /scans {"callback_url": …}``); it has no URL and exists once per
tenant. ``GET /webhooks/callbacks`` answers it with its secret, making it
first if the tenant has none yet (so a receiver can be set up before the first
submission); the other routes are those of any endpoint. Each acts on the
caller's tenant; an admin token may name another with ``?tenant=``.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from scanq.api.callers import Callers
from scanq.api.http import json_response
from scanq.api.openapi import AUTH_ERRORS, BODY_ERRORS, STORE_ERRORS, Operation, Param, Reply, error_reply
from scanq.api.schemas import (
    DeliveryList,
    DeliveryOut,
    WebhookSecretOut,
    delivery_out,
    webhook_secret_out,
)
from scanq.auth import TENANT_PATTERN, check_tenant
from scanq.webhook_service import CALLBACKS_ID, WebhookService

TAG = "webhooks"
CALLBACKS_PATH = f"/webhooks/{CALLBACKS_ID}"

CALLBACK_TENANT_PARAM = Param(
    name="tenant",
    location="query",
    description="Whose callback endpoint (default: the token's tenant; another tenant's only with an admin token)",
    schema={"type": "string", "pattern": TENANT_PATTERN},
)


def _tenant(request: Request) -> str | None:
    raw = request.query_params.get("tenant")
    return None if raw is None else check_tenant(raw)


class CallbackRoutes:
    """The handlers of ``/webhooks/callbacks``.

    Args:
        webhooks: the webhook service.
        callers: who each request is from.
        deliveries_params: the ``status`` and ``limit`` parameters of a deliveries list.
        event_id_param: the retry's ``event_id`` path parameter.
        limit: parses ``?limit=``.
    """

    def __init__(
        self,
        *,
        webhooks: WebhookService,
        callers: Callers,
        deliveries_params: tuple[Param, ...],
        event_id_param: Param,
        limit: Callable[[str | None], int],
    ) -> None:
        self._webhooks = webhooks
        self._callers = callers
        self._deliveries_params = deliveries_params
        self._event_id_param = event_id_param
        self._parse_limit = limit

    async def show(self, request: Request) -> Response:
        """``GET /webhooks/callbacks``: the callback endpoint with its secret (made now if there is none)."""
        caller = await self._callers(request)
        endpoint = await self._webhooks.callback_endpoint(tenant=_tenant(request), caller=caller)
        return json_response(webhook_secret_out(endpoint))

    async def delete(self, request: Request) -> Response:
        """``DELETE /webhooks/callbacks``: 204; the next callback makes a new one, with a new secret."""
        caller = await self._callers(request)
        await self._webhooks.delete(CALLBACKS_ID, tenant=_tenant(request), caller=caller)
        return Response(status_code=204)

    async def rotate_secret(self, request: Request) -> Response:
        """``POST /webhooks/callbacks/rotate-secret``: the endpoint with its new secret."""
        caller = await self._callers(request)
        endpoint = await self._webhooks.rotate_secret(CALLBACKS_ID, tenant=_tenant(request), caller=caller)
        return json_response(webhook_secret_out(endpoint))

    async def deliveries(self, request: Request) -> Response:
        """``GET /webhooks/callbacks/deliveries``: newest event first; ``?status=``, ``?limit=``."""
        caller = await self._callers(request)
        query = request.query_params
        deliveries = await self._webhooks.deliveries(
            CALLBACKS_ID,
            status=query.get("status"),
            limit=self._parse_limit(query.get("limit")),
            tenant=_tenant(request),
            caller=caller,
        )
        return json_response(DeliveryList(deliveries=[delivery_out(d) for d in deliveries]))

    async def retry(self, request: Request) -> Response:
        """``POST /webhooks/callbacks/deliveries/{event_id}/retry``: the delivery, pending and due now."""
        caller = await self._callers(request)
        delivery = await self._webhooks.retry(
            CALLBACKS_ID, request.path_params["event_id"], tenant=_tenant(request), caller=caller
        )
        return json_response(delivery_out(delivery))

    def operations(self) -> list[Operation]:
        """The callback endpoint's routes with their documentation."""
        not_found = error_reply("The tenant has no callback endpoint (yet: GET /webhooks/callbacks makes it)")
        refused = {
            422: error_reply("A tenant name no tenant can have"),
            **AUTH_ERRORS,
            **STORE_ERRORS,
        }
        tenant = (CALLBACK_TENANT_PARAM,)
        return [
            Operation(
                method="GET",
                path=CALLBACKS_PATH,
                endpoint=self.show,
                operation_id="get_callback_endpoint",
                summary="The tenant's callback endpoint with its signing secret; made now if it has none",
                tag=TAG,
                secured=True,
                allow_head=False,  # it may write
                params=tenant,
                replies={
                    200: Reply(
                        description="The callback endpoint (url null) and the secret that signs every callback",
                        body=WebhookSecretOut,
                    ),
                    **refused,
                },
            ),
            Operation(
                method="DELETE",
                path=CALLBACKS_PATH,
                endpoint=self.delete,
                operation_id="delete_callback_endpoint",
                summary="Delete the callback endpoint and its deliveries (the next callback makes a new one)",
                tag=TAG,
                secured=True,
                params=tenant,
                replies={204: Reply(description="Deleted"), 404: not_found, **refused},
            ),
            Operation(
                method="POST",
                path=f"{CALLBACKS_PATH}/rotate-secret",
                endpoint=self.rotate_secret,
                operation_id="rotate_callback_secret",
                summary="Give the callback endpoint a new signing secret; the old one keeps signing for 24 hours",
                tag=TAG,
                secured=True,
                params=tenant,
                replies={
                    200: Reply(description="The endpoint with its new secret", body=WebhookSecretOut),
                    404: not_found,
                    415: BODY_ERRORS[415],
                    **refused,
                },
            ),
            Operation(
                method="GET",
                path=f"{CALLBACKS_PATH}/deliveries",
                endpoint=self.deliveries,
                operation_id="list_callback_deliveries",
                summary="The callbacks' deliveries, newest event first (each with the scan's callback_url)",
                tag=TAG,
                secured=True,
                params=(*self._deliveries_params, *tenant),
                replies={
                    200: Reply(description="Deliveries with their last attempt", body=DeliveryList),
                    404: not_found,
                    422: error_reply("An unknown status, a limit that is not an integer in range, or a bad tenant"),
                    **AUTH_ERRORS,
                    **STORE_ERRORS,
                },
            ),
            Operation(
                method="POST",
                path=f"{CALLBACKS_PATH}/deliveries/{{event_id}}/retry",
                endpoint=self.retry,
                operation_id="retry_callback_delivery",
                summary="Send a callback again now (its attempts so far are kept)",
                tag=TAG,
                secured=True,
                params=(self._event_id_param, *tenant),
                replies={
                    200: Reply(description="The delivery, pending and due now", body=DeliveryOut),
                    404: error_reply("No callback endpoint, or no delivery of that event to it"),
                    415: BODY_ERRORS[415],
                    **refused,
                },
            ),
        ]


__all__ = ["CALLBACKS_PATH", "CallbackRoutes"]
