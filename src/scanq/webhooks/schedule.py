"""What one attempt's result makes of a delivery: delivered, tried again later, or failed for good.

- a 2xx: delivered;
- ``410 Gone``: failed at once (the receiver says the endpoint is gone for good);
- anything else (another status, a 3xx included, a refused or unreachable
  address, a timeout): tried again after an exponential backoff with full
  jitter, per delivery: uniform in ``[0, min(base * 2**(attempts - 1), 1 h)]``
  after its ``attempts``-th attempt, so the deliveries of an endpoint that was
  down do not all come back at the same instant;
- until ``max_age`` after the event: the last retry is due at that moment at
  the latest, and an attempt that fails at or after it marks the delivery failed
  (``GET /webhooks/{id}/deliveries`` shows it with its last status and error;
  ``POST …/retry`` sends it again).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from scanq.backoff import backoff_delay
from scanq.models import DeliveryJob, DeliveryOutcome, DeliveryResult
from scanq.webhooks.sender import SendResult

# No step of the schedule waits longer than this, however many attempts came before.
BACKOFF_STEP_MAX_S = 3600.0
GONE = 410


@dataclass(frozen=True, kw_only=True, slots=True)
class RetrySchedule:
    """The retry rules of webhook deliveries.

    Args:
        base_s: the first retry's delay ceiling (``--webhook-backoff-base-seconds``); doubles per attempt.
        max_age_s: how long after its event a delivery is tried (``--webhook-max-age-seconds``).
        step_max_s: the largest delay between two attempts.
    """

    base_s: float
    max_age_s: float
    step_max_s: float = BACKOFF_STEP_MAX_S

    def result(self, job: DeliveryJob, sent: SendResult, *, now: datetime) -> DeliveryResult:
        """The ``DeliveryResult`` to record for ``job`` after an attempt that went as ``sent`` at ``now``."""
        delivery = job.delivery
        outcome, retry_at = DeliveryOutcome.FAILED, None
        if sent.is_delivered:
            outcome = DeliveryOutcome.DELIVERED
        elif sent.status_code != GONE:
            deadline = delivery.event.at + timedelta(seconds=self.max_age_s)
            if now < deadline:
                delay = backoff_delay(delivery.attempts + 1, base_s=self.base_s, max_s=self.step_max_s)
                outcome, retry_at = DeliveryOutcome.RETRY, min(now + timedelta(seconds=delay), deadline)
        return DeliveryResult(
            endpoint_id=delivery.endpoint_id,
            event_id=delivery.event.event_id,
            worker_id=job.worker_id,
            outcome=outcome,
            status_code=sent.status_code,
            error=sent.error,
            retry_at=retry_at,
        )


__all__ = ["BACKOFF_STEP_MAX_S", "RetrySchedule"]
