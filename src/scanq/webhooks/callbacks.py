"""One-off callbacks: a tenant's callback endpoint, which signs the deliveries to its scans' ``callback_url``.

A submission may carry a ``callback_url``: that scan's events go there, once
each, like any webhook (signed, at least once, the SSRF guard at every
attempt, retries, listed deliveries). The store keeps one endpoint per tenant
for them, without a URL of its own (``WebhookEndpoint.url`` None), under
``callback_endpoint_id(tenant)``; its secret signs every callback of the
tenant, and each delivery carries its scan's URL (``Delivery.url``). The API
names it ``callbacks`` (``CALLBACKS_ID``).

``CallbackEndpoints`` makes it the first time a tenant needs it (a
submission with a ``callback_url``, or ``GET /webhooks/callbacks``), before
the scan is stored, so the scan's events find it. Which tenants have one is
kept per process for ``CACHE_S``: a submission does not pay a store read. A
deletion by another process is seen within that time (until then a scan
submitted there with a ``callback_url`` finds no endpoint, and its events
make no callback).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from scanq.exceptions import EndpointNotFound, ValidationError
from scanq.models import DEFAULT_WEBHOOK_EVENTS, WebhookEndpoint
from scanq.store import Store
from scanq.store.events_contract import callback_endpoint_id
from scanq.webhooks.signing import generate_secret

CALLBACKS_ID = "callbacks"
"""The callback endpoint's id in the API, the same for every tenant (the store's is ``callback_endpoint_id``)."""
CALLBACK_DESCRIPTION = "One-off callbacks (callback_url on submissions)"
# A tenant known to have its callback endpoint is not read again for this long (per process).
CACHE_S = 10.0
# More tenants than this in the cache: it starts over (a read per tenant again), so it stays bounded.
MAX_CACHED_TENANTS = 10_000
# Made and deleted at once elsewhere: read and create again at most this many times.
ENSURE_ROUNDS = 3


def is_callback_endpoint(endpoint: WebhookEndpoint) -> bool:
    """True for a tenant's callback endpoint (it has no URL of its own)."""
    return endpoint.url is None


def public_endpoint_id(endpoint_id: str, *, tenant: str) -> str:
    """The id the API shows for the store's ``endpoint_id`` of ``tenant``: ``callbacks`` for the callback endpoint."""
    return CALLBACKS_ID if endpoint_id == callback_endpoint_id(tenant) else endpoint_id


class CallbackEndpoints:
    """Makes, finds and remembers each tenant's callback endpoint (per process).

    Args:
        store: an open store.
        new_secret: makes its signing secret (default ``signing.generate_secret``).
        clock: the current time (its ``created_at``).
        cache_s: how long a tenant known to have one is not read again.
        monotonic: the clock of the cache.
    """

    def __init__(
        self,
        store: Store,
        *,
        new_secret: Callable[[], str] = generate_secret,
        clock: Callable[[], datetime] | None = None,
        cache_s: float = CACHE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._new_secret = new_secret
        self._clock = clock or (lambda: datetime.now(UTC))
        self._cache_s = cache_s
        self._monotonic = monotonic
        self._known: dict[str, float] = {}  # tenant → until when it is known to have one
        self._making: dict[str, asyncio.Future[WebhookEndpoint]] = {}

    async def ensure(self, tenant: str) -> None:
        """Make sure ``tenant`` has its callback endpoint; no store call while it is known to have one."""
        until = self._known.get(tenant)
        if until is not None and self._monotonic() < until:
            return
        await self.get_or_create(tenant)

    async def get_or_create(self, tenant: str) -> WebhookEndpoint:
        """``tenant``'s callback endpoint as stored, made now if it has none (concurrent calls share one)."""
        making = self._making.get(tenant)
        if making is not None:
            return await asyncio.shield(making)
        future: asyncio.Future[WebhookEndpoint] = asyncio.get_running_loop().create_future()
        self._making[tenant] = future
        try:
            endpoint = await self._get_or_create(tenant)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: only the callers waiting on it care
            raise
        finally:
            del self._making[tenant]
        future.set_result(endpoint)
        self._remember(tenant)
        return endpoint

    def forget(self, tenant: str) -> None:
        """``tenant``'s callback endpoint was deleted: the next ``ensure`` reads (and makes) it again."""
        self._known.pop(tenant, None)

    async def _get_or_create(self, tenant: str) -> WebhookEndpoint:
        endpoint_id = callback_endpoint_id(tenant)
        for _ in range(ENSURE_ROUNDS):
            try:
                return await self._store.get_endpoint(endpoint_id=endpoint_id, tenant=tenant)
            except EndpointNotFound:
                pass
            now = self._clock()
            endpoint = WebhookEndpoint(
                endpoint_id=endpoint_id,
                tenant=tenant,
                url=None,
                event_types=DEFAULT_WEBHOOK_EVENTS,
                secret=self._new_secret(),
                created_at=now,
                updated_at=now,
                description=CALLBACK_DESCRIPTION,
            )
            try:
                await self._store.create_endpoint(endpoint=endpoint)
            except ValidationError:
                continue  # another process made it meanwhile: read the one stored
            return endpoint
        raise EndpointNotFound(CALLBACKS_ID)

    def _remember(self, tenant: str) -> None:
        if len(self._known) >= MAX_CACHED_TENANTS:
            self._known.clear()
        self._known[tenant] = self._monotonic() + self._cache_s


__all__ = [
    "CACHE_S",
    "CALLBACKS_ID",
    "CALLBACK_DESCRIPTION",
    "CallbackEndpoints",
    "is_callback_endpoint",
    "public_endpoint_id",
]
