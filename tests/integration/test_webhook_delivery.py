"""Webhook delivery end to end on the MemoryStore: a real local receiver verifies every signature with the
``standardwebhooks`` package (``tests/webhook_receiver.py``), the worker's loops dispatch, claim, send and record.

The receiver listens on 127.0.0.1, allow-listed with ``--webhook-allowlist`` (so plain http is allowed).
The other backends' behaviour is the store contract's (``tests/contract/test_webhook_store.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from scanq.config import PluginSettings, Settings
from scanq.ids import new_scan_id
from scanq.metrics import WorkerMetrics, make_registry
from scanq.models import (
    DEFAULT_TENANT,
    DEFAULT_WEBHOOK_EVENTS,
    Delivery,
    DeliveryStatus,
    EventType,
    Finish,
    Lease,
    NewScan,
    Outcome,
    WebhookEndpoint,
)
from scanq.scanners.net.settings import NetSettings
from scanq.store.memory import MemoryStore
from scanq.webhooks.delivery import BUSY_CONCURRENCY
from scanq.webhooks.dispatcher import Dispatcher
from scanq.webhooks.runner import Webhooks
from scanq.webhooks.sender import SendResult
from scanq.webhooks.signing import generate_secret
from scanq.webhooks.urls import check_endpoint_url
from scanq.worker import Worker
from tests.prometheus import sample_value
from tests.scripted import new_scan, scripted_registry
from tests.webhook_receiver import WebhookReceiver, running_receiver

DEADLINE_S = 20.0
FAST: dict[str, Any] = {
    "webhook_allowlist": ("127.0.0.1/32",),
    "webhook_connect_timeout_seconds": 1.0,
    "webhook_timeout_seconds": 2.0,
    "webhook_backoff_base_seconds": 0.05,
    "webhook_concurrency": 8,
}


def settings(**changes: Any) -> Settings:
    return Settings(**{**FAST, **changes})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def url() -> str:
    return f"memory://{uuid.uuid4()}"


@pytest.fixture
async def store(url: str) -> AsyncIterator[MemoryStore]:
    async with MemoryStore(url) as opened:
        yield opened


async def add_endpoint(
    store: MemoryStore,
    target: str,
    *,
    endpoint_id: str = "ep",
    secret: str | None = None,
    tenant: str = DEFAULT_TENANT,
    event_types: frozenset[EventType] = DEFAULT_WEBHOOK_EVENTS,
) -> WebhookEndpoint:
    now = datetime.now(UTC) - timedelta(seconds=1)
    endpoint = WebhookEndpoint(
        endpoint_id=endpoint_id,
        tenant=tenant,
        url=target,
        event_types=event_types,
        secret=secret or generate_secret(),
        created_at=now,
        updated_at=now,
    )
    await store.create_endpoint(endpoint=endpoint)
    return endpoint


async def finish_scans(store: MemoryStore, count: int, outcome: Outcome = Outcome.COMPLETE) -> list[str]:
    """``count`` scans submitted, claimed and finished with ``outcome``: one terminal event each."""
    news = [NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), target="example.com") for _ in range(count)]
    await store.create_many(scans=news)
    claimed = await store.claim(worker_id="scanner", limit=count, lease_s=60)
    assert len(claimed) == count
    finishes = [
        Finish(
            lease=Lease(scan_id=scan.scan_id, worker_id="scanner", attempt=scan.attempt),
            outcome=outcome,
            result={"findings": [{"id": "tls-expired", "severity": "high"}]},
            error="scanner failed",
        )
        for scan in claimed
    ]
    assert all(await store.finish(finishes=finishes))
    return [new.scan_id for new in news]


async def deliveries(store: MemoryStore, endpoint_id: str = "ep") -> list[Delivery]:
    return await store.list_deliveries(endpoint_id=endpoint_id, limit=1000)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = DEADLINE_S) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout_s:.0f}s") from None


async def all_delivered(store: MemoryStore, count: int, endpoint_id: str = "ep") -> bool:
    found = await deliveries(store, endpoint_id)
    return len(found) == count and all(d.status is DeliveryStatus.DELIVERED for d in found)


def all_tried_of(store: MemoryStore, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        found = await deliveries(store)
        return len(found) == count and all(d.attempts >= 1 for d in found)

    return check


def worker_metrics() -> tuple[WorkerMetrics, CollectorRegistry]:
    registry = make_registry(process_metrics=False)
    return WorkerMetrics(registry, worker_id="w", in_flight=lambda: 0), registry


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return sample_value(generate_latest(registry).decode(), name, labels)


@contextlib.asynccontextmanager
async def running(store: MemoryStore, cfg: Settings, **kwargs: Any) -> AsyncIterator[Webhooks]:
    webhooks = Webhooks(store, cfg, worker_id=kwargs.pop("worker_id", "w1"), **kwargs)
    webhooks.start()
    try:
        yield webhooks
    finally:
        await webhooks.aclose()


async def test_every_terminal_event_is_delivered_signed_and_verified_by_the_reference_library(
    store: MemoryStore,
) -> None:
    secret = generate_secret()
    metrics, registry = worker_metrics()
    with running_receiver(free_port(), secret) as receiver:
        await add_endpoint(store, receiver.url, secret=secret)
        completed = await finish_scans(store, 12)
        failed = await finish_scans(store, 3, Outcome.ERROR)
        cancelled = [new_scan_id() for _ in range(2)]
        await store.create_many(scans=[NewScan(scan_id=i, created_at=datetime.now(UTC)) for i in cancelled])
        for scan_id in cancelled:
            await store.cancel(scan_id=scan_id)

        async with running(store, settings(), metrics=metrics):
            await eventually(lambda: all_delivered(store, 17), "every delivery delivered")
            await asyncio.sleep(0.1)  # the recorder's batch has been counted

        assert receiver.rejected == 0
        event_ids = {d.event.event_id for d in await deliveries(store)}
        assert set(receiver.per_id()) == event_ids
        assert receiver.scans_by_type() == {
            "scan.completed": set(completed),
            "scan.failed": set(failed),
            "scan.cancelled": set(cancelled),
        }
        bodies = {item.body["data"]["scan_id"]: item.body for item in receiver.snapshot()}
    body = bodies[completed[0]]
    assert body["data"]["status"] == "Complete"
    assert body["data"]["result"] == {"findings": [{"id": "tls-expired", "severity": "high"}]}
    assert body["data"]["tenant"] == DEFAULT_TENANT and body["data"]["history"][0]["worker"] == "scanner"
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None
    assert bodies[failed[0]]["data"]["error"] == "scanner failed"
    assert metric(registry, "scanq_webhook_deliveries_total", outcome="delivered") == 17
    assert metric(registry, "scanq_webhook_delivery_seconds_count") == 17
    assert (metric(registry, "scanq_webhook_events_dispatched_total") or 0) >= 12 * 3 + 3 * 3 + 2 * 2
    assert all(d.attempts == 1 and d.last_status_code == 204 for d in await deliveries(store))


async def test_after_a_rotation_a_receiver_that_still_has_the_old_secret_verifies(store: MemoryStore) -> None:
    old = generate_secret()
    with running_receiver(free_port(), old) as receiver:
        await add_endpoint(store, receiver.url, secret=old)
        await store.rotate_endpoint_secret(
            endpoint_id="ep", secret=generate_secret(), previous_until=datetime.now(UTC) + timedelta(hours=24)
        )
        await finish_scans(store, 3)

        async with running(store, settings()):
            await eventually(lambda: all_delivered(store, 3), "delivered")

        assert receiver.rejected == 0 and len(receiver.per_id()) == 3


@pytest.mark.slow
async def test_a_receiver_down_for_a_while_then_back_gets_every_event(store: MemoryStore) -> None:
    secret = generate_secret()
    receiver = WebhookReceiver(port=free_port(), secrets=[secret])
    await add_endpoint(store, receiver.url, secret=secret)

    async with running(store, settings()):
        await finish_scans(store, 5)
        await eventually(all_tried_of(store, 5), "the first scans tried while the receiver is down")
        await finish_scans(store, 5)
        await eventually(all_tried_of(store, 10), "every delivery tried while the receiver is down")
        found = await deliveries(store)
        assert all(d.status is DeliveryStatus.PENDING for d in found)
        assert all("refused the connection" in (d.last_error or "") or "failing" in (d.last_error or "") for d in found)

        receiver.start()
        try:
            await eventually(lambda: all_delivered(store, 10), "every delivery delivered once the receiver is back")
        finally:
            receiver.stop()

    assert receiver.rejected == 0
    assert set(receiver.per_id()) == {d.event.event_id for d in await deliveries(store)}


class BlackHole:
    """An endpoint that accepts connections and never answers; counts how many it holds at once."""

    def __init__(self) -> None:
        self.open = 0
        self.most_open = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        self.writers.append(writer)
        try:
            await reader.read()  # until the client gives up
        finally:
            self.open -= 1
            writer.close()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            self.server.close()


@pytest.mark.slow
async def test_a_dead_endpoint_never_delays_another(store: MemoryStore) -> None:
    hole = BlackHole()
    port = await hole.start()
    secret = generate_secret()
    # The dead endpoint's attempts would each take 30 s: the live endpoint is done long before any of them.
    cfg = settings(webhook_timeout_seconds=30.0, webhook_concurrency=8)
    try:
        with running_receiver(free_port(), secret) as receiver:
            await add_endpoint(store, f"http://127.0.0.1:{port}/hook", endpoint_id="dead")
            await add_endpoint(store, receiver.url, endpoint_id="live", secret=secret)
            await finish_scans(store, 20)

            async with running(store, cfg) as webhooks:
                await eventually(lambda: all_delivered(store, 20, "live"), "the live endpoint's deliveries")
                assert hole.most_open <= webhooks.delivery.per_endpoint == 2
                dead = await deliveries(store, "dead")
                assert all(d.status is DeliveryStatus.PENDING for d in dead)
                await hole.close()  # let the hung attempts end before the loops stop

            assert receiver.rejected == 0 and len(receiver.per_id()) == 20
    finally:
        await hole.close()


async def test_while_the_worker_drains_a_backlog_deliveries_yield_to_the_scans(store: MemoryStore) -> None:
    """``busy`` (the worker's claims come back full): at most BUSY_CONCURRENCY attempts; all slots once it ends."""
    hole = BlackHole()
    port = await hole.start()
    draining = True
    cfg = settings(webhook_timeout_seconds=30.0, webhook_concurrency=64)  # 16 per endpoint when not busy
    try:
        await add_endpoint(store, f"http://127.0.0.1:{port}/hook", endpoint_id="slow")
        await finish_scans(store, 40)
        async with running(store, cfg, busy=lambda: draining) as webhooks:
            assert webhooks.delivery.slots == BUSY_CONCURRENCY < webhooks.delivery.per_endpoint
            await eventually(lambda: _at_least(hole, BUSY_CONCURRENCY), "the busy worker's attempts")
            await asyncio.sleep(0.3)  # more would have been started by now were the bound not kept
            assert hole.most_open == BUSY_CONCURRENCY
            draining = False
            await eventually(lambda: _at_least(hole, BUSY_CONCURRENCY + 1), "more attempts once the backlog is gone")
            await hole.close()
    finally:
        await hole.close()


async def _at_least(hole: BlackHole, count: int) -> bool:
    return hole.open >= count


@pytest.mark.slow
async def test_a_failing_endpoint_backs_off_and_is_marked_failed_after_the_max_age(store: MemoryStore) -> None:
    secret = generate_secret()
    metrics, registry = worker_metrics()
    with running_receiver(free_port(), secret) as receiver:
        receiver.answer = 503
        await add_endpoint(store, receiver.url, secret=secret)
        await finish_scans(store, 3)

        async def all_failed() -> bool:
            found = await deliveries(store)
            return len(found) == 3 and all(d.status is DeliveryStatus.FAILED for d in found)

        async with running(store, settings(webhook_max_age_seconds=1.5), metrics=metrics):
            await eventually(all_failed, "every delivery failed")
            await asyncio.sleep(0.1)

        found = await deliveries(store)
        assert all(d.last_status_code == 503 or "failing" in (d.last_error or "") for d in found)
        assert all(d.attempts >= 2 and d.delivered_at is None for d in found)
        assert max(receiver.per_id().values()) >= 2  # attempts were really sent again, and verified
        assert all(
            d.last_attempt_at is not None and d.last_attempt_at >= d.event.at + timedelta(seconds=1.5) for d in found
        )
    assert metric(registry, "scanq_webhook_deliveries_total", outcome="failed") == 3
    assert (metric(registry, "scanq_webhook_deliveries_total", outcome="retry") or 0) >= 3


async def test_410_gone_fails_the_delivery_at_once(store: MemoryStore) -> None:
    secret = generate_secret()
    with running_receiver(free_port(), secret) as receiver:
        receiver.answer = 410
        await add_endpoint(store, receiver.url, secret=secret)
        await finish_scans(store, 1)

        async with running(store, settings()):
            await eventually(
                lambda: _statuses(store, {DeliveryStatus.FAILED}), "the delivery failed on its first attempt"
            )

    [delivery] = await deliveries(store)
    assert (delivery.attempts, delivery.last_status_code) == (1, 410)


async def _statuses(store: MemoryStore, wanted: set[DeliveryStatus]) -> bool:
    found = await deliveries(store)
    return bool(found) and {d.status for d in found} <= wanted


@pytest.mark.slow
async def test_a_worker_that_dies_holding_deliveries_leaves_them_to_another_after_the_lease(
    store: MemoryStore, url: str
) -> None:
    secret = generate_secret()
    hung = asyncio.Event()

    async def freeze(url: str, *, headers: Any, body: bytes) -> SendResult:
        await hung.wait()  # a process stopped dead mid-request: nothing more happens
        return SendResult(error="connection reset")

    async def claim_nothing(**kwargs: Any) -> list[Any]:
        return []

    with running_receiver(free_port(), secret) as receiver:
        await add_endpoint(store, receiver.url, secret=secret)
        await finish_scans(store, 5)
        async with MemoryStore(url) as dying_store:
            dying = Webhooks(dying_store, settings(webhook_concurrency=40), worker_id="dying", lease_s=1.0)
            dying.delivery.sender.send = freeze  # type: ignore[method-assign]
            dying.start()
            try:
                await eventually(lambda: _true(dying.delivery.held == 5), "the dying worker claimed every delivery")
                dying_store.claim_deliveries = claim_nothing  # type: ignore[method-assign]  # it claims no more
                async with running(store, settings(), worker_id="alive"):
                    await eventually(lambda: all_delivered(store, 5), "the other worker delivered them after the lease")
            finally:
                hung.set()  # the dead worker's late results are refused by the fence: not its deliveries any more
                await dying.aclose()

        assert receiver.rejected == 0 and len(receiver.per_id()) == 5
        assert all(d.status is DeliveryStatus.DELIVERED and d.attempts == 1 for d in await deliveries(store))


async def _true(value: bool) -> bool:
    return value


@pytest.mark.slow
async def test_a_name_that_now_resolves_inside_is_refused_at_delivery_and_the_error_recorded(
    store: MemoryStore, tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts"
    name = "hooks.example.com"
    secret = generate_secret()

    def point(address: str) -> None:
        (tmp_path / "hosts.new").write_text(f"{address} {name}\n")
        os.replace(tmp_path / "hosts.new", hosts)

    point("127.0.0.1")
    cfg = settings(plugins=PluginSettings(NetSettings(hosts_file=str(hosts))))
    with running_receiver(free_port(), secret) as receiver:
        registered = await check_endpoint_url(f"http://{name}:{receiver.port}/hook", cfg)
        await add_endpoint(store, registered, secret=secret)
        point("10.0.0.5")  # DNS changed since registration
        await finish_scans(store, 1)

        async with running(store, cfg):
            await eventually(all_tried_of(store, 1), "the delivery tried")
            [delivery] = await deliveries(store)
            assert delivery.status is DeliveryStatus.PENDING and delivery.last_status_code is None
            assert "refused at delivery" in (delivery.last_error or "")
            assert "10.0.0.5 is private" in (delivery.last_error or "")
            assert receiver.snapshot() == []

            point("127.0.0.1")
            await eventually(lambda: all_delivered(store, 1), "delivered once the name points to the receiver again")


async def test_one_dispatcher_at_a_time_and_another_takes_over_when_it_stops(store: MemoryStore, url: str) -> None:
    async with MemoryStore(url) as other:
        first = Dispatcher(store, owner="a", renew_s=0.05)
        second = Dispatcher(other, owner="b", renew_s=0.05)
        tasks = [asyncio.create_task(first.run())]
        await eventually(lambda: _true(first.is_leader), "the first dispatcher leads")
        tasks.append(asyncio.create_task(second.run()))
        try:
            await asyncio.sleep(0.3)
            assert (first.is_leader, second.is_leader) == (True, False)
            tasks[0].cancel()  # a stop resigns the role
            await asyncio.gather(tasks[0], return_exceptions=True)
            await eventually(lambda: _true(second.is_leader), "the second dispatcher took over")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def test_the_worker_runs_the_webhooks_and_no_webhooks_stops_sending(store: MemoryStore) -> None:
    secret = generate_secret()
    cfg = settings(poll_seconds=0.2, shutdown_seconds=0.2)
    registry, _ = scripted_registry(cfg)
    with running_receiver(free_port(), secret) as receiver:
        await add_endpoint(store, receiver.url, secret=secret)
        worker = Worker(store, registry, cfg)
        task = asyncio.create_task(worker.run())
        try:
            await store.create_many(scans=[new_scan() for _ in range(4)])
            await eventually(lambda: all_delivered(store, 4), "the worker's scans delivered")
        finally:
            worker.stop()
            await task
        assert receiver.rejected == 0 and len(receiver.scans_by_type()["scan.completed"]) == 4

        off = Worker(store, registry, settings(webhooks=False), burst=True)
        await store.create_many(scans=[new_scan() for _ in range(2)])
        await asyncio.wait_for(off.run(), 10)
        found = await deliveries(store)
        # Nothing sent: whatever its dispatcher made is pending, never attempted.
        assert sum(d.status is DeliveryStatus.DELIVERED for d in found) == 4
        assert all(d.attempts == 0 for d in found if d.status is not DeliveryStatus.DELIVERED)
        assert len(receiver.per_id()) == 4
