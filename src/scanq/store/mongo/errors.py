"""PyMongo errors as scanq errors, and how to read a duplicate-key error."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from pymongo.errors import ConnectionFailure, PyMongoError

from scanq.exceptions import StoreError, StoreUnavailable

DUPLICATE_KEY = 11000


@contextlib.contextmanager
def wrap_errors() -> Iterator[None]:
    """Translate PyMongo errors: connection trouble → ``StoreUnavailable``, anything else → ``StoreError``."""
    try:
        yield
    except ConnectionFailure as exc:  # AutoReconnect, NotPrimaryError, ServerSelectionTimeoutError, NetworkTimeout
        raise StoreUnavailable(f"MongoDB unavailable: {exc}") from exc
    except PyMongoError as exc:
        raise StoreError(f"MongoDB error: {exc}") from exc


def is_key_conflict(error: Mapping[str, Any]) -> bool:
    """True when a duplicate-key error is about the idempotency key (not ``_id``)."""
    key_value = error.get("keyValue") or error.get("keyPattern")
    if isinstance(key_value, Mapping):
        return "idempotency_key" in key_value
    return "idempotency_key" in str(error.get("errmsg", ""))


__all__ = ["DUPLICATE_KEY", "is_key_conflict", "wrap_errors"]
