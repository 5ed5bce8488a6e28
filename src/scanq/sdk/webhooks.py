"""``client.webhooks``: a tenant's webhook endpoints and their deliveries, on ``Client`` and ``AsyncClient``.

::

    endpoint = client.webhooks.create("https://hooks.example.com/scanq", description="ticketing")
    keep(endpoint.secret)  # whsec_…, shown only now (and by rotate_secret)
    for delivery in client.webhooks.deliveries(endpoint.endpoint_id, status="failed"):
        client.webhooks.retry(endpoint.endpoint_id, delivery.event_id)

The calls go to the ingest service and need a token with the ``webhooks`` scope. The id ``callbacks`` names
the tenant's callback endpoint (it signs the deliveries to each scan's ``callback_url``): ``get("callbacks")``
answers it with its ``secret``, making it if the tenant has none yet; the other calls work on it as on any.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Iterable

import httpx

from scanq.sdk.models import Delivery, DeliveryList, Webhook, WebhookList, WebhookRequest
from scanq.sdk.wire import Call, Endpoints, decode


def _request(url: str, event_types: Iterable[str] | None, description: str | None) -> WebhookRequest:
    return WebhookRequest(
        url=url, event_types=None if event_types is None else list(event_types), description=description
    )


class Webhooks:
    """The webhook operations of a blocking ``Client`` (``client.webhooks``).

    Args:
        endpoints: the services' URLs.
        send: sends a call with the client's retries.
    """

    def __init__(self, endpoints: Endpoints, send: Callable[[Call], httpx.Response]) -> None:
        self._endpoints = endpoints
        self._send = send

    def create(self, url: str, event_types: Iterable[str] | None = None, description: str | None = None) -> Webhook:
        """Register an endpoint for the token's tenant; the answer carries its ``secret`` (shown only now).

        ``event_types``: ``scan.completed``, ``scan.failed``, ``scan.cancelled``, ``scan.started``,
        ``scan.accepted`` (default: the first three). ``InvalidRequest`` for a URL the service refuses
        (not https, or not public).
        """
        call = self._endpoints.create_webhook(_request(url, event_types, description))
        return decode(self._send(call), Webhook)

    def list(self, tenant: str | None = None) -> builtins.list[Webhook]:
        """The endpoints, oldest first (``tenant``: an admin's filter)."""
        return decode(self._send(self._endpoints.list_webhooks(tenant=tenant)), WebhookList).webhooks

    def get(self, endpoint_id: str) -> Webhook:
        """One endpoint (``NotFound`` for an unknown id, or another tenant's); ``callbacks`` with its secret."""
        return decode(self._send(self._endpoints.get_webhook(endpoint_id)), Webhook)

    def delete(self, endpoint_id: str) -> None:
        """Delete an endpoint; its undelivered events are dropped."""
        self._send(self._endpoints.delete_webhook(endpoint_id))

    def rotate_secret(self, endpoint_id: str) -> Webhook:
        """A new secret (in the answer); deliveries are signed with the old one too for 24 hours."""
        return decode(self._send(self._endpoints.rotate_webhook_secret(endpoint_id)), Webhook)

    def deliveries(
        self, endpoint_id: str, status: str | None = None, limit: int | None = None
    ) -> builtins.list[Delivery]:
        """The endpoint's deliveries, newest event first (``status``: pending, delivered or failed)."""
        call = self._endpoints.webhook_deliveries(endpoint_id, status=status, limit=limit)
        return decode(self._send(call), DeliveryList).deliveries

    def retry(self, endpoint_id: str, event_id: str) -> Delivery:
        """Send a delivery again now (a failed one too); its attempts so far are kept."""
        return decode(self._send(self._endpoints.retry_delivery(endpoint_id, event_id)), Delivery)


class AsyncWebhooks:
    """The webhook operations of an ``AsyncClient`` (``client.webhooks``); see ``Webhooks``.

    Args:
        endpoints: the services' URLs.
        send: sends a call with the client's retries.
    """

    def __init__(self, endpoints: Endpoints, send: Callable[[Call], Awaitable[httpx.Response]]) -> None:
        self._endpoints = endpoints
        self._send = send

    async def create(
        self, url: str, event_types: Iterable[str] | None = None, description: str | None = None
    ) -> Webhook:
        """Register an endpoint for the token's tenant; the answer carries its ``secret`` (shown only now)."""
        call = self._endpoints.create_webhook(_request(url, event_types, description))
        return decode(await self._send(call), Webhook)

    async def list(self, tenant: str | None = None) -> builtins.list[Webhook]:
        """The endpoints, oldest first (``tenant``: an admin's filter)."""
        return decode(await self._send(self._endpoints.list_webhooks(tenant=tenant)), WebhookList).webhooks

    async def get(self, endpoint_id: str) -> Webhook:
        """One endpoint (``NotFound`` for an unknown id, or another tenant's); ``callbacks`` with its secret."""
        return decode(await self._send(self._endpoints.get_webhook(endpoint_id)), Webhook)

    async def delete(self, endpoint_id: str) -> None:
        """Delete an endpoint; its undelivered events are dropped."""
        await self._send(self._endpoints.delete_webhook(endpoint_id))

    async def rotate_secret(self, endpoint_id: str) -> Webhook:
        """A new secret (in the answer); deliveries are signed with the old one too for 24 hours."""
        return decode(await self._send(self._endpoints.rotate_webhook_secret(endpoint_id)), Webhook)

    async def deliveries(
        self, endpoint_id: str, status: str | None = None, limit: int | None = None
    ) -> builtins.list[Delivery]:
        """The endpoint's deliveries, newest event first (``status``: pending, delivered or failed)."""
        call = self._endpoints.webhook_deliveries(endpoint_id, status=status, limit=limit)
        return decode(await self._send(call), DeliveryList).deliveries

    async def retry(self, endpoint_id: str, event_id: str) -> Delivery:
        """Send a delivery again now (a failed one too); its attempts so far are kept."""
        return decode(await self._send(self._endpoints.retry_delivery(endpoint_id, event_id)), Delivery)


__all__ = ["AsyncWebhooks", "Webhooks"]
