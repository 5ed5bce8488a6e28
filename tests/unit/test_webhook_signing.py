"""Standard Webhooks signatures, checked with the specification's own library (``standardwebhooks`` from PyPI)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from scanq.exceptions import ValidationError
from scanq.models import DEFAULT_WEBHOOK_EVENTS, WebhookEndpoint
from scanq.webhooks.signing import (
    SECRET_PREFIX,
    USER_AGENT,
    active_secrets,
    generate_secret,
    secret_key,
    sign,
    webhook_headers,
)

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
BODY = '{"type":"scan.completed","data":{"scan_id":"0190a6c2","target":"bücher.example"}}'.encode()


def endpoint(secret: str, *, previous: str | None = None, until: datetime | None = None) -> WebhookEndpoint:
    return WebhookEndpoint(
        endpoint_id="ep-1",
        tenant="acme",
        url="https://hooks.example.com/scanq",
        event_types=DEFAULT_WEBHOOK_EVENTS,
        secret=secret,
        created_at=NOW,
        updated_at=NOW,
        previous_secret=previous,
        previous_secret_until=until,
    )


def verify(secret: str, headers: dict[str, str], body: bytes = BODY) -> object:
    """The reference verifier; it checks the timestamp against the real clock, so headers are signed now."""
    return Webhook(secret).verify(body, headers)


def test_a_new_secret_is_whsec_and_base64_of_32_random_bytes() -> None:
    secrets = {generate_secret() for _ in range(50)}

    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith(SECRET_PREFIX)
        assert len(base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)) == 32
        assert secret_key(secret) == base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def test_a_signature_is_the_one_the_reference_library_computes() -> None:
    secret = generate_secret()
    timestamp = int(NOW.timestamp())

    ours = sign(secret, message_id="msg_1", timestamp=timestamp, body=BODY)

    assert ours == Webhook(secret).sign("msg_1", NOW, BODY.decode())
    assert ours.startswith("v1,")


def test_headers_signed_now_verify_with_the_reference_library() -> None:
    secret = generate_secret()
    now = datetime.now(UTC)

    headers = dict(webhook_headers(endpoint(secret), message_id="17", body=BODY, now=now))

    assert verify(secret, headers) == {
        "type": "scan.completed",
        "data": {"scan_id": "0190a6c2", "target": "bücher.example"},
    }
    assert headers["webhook-id"] == "17"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == USER_AGENT
    assert len(headers["webhook-signature"].split(" ")) == 1


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h, b: (h, b + b" "), id="body"),
        pytest.param(lambda h, b: ({**h, "webhook-id": "18"}, b), id="id"),
        pytest.param(lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b), id="time"),
    ],
)
def test_anything_changed_after_signing_fails_verification(tamper: object) -> None:
    secret = generate_secret()
    headers = dict(webhook_headers(endpoint(secret), message_id="17", body=BODY, now=datetime.now(UTC)))

    changed_headers, changed_body = tamper(headers, BODY)  # type: ignore[operator]

    with pytest.raises(WebhookVerificationError):
        verify(secret, changed_headers, changed_body)


def test_another_secret_does_not_verify() -> None:
    headers = dict(webhook_headers(endpoint(generate_secret()), message_id="17", body=BODY, now=datetime.now(UTC)))

    with pytest.raises(WebhookVerificationError):
        verify(generate_secret(), headers)


def test_while_the_previous_secret_is_valid_both_signatures_are_sent_and_each_secret_verifies() -> None:
    old, new = generate_secret(), generate_secret()
    now = datetime.now(UTC)
    rotated = endpoint(new, previous=old, until=now + timedelta(hours=24))

    headers = dict(webhook_headers(rotated, message_id="17", body=BODY, now=now))

    assert len(headers["webhook-signature"].split(" ")) == 2
    assert verify(new, headers) is not None
    assert verify(old, headers) is not None


def test_once_the_previous_secret_expired_only_the_new_one_signs() -> None:
    old, new = generate_secret(), generate_secret()
    now = datetime.now(UTC)
    rotated = endpoint(new, previous=old, until=now - timedelta(seconds=1))

    headers = dict(webhook_headers(rotated, message_id="17", body=BODY, now=now))

    assert active_secrets(rotated, now=now) == [new]
    assert len(headers["webhook-signature"].split(" ")) == 1
    assert verify(new, headers) is not None
    with pytest.raises(WebhookVerificationError):
        verify(old, headers)


def test_a_stale_timestamp_is_refused_by_receivers_so_every_attempt_signs_anew() -> None:
    secret = generate_secret()
    headers = dict(webhook_headers(endpoint(secret), message_id="17", body=BODY, now=NOW - timedelta(days=400)))

    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(secret, headers)


@pytest.mark.parametrize("secret", ["", "whsec_", "sk_abc", "whsec_not base64!", "abc"])
def test_a_malformed_secret_is_refused(secret: str) -> None:
    with pytest.raises(ValidationError):
        secret_key(secret)
