"""Riding out store outages: backoff between tries, and one log line per failure.

Every store call of the worker (claim, finish, heartbeat, open, release) retries
the same way: ``StoreRetry`` counts the failures in a row and answers the next
delay; ``call_patiently`` wraps a call that must succeed once (open, release).
``StoreHealth`` is the process's view of its store: down since a call failed,
up again since one answered. The reaper waits on it (``worker.leases``) so that
an outage longer than the lease does not turn live work into expired work.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

from scanq.backoff import backoff_delay
from scanq.exceptions import StoreError, StoreUnavailable

# Every module of the worker logs as ``scanq.worker``, the name operators filter on.
logger = logging.getLogger("scanq.worker")

_T = TypeVar("_T")

STORE_RETRY_BASE_S = 0.1
STORE_RETRY_MAX_S = 5.0


class StoreHealth:
    """Whether the store answers, as this process last saw it, and since when.

    Every loop of the worker reports here (through its ``StoreRetry``): a call
    that found the store unavailable (``StoreUnavailable``; other errors are no
    outage) marks it down, the first call to answer after that marks it up
    again and sets ``recovered``, which wakes the heartbeat so this worker
    renews its leases first thing. Only the event loop's clock is used.
    """

    __slots__ = ("_down", "_up_since", "recovered")

    def __init__(self) -> None:
        self._down = False
        self._up_since = -math.inf
        self.recovered = asyncio.Event()

    @property
    def is_down(self) -> bool:
        return self._down

    def failed(self) -> None:
        """A store call failed: the store is down until one answers."""
        self._down = True
        self.recovered.clear()

    def answered(self) -> None:
        """A store call answered: if the store was down, it is up again from now."""
        if self._down:
            self._down = False
            self._up_since = asyncio.get_running_loop().time()
            self.recovered.set()

    def up_for(self) -> float:
        """Seconds since the store came back (infinite when this process never saw it down; 0 while down)."""
        if self._down:
            return 0.0
        return asyncio.get_running_loop().time() - self._up_since


class StoreRetry:
    """The backoff of one store operation: ``failed`` logs a failure and answers how long to wait.

    Args:
        operation: what the log lines call the operation (``claim``, ``finish``, …).
        base_s: the first delay's ceiling.
        max_s: the largest delay.
        full_jitter: see ``backoff_delay``; off by default, so a retry never comes at once.
        health: the process's ``StoreHealth``, told of every failure and success.
    """

    __slots__ = ("base_s", "failures", "full_jitter", "health", "max_s", "operation")

    def __init__(
        self,
        operation: str,
        *,
        base_s: float = STORE_RETRY_BASE_S,
        max_s: float = STORE_RETRY_MAX_S,
        full_jitter: bool = False,
        health: StoreHealth | None = None,
    ) -> None:
        self.operation = operation
        self.base_s = base_s
        self.max_s = max_s
        self.full_jitter = full_jitter
        self.health = health
        self.failures = 0

    def next_delay(self) -> float:
        """Count one more failure; the delay before the next try."""
        self.failures += 1
        return backoff_delay(self.failures, base_s=self.base_s, max_s=self.max_s, full_jitter=self.full_jitter)

    def failed(self, exc: Exception) -> float:
        """Count and log a failure; the delay before the next try."""
        delay = self.next_delay()
        log_store_failure(self.operation, exc, delay)
        if self.health is not None and isinstance(exc, StoreUnavailable):
            self.health.failed()
        return delay

    def succeeded(self) -> None:
        """The operation worked: the next failure starts from ``base_s`` again."""
        self.failures = 0
        if self.health is not None:
            self.health.answered()


def log_store_failure(operation: str, exc: Exception, delay_s: float) -> None:
    """A store error (an outage) is a warning; anything else is a bug, logged with its traceback."""
    if isinstance(exc, StoreError):
        logger.warning("store %s failed (%s); retrying in %.2fs", operation, exc, delay_s)
    else:
        logger.error("store %s failed; retrying in %.2fs", operation, delay_s, exc_info=exc)


async def call_patiently(
    call: Callable[[], Awaitable[_T]],
    *,
    operation: str,
    retry_on: type[Exception] | tuple[type[Exception], ...] = Exception,
    stop: asyncio.Event | None = None,
    timeout_s: float = math.inf,
) -> _T | None:
    """``call()`` until it succeeds, with backoff; None once ``stop`` is set or ``timeout_s`` would pass.

    Args:
        call: the store call; exceptions other than ``retry_on`` propagate.
        operation: what the log lines call it.
        retry_on: the failures worth another try.
        stop: ends the wait between tries (and the retrying) when set.
        timeout_s: give up (logged as an error) rather than wait past this.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    retry = StoreRetry(operation)
    while stop is None or not stop.is_set():
        try:
            return await call()
        except retry_on as exc:
            delay = retry.next_delay()
            if loop.time() + delay > deadline:
                logger.error("store %s failed, giving up: %s", operation, exc)
                return None
            log_store_failure(operation, exc, delay)
            if stop is None:
                await asyncio.sleep(delay)
            else:
                await wait_event(stop, delay)
    return None


async def wait_event(event: asyncio.Event, timeout_s: float) -> None:
    """Sleep ``timeout_s``, or less if ``event`` is set meanwhile."""
    try:
        await asyncio.wait_for(event.wait(), timeout_s)
    except TimeoutError:
        pass


__all__ = [
    "STORE_RETRY_BASE_S",
    "STORE_RETRY_MAX_S",
    "StoreHealth",
    "StoreRetry",
    "call_patiently",
    "log_store_failure",
    "wait_event",
]
