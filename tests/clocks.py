"""A clock a test moves by hand, for code that reads monotonic time (caches, rate limits)."""

from __future__ import annotations


class ManualClock:
    """Monotonic seconds that change only when the test sets ``now``.

    Call it (``clock()``) where a ``Callable[[], float]`` is taken, or pass it as a stand-in for the
    ``time`` module of the code under test (``clock.monotonic()``).
    """

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now
