"""Standard Webhooks signatures: ``whsec_`` secrets, and the three headers every delivery carries.

A secret is ``whsec_`` followed by the base64 of random bytes. A delivery is
signed with HMAC-SHA256 over ``"{webhook-id}.{webhook-timestamp}.{body}"``
and sent as ``webhook-signature: v1,<base64>``; while a rotated-out secret is
still valid (``WebhookEndpoint.previous_secret_until``) the header carries a
second, space-separated signature made with it, so a receiver that still has
the old secret verifies too. Any Standard Webhooks library verifies these
(the tests use the ``standardwebhooks`` package from PyPI, not this module).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import datetime

from scanq.exceptions import ValidationError
from scanq.models import WebhookEndpoint

SECRET_PREFIX = "whsec_"
# Random bytes in a new secret (the specification asks for 24 to 64).
SECRET_BYTES = 32
SIGNATURE_VERSION = "v1"
USER_AGENT = "scanq-webhooks/1"


def generate_secret() -> str:
    """A new endpoint secret: ``whsec_`` and the base64 of ``SECRET_BYTES`` random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for; ``ValidationError`` when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValidationError(f"a webhook secret starts with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError("a webhook secret is whsec_ and base64") from None
    if not key:
        raise ValidationError("a webhook secret must not be empty")
    return key


def sign(secret: str, *, message_id: str, timestamp: int, body: bytes) -> str:
    """One signature, ``v1,<base64 HMAC-SHA256 of "{message_id}.{timestamp}.{body}">``.

    Args:
        secret: the ``whsec_`` secret.
        message_id: the ``webhook-id`` (the event id, the same for every attempt).
        timestamp: the ``webhook-timestamp``, unix seconds at the send.
        body: the exact bytes sent.
    """
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def active_secrets(endpoint: WebhookEndpoint, *, now: datetime) -> list[str]:
    """The secrets a delivery is signed with: the current one, then the previous one while it is valid."""
    found = [endpoint.secret]
    until = endpoint.previous_secret_until
    if endpoint.previous_secret and until is not None and now < until:
        found.append(endpoint.previous_secret)
    return found


def signature_header(endpoint: WebhookEndpoint, *, message_id: str, timestamp: int, body: bytes, now: datetime) -> str:
    """The ``webhook-signature`` value: one signature per active secret, space-separated."""
    return " ".join(
        sign(secret, message_id=message_id, timestamp=timestamp, body=body)
        for secret in active_secrets(endpoint, now=now)
    )


def webhook_headers(endpoint: WebhookEndpoint, *, message_id: str, body: bytes, now: datetime) -> Mapping[str, str]:
    """The headers of one delivery attempt, signed now (receivers refuse timestamps minutes old).

    Args:
        endpoint: where it goes, with its secrets.
        message_id: the event id: receivers deduplicate on it.
        body: the JSON body, exactly as sent.
        now: the send time (UTC); ``webhook-timestamp`` is its unix seconds.
    """
    timestamp = int(now.timestamp())
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(endpoint, message_id=message_id, timestamp=timestamp, body=body, now=now),
    }


__all__ = [
    "SECRET_PREFIX",
    "USER_AGENT",
    "active_secrets",
    "generate_secret",
    "secret_key",
    "sign",
    "signature_header",
    "webhook_headers",
]
