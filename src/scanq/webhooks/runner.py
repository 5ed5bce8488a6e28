"""The webhook loops of one worker process, built from the settings: started with the worker, stopped with it.

With ``--no-webhooks`` the worker sends nothing, but its dispatcher still runs (one worker at a time holds
the role): the store keeps every event the dispatcher has not passed, so without one the event log would
grow without bound. The deliveries it makes wait for a worker that sends them.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

from scanq.config import Settings
from scanq.metrics import WorkerMetrics
from scanq.store import Store
from scanq.webhooks.delivery import DeliveryLoop
from scanq.webhooks.dispatcher import Dispatcher
from scanq.webhooks.schedule import RetrySchedule
from scanq.webhooks.sender import Sender
from scanq.webhooks.urls import EndpointRules

logger = logging.getLogger("scanq.webhooks")

# Beyond the delivery loop's own wind-down bounds: a stop never waits longer than this for webhooks.
STOP_TIMEOUT_S = 30.0
CANCEL_TIMEOUT_S = 5.0


def delivery_tls(settings: Settings) -> ssl.SSLContext:
    """What deliveries trust: ``--webhook-ca-file`` (receivers behind an internal CA) or the system's trust store.

    Host names are checked either way. A file that holds no certificate fails here, when the worker starts.
    """
    return ssl.create_default_context(cafile=settings.webhook_ca_file or None)


class Webhooks:
    """The dispatcher (one worker at a time) and the delivery loop (every worker but ``--no-webhooks`` ones).

    Args:
        store: an open store.
        settings: ``--webhook-*`` (concurrency, timeouts, backoff, max age, allow-list).
        worker_id: the owner of the role and of the deliveries' leases.
        metrics: counters and the latency histogram; None: count nothing.
        tls: the client TLS context of deliveries (default: ``delivery_tls(settings)``).
        lease_s: each claimed delivery's lease (default: longer than any attempt, ``delivery.lease_for``).
        busy: True while the worker drains a backlog of scans: deliveries then yield the CPU to them.
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        worker_id: str,
        metrics: WorkerMetrics | None = None,
        tls: ssl.SSLContext | None = None,
        lease_s: float | None = None,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self.delivery = DeliveryLoop(
            store,
            sender=Sender(
                EndpointRules.from_settings(settings),
                connect_timeout_s=settings.webhook_connect_timeout_seconds,
                read_timeout_s=settings.webhook_timeout_seconds,
                tls=tls if tls is not None else delivery_tls(settings),
            ),
            schedule=RetrySchedule(
                base_s=settings.webhook_backoff_base_seconds, max_age_s=settings.webhook_max_age_seconds
            ),
            worker_id=worker_id,
            concurrency=settings.webhook_concurrency,
            lease_s=lease_s,
            metrics=metrics,
            busy=busy,
        )
        self.is_sending = settings.webhooks  # --no-webhooks: the delivery loop is never started
        self.dispatcher = Dispatcher(
            store, owner=worker_id, on_dispatched=lambda count: self.delivery.wake(), metrics=metrics
        )
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the loops on the running event loop."""
        self.tasks = [asyncio.create_task(self.dispatcher.run(), name="scanq-webhook-dispatch")]
        if not self.is_sending:
            logger.info("webhooks: this worker sends none (--no-webhooks); it dispatches scan events to deliveries")
            return
        self.tasks.append(asyncio.create_task(self.delivery.run(), name="scanq-webhook-delivery"))
        logger.info(
            "webhooks: up to %d deliveries at once (%d per endpoint), lease %.0fs",
            self.delivery.concurrency,
            self.delivery.per_endpoint,
            self.delivery.lease_s,
        )

    def stop(self) -> None:
        """Stop claiming deliveries and dispatching (signal-handler safe); ``aclose`` waits for the wind-down."""
        self.delivery.stop()
        self.dispatcher.stop()

    async def aclose(self) -> None:
        """Stop both loops: the dispatcher resigns its role, the delivery loop records what it did not send."""
        if not self.tasks:
            return
        self.stop()
        # Both loops end on their stop events; a cancel is only the fallback (and is never waited for unbounded).
        _, pending = await asyncio.wait(self.tasks, timeout=STOP_TIMEOUT_S)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=CANCEL_TIMEOUT_S)


def start_webhooks(
    store: Store,
    settings: Settings,
    *,
    worker_id: str,
    metrics: WorkerMetrics | None = None,
    busy: Callable[[], bool] | None = None,
) -> Webhooks:
    """The worker's webhook loops, started (with ``--no-webhooks`` the dispatcher only: see the module)."""
    webhooks = Webhooks(store, settings, worker_id=worker_id, metrics=metrics, busy=busy)
    webhooks.start()
    return webhooks


__all__ = ["STOP_TIMEOUT_S", "Webhooks", "delivery_tls", "start_webhooks"]
