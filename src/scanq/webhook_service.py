"""The webhook service: a tenant's webhook endpoints and their deliveries, for a ``Caller``.

Every entry point (the ingest service's ``/webhooks`` routes) calls this; it
calls the ``Store``. Each operation needs the ``webhooks`` scope (``admin``
holds every scope) and acts on the caller's own tenant, or for an admin on
any tenant, as ``ScanService`` does for scans: another tenant's endpoint is
answered as an unknown one (``EndpointNotFound``). Everything a request can
get wrong is refused before anything is written: an endpoint's URL passes the
SSRF guard (``scanq.webhooks.urls.check_endpoint_url``) at registration, and
the worker checks it again at every delivery (DNS may change in between).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from scanq.config import Settings
from scanq.exceptions import DeliveryNotFound, EndpointNotFound, ValidationError
from scanq.models import (
    DEFAULT_WEBHOOK_EVENTS,
    OPERATOR,
    Caller,
    Delivery,
    DeliveryStatus,
    EventType,
    Scope,
    WebhookEndpoint,
)
from scanq.scans import read_scope, require
from scanq.store.base import MAX_PAGE_SIZE, Store
from scanq.webhooks.signing import generate_secret

if TYPE_CHECKING:
    from scanq.webhooks.urls import EndpointRules

logger = logging.getLogger(__name__)

ENDPOINT_ID_PREFIX = "wh_"
ENDPOINT_ID_HEX_CHARS = 24
ENDPOINT_ID_PATTERN = rf"^{ENDPOINT_ID_PREFIX}[0-9a-f]{{{ENDPOINT_ID_HEX_CHARS}}}$"
# After a rotation the old secret still signs (deliveries carry both signatures) this long.
PREVIOUS_SECRET_GRACE = timedelta(hours=24)
MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 500
# Each endpoint is one more delivery per event of its tenant: a bound on the fan-out of one event.
MAX_ENDPOINTS_PER_TENANT = 50
MAX_EVENT_ID_LENGTH = 200
DEFAULT_DELIVERIES_LIMIT = 100
MAX_DELIVERIES_LIMIT = MAX_PAGE_SIZE

_ENDPOINT_ID = re.compile(ENDPOINT_ID_PATTERN)

UrlCheck = Callable[[str], Awaitable[str]]
"""Check an endpoint URL (the SSRF guard): the URL to store, or ``ValidationError``/``TargetRefused``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class EndpointRequest:
    """An endpoint to register (already decoded; bounds are checked by the service).

    ``event_types`` None: ``DEFAULT_WEBHOOK_EVENTS`` (the scan's end).
    """

    url: str
    event_types: Collection[EventType] | None = None
    description: str | None = None


def new_endpoint_id() -> str:
    """A fresh endpoint id: ``wh_`` and 96 random bits in hex."""
    return ENDPOINT_ID_PREFIX + secrets.token_hex(ENDPOINT_ID_HEX_CHARS // 2)


def is_endpoint_id(value: str) -> bool:
    """True for an id ``new_endpoint_id`` can make (anything else is answered as unknown without a store call)."""
    return _ENDPOINT_ID.match(value) is not None


def endpoint_url_check(settings: Settings) -> UrlCheck:
    """The webhooks' SSRF guard (``scanq.webhooks.urls.check_endpoint_url``) under ``settings``' allow-list.

    Its rules are built on first use (it loads the network library) and kept for the process.
    """
    rules: list[EndpointRules] = []

    async def check(url: str) -> str:
        from scanq.webhooks.urls import EndpointRules, check_endpoint_url

        if not rules:
            rules.append(EndpointRules.from_settings(settings))
        return await check_endpoint_url(url, settings, rules=rules[0])

    return check


class WebhookService:
    """Register, read, rotate and delete webhook endpoints, and read and retry their deliveries.

    Args:
        store: an open store.
        settings: the SSRF guard's allow-list (through ``url_check``'s default).
        url_check: the SSRF guard (default: ``endpoint_url_check(settings)``).
        new_secret: makes a signing secret (default: ``scanq.webhooks.signing.generate_secret``, ``whsec_…``).
        clock: the current time (tests pass a fixed one).
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        url_check: UrlCheck | None = None,
        new_secret: Callable[[], str] = generate_secret,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._store = store
        self._check_url = url_check or endpoint_url_check(settings)
        self._new_secret = new_secret
        self._clock = clock or (lambda: datetime.now(UTC))

    async def create(self, request: EndpointRequest, *, caller: Caller = OPERATOR) -> WebhookEndpoint:
        """Register an endpoint of the caller's tenant; it receives events that happen from now on.

        Raise ``Forbidden``, or ``ValidationError`` (``TargetRefused`` for a URL the SSRF guard refuses)
        before anything is written.
        """
        require(caller, Scope.WEBHOOKS)
        event_types = frozenset(DEFAULT_WEBHOOK_EVENTS if request.event_types is None else request.event_types)
        if not event_types:
            raise ValidationError("event_types needs at least one event type (leave it out for the scan's end)")
        description = request.description
        if description is not None and len(description) > MAX_DESCRIPTION_LENGTH:
            raise ValidationError(f"a description is at most {MAX_DESCRIPTION_LENGTH} characters long")
        if not 0 < len(request.url) <= MAX_URL_LENGTH:
            raise ValidationError(f"url must be 1 to {MAX_URL_LENGTH} characters long")
        url = await self._check_url(request.url)
        if len(await self._store.list_endpoints(tenant=caller.tenant)) >= MAX_ENDPOINTS_PER_TENANT:
            raise ValidationError(
                f"tenant {caller.tenant!r} already has {MAX_ENDPOINTS_PER_TENANT} webhook endpoints; delete one first"
            )
        now = self._clock()
        endpoint = WebhookEndpoint(
            endpoint_id=new_endpoint_id(),
            tenant=caller.tenant,
            url=url,
            event_types=event_types,
            secret=self._new_secret(),
            created_at=now,
            updated_at=now,
            description=description,
        )
        await self._store.create_endpoint(endpoint=endpoint)
        logger.info(
            "webhook endpoint %s registered for tenant %s",
            endpoint.endpoint_id,
            endpoint.tenant,
            extra={"action": "webhook_created", "endpoint_id": endpoint.endpoint_id, "tenant": endpoint.tenant},
        )
        return endpoint

    async def list_endpoints(self, *, tenant: str | None = None, caller: Caller = OPERATOR) -> list[WebhookEndpoint]:
        """The endpoints of the caller's tenant (an admin: of ``tenant``, None: every tenant), oldest first."""
        scope = read_scope(caller, tenant, scope=Scope.WEBHOOKS, what="webhook endpoints")
        return await self._store.list_endpoints(tenant=scope)

    async def get(self, endpoint_id: str, *, caller: Caller = OPERATOR) -> WebhookEndpoint:
        """One endpoint; ``EndpointNotFound`` also for another tenant's and for a malformed id."""
        require(caller, Scope.WEBHOOKS)
        self._check_endpoint_id(endpoint_id)
        return await self._store.get_endpoint(endpoint_id=endpoint_id, tenant=caller.tenant_filter())

    async def delete(self, endpoint_id: str, *, caller: Caller = OPERATOR) -> None:
        """Delete an endpoint and its deliveries (pending ones are never sent); ``EndpointNotFound``."""
        require(caller, Scope.WEBHOOKS)
        self._check_endpoint_id(endpoint_id)
        await self._store.delete_endpoint(endpoint_id=endpoint_id, tenant=caller.tenant_filter())
        logger.info(
            "webhook endpoint %s deleted",
            endpoint_id,
            extra={"action": "webhook_deleted", "endpoint_id": endpoint_id},
        )

    async def rotate_secret(self, endpoint_id: str, *, caller: Caller = OPERATOR) -> WebhookEndpoint:
        """Give the endpoint a new secret; the old one keeps signing for ``PREVIOUS_SECRET_GRACE``."""
        require(caller, Scope.WEBHOOKS)
        self._check_endpoint_id(endpoint_id)
        endpoint = await self._store.rotate_endpoint_secret(
            endpoint_id=endpoint_id,
            secret=self._new_secret(),
            previous_until=self._clock() + PREVIOUS_SECRET_GRACE,
            tenant=caller.tenant_filter(),
        )
        logger.info(
            "webhook endpoint %s: secret rotated",
            endpoint_id,
            extra={"action": "webhook_secret_rotated", "endpoint_id": endpoint_id},
        )
        return endpoint

    async def deliveries(
        self,
        endpoint_id: str,
        *,
        status: str | None = None,
        limit: int = DEFAULT_DELIVERIES_LIMIT,
        caller: Caller = OPERATOR,
    ) -> list[Delivery]:
        """The endpoint's deliveries, newest event first, at most ``limit``; ``status`` filters by its value.

        Raise ``Forbidden``, ``ValidationError`` (an unknown status, a limit out of range), ``EndpointNotFound``.
        """
        require(caller, Scope.WEBHOOKS)
        wanted = None if status is None else parse_delivery_status(status)
        if not 1 <= limit <= MAX_DELIVERIES_LIMIT:
            raise ValidationError(f"limit must be between 1 and {MAX_DELIVERIES_LIMIT} (got {limit})")
        self._check_endpoint_id(endpoint_id)
        return await self._store.list_deliveries(
            endpoint_id=endpoint_id, tenant=caller.tenant_filter(), status=wanted, limit=limit
        )

    async def retry(self, endpoint_id: str, event_id: str, *, caller: Caller = OPERATOR) -> Delivery:
        """Send a delivery again (pending, due now, its attempts kept); ``EndpointNotFound``/``DeliveryNotFound``."""
        require(caller, Scope.WEBHOOKS)
        self._check_endpoint_id(endpoint_id)
        if not 0 < len(event_id) <= MAX_EVENT_ID_LENGTH:
            # Not an id any store makes: the endpoint is checked first, as the store does.
            await self._store.get_endpoint(endpoint_id=endpoint_id, tenant=caller.tenant_filter())
            raise DeliveryNotFound(endpoint_id, event_id)
        delivery = await self._store.retry_delivery(
            endpoint_id=endpoint_id, event_id=event_id, tenant=caller.tenant_filter()
        )
        logger.info(
            "webhook delivery of event %s to %s: retry requested",
            event_id,
            endpoint_id,
            extra={"action": "webhook_retry", "endpoint_id": endpoint_id, "event_id": event_id},
        )
        return delivery

    @staticmethod
    def _check_endpoint_id(endpoint_id: str) -> None:
        if not is_endpoint_id(endpoint_id):
            raise EndpointNotFound(endpoint_id)


def parse_delivery_status(value: str) -> DeliveryStatus:
    """The ``DeliveryStatus`` named ``value``; ``ValidationError`` listing the valid ones."""
    try:
        return DeliveryStatus(value)
    except ValueError:
        names = ", ".join(s.value for s in DeliveryStatus)
        raise ValidationError(f"unknown delivery status {value!r} (use one of {names})") from None


__all__ = [
    "DEFAULT_DELIVERIES_LIMIT",
    "ENDPOINT_ID_PATTERN",
    "MAX_DELIVERIES_LIMIT",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_ENDPOINTS_PER_TENANT",
    "MAX_EVENT_ID_LENGTH",
    "MAX_URL_LENGTH",
    "PREVIOUS_SECRET_GRACE",
    "EndpointRequest",
    "UrlCheck",
    "WebhookService",
    "endpoint_url_check",
    "is_endpoint_id",
    "new_endpoint_id",
    "parse_delivery_status",
]
