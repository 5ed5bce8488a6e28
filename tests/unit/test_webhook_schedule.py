"""What an attempt's result makes of a delivery: delivered, retried with full-jitter backoff, or failed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scanq.models import (
    DEFAULT_WEBHOOK_EVENTS,
    Delivery,
    DeliveryJob,
    DeliveryOutcome,
    DeliveryStatus,
    ScanEvent,
    ScanStatus,
    WebhookEndpoint,
)
from scanq.webhooks.schedule import BACKOFF_STEP_MAX_S, RetrySchedule
from scanq.webhooks.sender import SendResult

EVENT_AT = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SCHEDULE = RetrySchedule(base_s=1.0, max_age_s=86400.0)


def job(attempts: int = 0) -> DeliveryJob:
    event = ScanEvent(event_id="9", scan_id="s", tenant="acme", status=ScanStatus.COMPLETE, attempt=1, at=EVENT_AT)
    endpoint = WebhookEndpoint(
        endpoint_id="ep",
        tenant="acme",
        url="https://hooks.example.com/",
        event_types=DEFAULT_WEBHOOK_EVENTS,
        secret="whsec_AAAA",
        created_at=EVENT_AT,
        updated_at=EVENT_AT,
    )
    delivery = Delivery(
        endpoint_id="ep",
        event=event,
        status=DeliveryStatus.PENDING,
        attempts=attempts,
        created_at=EVENT_AT,
        next_attempt_at=EVENT_AT,
    )
    return DeliveryJob(delivery=delivery, endpoint=endpoint, worker_id="w1")


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_a_2xx_is_delivered(status: int) -> None:
    result = SCHEDULE.result(job(), SendResult(status_code=status), now=EVENT_AT)

    assert (result.outcome, result.status_code, result.error, result.retry_at) == (
        DeliveryOutcome.DELIVERED,
        status,
        None,
        None,
    )
    assert (result.endpoint_id, result.event_id, result.worker_id) == ("ep", "9", "w1")


def test_410_gone_fails_at_once() -> None:
    result = SCHEDULE.result(job(), SendResult(status_code=410, error="HTTP 410 Gone"), now=EVENT_AT)

    assert (result.outcome, result.retry_at, result.error) == (DeliveryOutcome.FAILED, None, "HTTP 410 Gone")


@pytest.mark.parametrize(
    "sent",
    [
        SendResult(status_code=500, error="HTTP 500"),
        SendResult(status_code=302, error="HTTP 302: redirect not followed"),
        SendResult(status_code=404, error="HTTP 404"),
        SendResult(error="no answer within 10s"),
        SendResult(error="refused at delivery: 10.0.0.5 is private"),
    ],
)
def test_anything_else_is_retried_within_the_attempts_backoff_ceiling(sent: SendResult) -> None:
    now = EVENT_AT + timedelta(seconds=5)
    for attempts, ceiling in [(0, 1.0), (1, 2.0), (3, 8.0), (12, BACKOFF_STEP_MAX_S), (40, BACKOFF_STEP_MAX_S)]:
        delays = []
        for _ in range(200):
            result = SCHEDULE.result(job(attempts), sent, now=now)
            assert result.outcome is DeliveryOutcome.RETRY and result.retry_at is not None
            delays.append((result.retry_at - now).total_seconds())
        assert 0.0 <= min(delays) and max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4  # full jitter: spread over the whole range


def test_the_last_retry_is_due_at_the_max_age_and_a_failure_from_then_on_is_final() -> None:
    schedule = RetrySchedule(base_s=1.0, max_age_s=60.0)
    almost = EVENT_AT + timedelta(seconds=59.5)

    retried = [schedule.result(job(20), SendResult(error="down"), now=almost) for _ in range(50)]
    final = schedule.result(job(21), SendResult(error="down"), now=EVENT_AT + timedelta(seconds=60))

    assert all(r.outcome is DeliveryOutcome.RETRY for r in retried)
    assert max(r.retry_at for r in retried if r.retry_at is not None) <= EVENT_AT + timedelta(seconds=60)
    assert (final.outcome, final.retry_at, final.error) == (DeliveryOutcome.FAILED, None, "down")
