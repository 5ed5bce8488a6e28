"""The webhook service: a tenant's webhook endpoints and their deliveries, for a ``Caller``.

Every entry point (the ingest service's ``/webhooks`` routes) calls this; it
calls the ``Store``. Each operation needs the ``webhooks`` scope (``admin``
holds every scope) and acts on the caller's own tenant, or for an admin on
any tenant, as ``ScanService`` does for scans: another tenant's endpoint is
answered as an unknown one (``EndpointNotFound``). Everything a request can
get wrong is refused before anything is written: an endpoint's URL passes the
SSRF guard (``scanq.webhooks.urls.check_endpoint_url``) at registration, and
the worker checks it again at every delivery (DNS may change in between).

The tenant's callback endpoint (``scanq.webhooks.callbacks``: it signs the
deliveries to each scan's own ``callback_url``) is addressed as ``callbacks``
by every operation here, under the caller's tenant (an admin may name another
with ``tenant``). ``WebhookService`` is also the scan service's
``CallbackGuard``: a submission's ``callback_url`` passes the same URL check
as an endpoint's, and the tenant's callback endpoint is made before the scan.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from scanq.config import Settings
from scanq.exceptions import DeliveryNotFound, EndpointNotFound, Forbidden, ValidationError
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
from scanq.store.base import MAX_PAGE_SIZE, Store, callback_endpoint_id
from scanq.submissions import MAX_URL_LENGTH
from scanq.webhooks.callbacks import CALLBACKS_ID, CallbackEndpoints, is_callback_endpoint, public_endpoint_id
from scanq.webhooks.signing import generate_secret

if TYPE_CHECKING:
    from scanq.webhooks.urls import EndpointRules

logger = logging.getLogger(__name__)

ENDPOINT_ID_PREFIX = "wh_"
ENDPOINT_ID_HEX_CHARS = 24
ENDPOINT_ID_PATTERN = rf"^{ENDPOINT_ID_PREFIX}[0-9a-f]{{{ENDPOINT_ID_HEX_CHARS}}}$"
# After a rotation the old secret still signs (deliveries carry both signatures) this long.
PREVIOUS_SECRET_GRACE = timedelta(hours=24)
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
        callbacks: the tenants' callback endpoints, remembered per process (default: a ``CallbackEndpoints``).
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        url_check: UrlCheck | None = None,
        new_secret: Callable[[], str] = generate_secret,
        clock: Callable[[], datetime] | None = None,
        callbacks: CallbackEndpoints | None = None,
    ) -> None:
        self._store = store
        self._check_url = url_check or endpoint_url_check(settings)
        self._new_secret = new_secret
        self._clock = clock or (lambda: datetime.now(UTC))
        self._is_enabled = settings.webhooks
        self._callbacks = callbacks or CallbackEndpoints(store, new_secret=new_secret, clock=self._clock)

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
        endpoints = await self._store.list_endpoints(tenant=caller.tenant)
        if sum(not is_callback_endpoint(e) for e in endpoints) >= MAX_ENDPOINTS_PER_TENANT:
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

    async def get(self, endpoint_id: str, *, tenant: str | None = None, caller: Caller = OPERATOR) -> WebhookEndpoint:
        """One endpoint; ``EndpointNotFound`` also for another tenant's and for a malformed id.

        ``callbacks``: the tenant's callback endpoint, as stored (see ``callback_endpoint`` to make it).
        ``tenant`` names the tenant of ``callbacks`` (an admin's choice; default: the caller's).
        """
        store_id, scope = self._target(endpoint_id, caller=caller, tenant=tenant)
        with _public_errors(endpoint_id):
            return await self._store.get_endpoint(endpoint_id=store_id, tenant=scope)

    async def callback_endpoint(self, *, tenant: str | None = None, caller: Caller = OPERATOR) -> WebhookEndpoint:
        """The tenant's callback endpoint (the caller's, or an admin's ``tenant``), made now if it has none.

        Its secret signs every callback of the tenant (a submission's ``callback_url``); it is in the answer.
        """
        owner = self._callback_tenant(caller, tenant)
        return await self._callbacks.get_or_create(owner)

    async def check_callback_url(self, url: str) -> str:
        """A submission's ``callback_url``, normalised; ``ValidationError`` (422) saying why it is refused."""
        if not self._is_enabled:
            raise ValidationError("callback_url is refused: webhooks are disabled on this service (--no-webhooks)")
        if not 0 < len(url) <= MAX_URL_LENGTH:
            raise ValidationError(f"callback_url must be 1 to {MAX_URL_LENGTH} characters long")
        try:
            return await self._check_url(url)
        except ValidationError as exc:
            raise type(exc)(f"callback_url: {exc.message}") from None

    async def ensure_callback_endpoint(self, tenant: str) -> None:
        """Make sure ``tenant`` has its callback endpoint before a scan with a ``callback_url`` is stored."""
        await self._callbacks.ensure(tenant)

    async def delete(self, endpoint_id: str, *, tenant: str | None = None, caller: Caller = OPERATOR) -> None:
        """Delete an endpoint and its deliveries (pending ones are never sent); ``EndpointNotFound``.

        ``callbacks``: the next submission with a ``callback_url`` makes a new one, with a new secret.
        """
        store_id, scope = self._target(endpoint_id, caller=caller, tenant=tenant)
        with _public_errors(endpoint_id):
            await self._store.delete_endpoint(endpoint_id=store_id, tenant=scope)
        if endpoint_id == CALLBACKS_ID and scope is not None:
            self._callbacks.forget(scope)
        logger.info(
            "webhook endpoint %s deleted",
            endpoint_id,
            extra={"action": "webhook_deleted", "endpoint_id": endpoint_id},
        )

    async def rotate_secret(
        self, endpoint_id: str, *, tenant: str | None = None, caller: Caller = OPERATOR
    ) -> WebhookEndpoint:
        """Give the endpoint a new secret; the old one keeps signing for ``PREVIOUS_SECRET_GRACE``."""
        store_id, scope = self._target(endpoint_id, caller=caller, tenant=tenant)
        with _public_errors(endpoint_id):
            endpoint = await self._store.rotate_endpoint_secret(
                endpoint_id=store_id,
                secret=self._new_secret(),
                previous_until=self._clock() + PREVIOUS_SECRET_GRACE,
                tenant=scope,
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
        tenant: str | None = None,
        caller: Caller = OPERATOR,
    ) -> list[Delivery]:
        """The endpoint's deliveries, newest event first, at most ``limit``; ``status`` filters by its value.

        Raise ``Forbidden``, ``ValidationError`` (an unknown status, a limit out of range), ``EndpointNotFound``.
        """
        require(caller, Scope.WEBHOOKS)
        wanted = None if status is None else parse_delivery_status(status)
        if not 1 <= limit <= MAX_DELIVERIES_LIMIT:
            raise ValidationError(f"limit must be between 1 and {MAX_DELIVERIES_LIMIT} (got {limit})")
        store_id, scope = self._target(endpoint_id, caller=caller, tenant=tenant)
        with _public_errors(endpoint_id):
            return await self._store.list_deliveries(endpoint_id=store_id, tenant=scope, status=wanted, limit=limit)

    async def retry(
        self, endpoint_id: str, event_id: str, *, tenant: str | None = None, caller: Caller = OPERATOR
    ) -> Delivery:
        """Send a delivery again (pending, due now, its attempts kept); ``EndpointNotFound``/``DeliveryNotFound``."""
        store_id, scope = self._target(endpoint_id, caller=caller, tenant=tenant)
        with _public_errors(endpoint_id):
            if not 0 < len(event_id) <= MAX_EVENT_ID_LENGTH:
                # Not an id any store makes: the endpoint is checked first, as the store does.
                await self._store.get_endpoint(endpoint_id=store_id, tenant=scope)
                raise DeliveryNotFound(store_id, event_id)
            delivery = await self._store.retry_delivery(endpoint_id=store_id, event_id=event_id, tenant=scope)
        logger.info(
            "webhook delivery of event %s to %s: retry requested",
            event_id,
            endpoint_id,
            extra={"action": "webhook_retry", "endpoint_id": endpoint_id, "event_id": event_id},
        )
        return delivery

    def _target(self, endpoint_id: str, *, caller: Caller, tenant: str | None) -> tuple[str, str | None]:
        """The store's id of ``endpoint_id`` and the tenant the store call is limited to (None: any)."""
        if endpoint_id == CALLBACKS_ID:
            owner = self._callback_tenant(caller, tenant)
            return callback_endpoint_id(owner), owner
        require(caller, Scope.WEBHOOKS)
        if not is_endpoint_id(endpoint_id):
            raise EndpointNotFound(endpoint_id)
        return endpoint_id, caller.tenant_filter()

    @staticmethod
    def _callback_tenant(caller: Caller, tenant: str | None) -> str:
        """Whose callback endpoint: the caller's tenant, or ``tenant`` (another one only for an admin)."""
        require(caller, Scope.WEBHOOKS)
        if tenant is None or tenant == caller.tenant:
            return caller.tenant
        if not caller.is_admin:
            raise Forbidden("only an admin token manages other tenants' webhook endpoints")
        return tenant


@contextmanager
def _public_errors(endpoint_id: str) -> Iterator[None]:
    """The store's not-found errors under the id the caller used (``callbacks``, not the store's id)."""
    try:
        yield
    except DeliveryNotFound as exc:
        raise DeliveryNotFound(endpoint_id, exc.event_id) from None
    except EndpointNotFound:
        raise EndpointNotFound(endpoint_id) from None


def parse_delivery_status(value: str) -> DeliveryStatus:
    """The ``DeliveryStatus`` named ``value``; ``ValidationError`` listing the valid ones."""
    try:
        return DeliveryStatus(value)
    except ValueError:
        names = ", ".join(s.value for s in DeliveryStatus)
        raise ValidationError(f"unknown delivery status {value!r} (use one of {names})") from None


__all__ = [
    "CALLBACKS_ID",
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
    "public_endpoint_id",
]
