"""Every error scanq raises on purpose.

ScanqError
 ├── ConfigError            a setting is missing or invalid
 ├── StartupError           a service cannot listen: its host does not resolve or its port is taken
 ├── ValidationError        a request is malformed (HTTP 4xx, nothing written)
 │    └── TargetRefused     a scan target is not allowed (SSRF rules)
 ├── ScanNotFound           no scan with that id (HTTP 404)
 ├── ScanFinished           the scan already reached a terminal state (HTTP 409)
 ├── UnknownScanner         no plugin of that name (HTTP 422)
 ├── IdempotencyConflict    a key was replayed with a different request (HTTP 409)
 ├── Unauthenticated        no valid API token (HTTP 401)
 ├── Forbidden              the token lacks the scope (HTTP 403)
 ├── QuotaExceeded          the tenant is over a quota (HTTP 429)
 ├── TokenNotFound          no API token with that id
 ├── RetentionBusy          another process holds the retention role (scanq prune)
 ├── StoreError             the store failed (HTTP 503)
 │    └── StoreUnavailable  the store cannot be reached right now
 └── ScannerError           a scanner plugin failed a scan
      └── TransientScanError  the failure may pass: the worker retries with backoff
"""

from __future__ import annotations

from typing import Any


class ScanqError(Exception):
    """scanq failed."""

    def __init__(self, message: str | None = None, **attributes: Any) -> None:
        # The class docstring is the default message, so raise sites stay short.
        super().__init__(message or (self.__doc__ or "").strip())
        for name, value in attributes.items():
            setattr(self, name, value)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(ScanqError):
    """A setting is missing or invalid."""

    setting: str


class StartupError(ScanqError):
    """A service cannot start listening."""

    # The exit code of a service that cannot listen: `scanq up` stops everything when a child exits with it.
    exit_code = 78  # EX_CONFIG in sysexits.h


class ValidationError(ScanqError):
    """The request is invalid."""


class TargetRefused(ValidationError):
    """The scan target is not allowed."""

    address: str | None = None  # the refused address as given, when an address (not the name) was refused


class ScanNotFound(ScanqError):
    """No scan with that id."""

    scan_id: str

    def __init__(self, scan_id: str) -> None:
        super().__init__(f"no scan with id {scan_id!r}", scan_id=scan_id)


class ScanFinished(ScanqError):
    """The scan has already finished."""

    scan_id: str
    status: str

    def __init__(self, scan_id: str, status: str) -> None:
        super().__init__(f"scan {scan_id} already finished with status {status}", scan_id=scan_id, status=status)


class UnknownScanner(ScanqError):
    """No scanner plugin with that name."""


class IdempotencyConflict(ScanqError):
    """The idempotency key was already used for a different request."""


class Unauthenticated(ScanqError):
    """A valid API token is required (Authorization: Bearer <token>)."""


class Forbidden(ScanqError):
    """The API token does not allow this."""


class QuotaExceeded(ScanqError):
    """The tenant is over its quota."""

    retry_after_s: float

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


class TokenNotFound(ScanqError):
    """No API token with that id."""

    token_id: str

    def __init__(self, token_id: str) -> None:
        super().__init__(f"no API token with id {token_id!r}", token_id=token_id)


class RetentionBusy(ScanqError):
    """Another process holds the retention role (a worker enforcing --retention); try again later."""


class StoreError(ScanqError):
    """The store failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now."""


class ScannerError(ScanqError):
    """The scanner failed."""


class TransientScanError(ScannerError):
    """The scanner failed in a way that may pass; the scan is retried."""


class EndpointNotFound(ScanqError):
    """No webhook endpoint with that id."""

    endpoint_id: str

    def __init__(self, endpoint_id: str) -> None:
        super().__init__(f"no webhook endpoint with id {endpoint_id!r}", endpoint_id=endpoint_id)


class DeliveryNotFound(ScanqError):
    """No delivery of that event to that endpoint."""

    endpoint_id: str
    event_id: str

    def __init__(self, endpoint_id: str, event_id: str) -> None:
        super().__init__(
            f"no delivery of event {event_id!r} to endpoint {endpoint_id!r}", endpoint_id=endpoint_id, event_id=event_id
        )
