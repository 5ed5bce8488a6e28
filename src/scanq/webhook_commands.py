"""``scanq webhooks …``: a tenant's webhook endpoints and their deliveries, on the ingest service.

Each command parses its options and calls one function of ``scanq.client`` (the Python client over
HTTP, as every client command). ``cli.py`` adds the group to ``scanq``; the group's errors reach the
``scanq`` group, which turns them into one line.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import click

from scanq import client
from scanq.config import Settings
from scanq.flags import SettingsCommand, with_settings

_T = TypeVar("_T")

# The client commands' settings (cli.CLIENT: cli.py imports this module, so it cannot be imported from there).
CLIENT = ("ingest_url", "status_url", "max_batch", "token", "log_level", "log_format")


class WebhooksGroup(click.Group):
    """The ``webhooks`` group: its commands take the settings flags."""

    command_class = SettingsCommand


def _run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    import uvloop

    return uvloop.run(coroutine)


@click.group(cls=WebhooksGroup, short_help="Webhook endpoints and their deliveries.")
def webhooks() -> None:
    """Register, list and delete webhook endpoints, and see and retry their deliveries (on the ingest service).

    ENDPOINT_ID may be `callbacks`: the tenant's callback endpoint, which signs the deliveries to each scan's
    --callback-url (`scanq webhooks show callbacks` prints its secret, making it if needed).
    """


EVENT_TYPES = ("scan.completed", "scan.failed", "scan.cancelled", "scan.started", "scan.accepted")


@webhooks.command("add", short_help="Register an endpoint; print its signing secret.")
@click.argument("url")
@click.option(
    "--event",
    "event_types",
    multiple=True,
    type=click.Choice(EVENT_TYPES),
    help="An event to receive; repeatable (default: scan.completed, scan.failed, scan.cancelled).",
)
@click.option("--description", help="What the endpoint is for.")
@with_settings(CLIENT)
def webhooks_add(settings: Settings, *, url: str, event_types: Sequence[str], description: str | None) -> None:
    """Register URL for the token's tenant; print it and its signing secret (shown only now)."""
    _run(client.webhook_add(settings, url=url, event_types=event_types, description=description))


@webhooks.command("list")
@click.option("--tenant", help="Only this tenant's endpoints (an admin token's filter).")
@with_settings(CLIENT)
def webhooks_list(settings: Settings, *, tenant: str | None) -> None:
    """List the webhook endpoints (never their secrets)."""
    _run(client.webhook_list(settings, tenant=tenant))


@webhooks.command("show")
@click.argument("endpoint_id")
@with_settings(CLIENT)
def webhooks_show(settings: Settings, *, endpoint_id: str) -> None:
    """Print one webhook endpoint as JSON (`callbacks`: with its secret)."""
    _run(client.webhook_show(settings, endpoint_id=endpoint_id))


@webhooks.command("delete", short_help="Delete an endpoint.")
@click.argument("endpoint_id")
@with_settings(CLIENT)
def webhooks_delete(settings: Settings, *, endpoint_id: str) -> None:
    """Delete a webhook endpoint (its undelivered events are dropped)."""
    _run(client.webhook_delete(settings, endpoint_id=endpoint_id))


@webhooks.command("rotate-secret", short_help="Give an endpoint a new signing secret.")
@click.argument("endpoint_id")
@with_settings(CLIENT)
def webhooks_rotate_secret(settings: Settings, *, endpoint_id: str) -> None:
    """Give an endpoint a new signing secret and print it (the old one is sent too for 24 hours)."""
    _run(client.webhook_rotate_secret(settings, endpoint_id=endpoint_id))


@webhooks.command("deliveries", short_help="List an endpoint's deliveries.")
@click.argument("endpoint_id")
@click.option("--status", "delivery_status", type=click.Choice(["pending", "delivered", "failed"]))
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=50, show_default=True)
@with_settings(CLIENT)
def webhooks_deliveries(settings: Settings, *, endpoint_id: str, delivery_status: str | None, limit: int) -> None:
    """List an endpoint's deliveries, newest event first, with the last status code and error."""
    _run(client.webhook_deliveries(settings, endpoint_id=endpoint_id, status=delivery_status, limit=limit))


@webhooks.command("retry", short_help="Send a delivery again now.")
@click.argument("endpoint_id")
@click.argument("event_id")
@with_settings(CLIENT)
def webhooks_retry(settings: Settings, *, endpoint_id: str, event_id: str) -> None:
    """Send a delivery of EVENT_ID to ENDPOINT_ID again now."""
    _run(client.webhook_retry(settings, endpoint_id=endpoint_id, event_id=event_id))


__all__ = ["webhooks"]
