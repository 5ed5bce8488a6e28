"""What a submission is, and the checks it passes before anything is written.

The scan service (``scans.py``) calls these; the HTTP schema declares the same
bounds, so a client sees them in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from scanq.exceptions import ValidationError
from scanq.models import NewScan, Scan, ScanStatus

MIN_PRIORITY = -1000
MAX_PRIORITY = 1000
MAX_ATTEMPTS_LIMIT = 100
MAX_TARGET_LENGTH = 2048
MAX_SCANNER_NAME_LENGTH = 64
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# A webhook endpoint's URL and a submission's callback_url (the SSRF guard checks the rest).
MAX_URL_LENGTH = 2048
# Plugins read flat options; deep nesting only serves to exhaust a recursive encoder downstream.
MAX_OPTIONS_DEPTH = 16
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1
DEFAULT_PAGE_SIZE = 50
STATUS_NAMES = ", ".join(s.value for s in ScanStatus)


class Submission(Protocol):
    """What a client asks for; None fields take the service defaults.

    ``api.schemas.ScanRequest`` is one (the decoded HTTP body is passed as is);
    ``SubmitRequest`` is one for every other caller.
    """

    @property
    def target(self) -> str | None: ...

    @property
    def scanner(self) -> str | None: ...

    @property
    def options(self) -> Mapping[str, Any]: ...

    @property
    def priority(self) -> int: ...

    @property
    def max_attempts(self) -> int | None: ...

    @property
    def callback_url(self) -> str | None: ...


class CallbackGuard(Protocol):
    """What the scan service asks about a submission's ``callback_url`` (``WebhookService`` is one)."""

    async def check_callback_url(self, url: str) -> str:
        """The URL to store (normalised), or ``ValidationError`` saying why it may not receive callbacks."""
        ...

    async def ensure_callback_endpoint(self, tenant: str) -> None:
        """Make sure ``tenant``'s callback endpoint exists (it signs the callbacks), before the scan is stored."""
        ...


@dataclass(frozen=True, kw_only=True, slots=True)
class SubmitRequest:
    """A plain ``Submission``: ``SubmitRequest()`` is the default scan that ``GET /`` queues."""

    target: str | None = None
    scanner: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    priority: int = 0
    max_attempts: int | None = None
    callback_url: str | None = None


DEFAULT_SUBMISSION = SubmitRequest()


def check_bounds(submission: Submission) -> None:
    """Raise ``ValidationError`` for a field out of its bounds (the HTTP schema checks the same, callers may not)."""
    if submission.target is not None:
        if not 0 < len(submission.target) <= MAX_TARGET_LENGTH:
            raise ValidationError(f"target must be 1 to {MAX_TARGET_LENGTH} characters long")
        if "\x00" in submission.target:
            raise ValidationError("target must not contain the NUL character (\\u0000)")
    if submission.scanner is not None and not 0 < len(submission.scanner) <= MAX_SCANNER_NAME_LENGTH:
        raise ValidationError(f"scanner must be 1 to {MAX_SCANNER_NAME_LENGTH} characters long")
    if not MIN_PRIORITY <= submission.priority <= MAX_PRIORITY:
        raise ValidationError(f"priority must be between {MIN_PRIORITY} and {MAX_PRIORITY} (got {submission.priority})")
    if submission.max_attempts is not None and not 1 <= submission.max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise ValidationError(
            f"max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT} (got {submission.max_attempts})"
        )
    callback_url = submission.callback_url
    if callback_url is not None and (not 0 < len(callback_url) <= MAX_URL_LENGTH or "\x00" in callback_url):
        raise ValidationError(f"callback_url must be 1 to {MAX_URL_LENGTH} characters long, without NUL")
    options = submission.options
    # The exact-type test first: an ABC isinstance costs a microsecond on the hot path.
    if type(options) is not dict and not isinstance(options, Mapping):
        raise ValidationError("options must be a JSON object")
    if options:
        check_options(options)


def check_options(options: Mapping[str, Any]) -> None:
    """Raise ``ValidationError`` unless ``options`` is JSON every backend stores as sent.

    That is: nested at most ``MAX_OPTIONS_DEPTH`` deep (deeper only serves to exhaust a
    recursive encoder), no NUL character in a key or string (PostgreSQL cannot store one),
    and integers within 64 bits (MongoDB's limit). Walks without recursing.
    """
    stack: list[tuple[object, int]] = [(options, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                raise ValidationError("options must not contain the NUL character (\\u0000)")
        elif isinstance(node, int) and not isinstance(node, bool):
            if not MIN_INT64 <= node <= MAX_INT64:
                raise ValidationError("options integers must fit in 64 bits")
        elif isinstance(node, Mapping | list | tuple):
            if depth >= MAX_OPTIONS_DEPTH:
                raise ValidationError(f"options nest deeper than {MAX_OPTIONS_DEPTH} levels")
            if isinstance(node, Mapping):
                stack.extend((key, depth) for key in node)
                stack.extend((child, depth + 1) for child in node.values())
            else:
                stack.extend((child, depth + 1) for child in node)


def check_idempotency_key(key: str) -> None:
    """Raise ``ValidationError`` for an empty or overlong key."""
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ValidationError(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} characters long")
    if "\x00" in key:
        raise ValidationError("Idempotency-Key must not contain the NUL character")


def parse_status(value: str) -> ScanStatus:
    """The ``ScanStatus`` named ``value``; raise ``ValidationError`` listing the valid ones."""
    try:
        return ScanStatus(value)
    except ValueError:
        raise ValidationError(f"unknown status {value!r} (use one of {STATUS_NAMES})") from None


def is_same_request(stored: Scan, new: NewScan) -> bool:
    """True when a replayed submission asks for what the stored scan already holds (after defaults).

    Options are compared as JSON text, not as Python values: ``true`` and ``1``,
    ``1`` and ``1.0``, ``-0.0`` and ``0.0`` are equal in Python but were not the
    same submission. Keys are sorted first: JSON objects are unordered.
    """
    return (
        stored.target == new.target
        and stored.scanner == new.scanner
        and stored.priority == new.priority
        and stored.max_attempts == new.max_attempts
        and stored.callback_url == new.callback_url
        and encode_options(stored.options) == encode_options(new.options)
    )


def encode_options(options: Mapping[str, Any]) -> bytes:
    """``options`` as canonical JSON text: keys sorted, every number in the form it was given."""
    return msgspec.json.encode(options, order="sorted")


__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_SUBMISSION",
    "MAX_ATTEMPTS_LIMIT",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_INT64",
    "MAX_OPTIONS_DEPTH",
    "MAX_PRIORITY",
    "MAX_SCANNER_NAME_LENGTH",
    "MAX_TARGET_LENGTH",
    "MAX_URL_LENGTH",
    "MIN_INT64",
    "MIN_PRIORITY",
    "STATUS_NAMES",
    "CallbackGuard",
    "Submission",
    "SubmitRequest",
    "check_bounds",
    "check_idempotency_key",
    "check_options",
    "encode_options",
    "is_same_request",
    "parse_status",
]
