"""The capped claim (``claim`` with ``max_per_target``, rule 9): the queue's target-less head, then capped windows.

Every capped claim starts with ``claim_untargeted``: one statement, one walk, claiming the leading run of
scans without a target (they count against no cap; ``queries.sql`` says why that keeps the cap and claim
order). Only when a scan with a target stops that run does it go on with the capped windows: each window
one transaction of ``lock_targets`` then ``claim_capped``. When the queue's head has a target, the first
statement claims nothing, so the next claims skip it for a while (``TARGETED_HEAD_MEMORY_S``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import asyncpg

from scanq.store.postgres import connection, statements
from scanq.store.postgres.connection import Pool, wrap_errors

# A capped claim (claim_capped) of n scans locks a window of n plus a slack (n / divisor, at least the
# minimum) claimable scans, and takes a window twice as large (up to the maximum) while it is short,
# at most this many windows per claim.
CAPPED_SLACK_DIVISOR = 4
CAPPED_MIN_SLACK = 4
CAPPED_MAX_WINDOW = 4096
CAPPED_MAX_WINDOWS = 8
# A capped claim serialises with the others per target through advisory locks on stripes of the
# targets (a target's hash modulo this): at most this many locks per claim, whatever its window, so
# concurrent claimers stay far below the server's lock table (max_locks_per_transaction times
# max_connections, 6,400 by default).
TARGET_LOCK_STRIPES = 128
# After claim_untargeted found a scan with a target at the very head of the queue (it claimed nothing),
# the claims of the next this many seconds go straight to the windows: a queue of targeted scans pays
# at most one wasted walk per interval, not one per claim.
TARGETED_HEAD_MEMORY_S = 1.0


class CappedClaims:
    """Claims with a cap for one store: its pool, and when the queue's head last had a target.

    Args:
        pool: the store's pool, looked up at each claim (None: the store is closed).
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(self, pool: Callable[[], Pool], *, clock: Callable[[], float] = time.monotonic) -> None:
        self._pool = pool
        self._clock = clock
        self._targeted_head_until = float("-inf")

    async def claim(self, worker_id: str, limit: int, lease_s: float, cap: int) -> list[asyncpg.Record]:
        """Up to ``limit`` scans made Running for ``worker_id``, never more than ``cap`` of one target Running."""
        claimed: list[asyncpg.Record] = []
        if self._clock() >= self._targeted_head_until:
            rows = await self._fetch_untargeted(worker_id, limit, lease_s)
            claimed.extend(row for row in rows if row["scan_id"] is not None)
            walked, led = rows[0]["walked"], rows[0]["led"]
            if led == walked:  # no scan with a target in the window: enough, or every claimable scan taken
                return claimed
            if led == 0:
                self._targeted_head_until = self._clock() + TARGETED_HEAD_MEMORY_S
        claimed.extend(await self._claim_windows(worker_id, limit - len(claimed), lease_s, cap))
        return claimed

    async def _fetch_untargeted(self, worker_id: str, limit: int, lease_s: float) -> list[asyncpg.Record]:
        """``claim_untargeted``: the run of scans without a target at the head of the first ``limit``."""
        return await connection.fetch(self._pool(), statements.CLAIM_UNTARGETED, worker_id, limit, lease_s)

    async def _claim_windows(self, worker_id: str, limit: int, lease_s: float, cap: int) -> list[asyncpg.Record]:
        """Claim from windows of the queue (``claim_capped``) until ``limit`` scans or a window not full.

        Each window is one transaction of two statements that never overshoots the cap (see
        ``queries.sql``): ``lock_targets`` try-locks the stripes of the window's targets, then
        ``claim_capped``, whose snapshot is taken after those locks, counts and claims. A window leaves
        out the targets already full, so one is usually enough; a scan over a target's cap in it, a
        scan lost to a racing claimer, or a target another claimer holds makes the claim take
        another, larger window.
        """
        claimed: list[asyncpg.Record] = []
        window = limit + max(limit // CAPPED_SLACK_DIVISOR, CAPPED_MIN_SLACK)
        for _ in range(CAPPED_MAX_WINDOWS):
            need = limit - len(claimed)
            rows = await self._claim_window(worker_id, need, lease_s, cap, window)
            claimed.extend(row for row in rows if row["scan_id"] is not None)
            if len(claimed) >= limit or rows[0]["walked"] < window:  # enough, or every claimable scan seen
                break
            window = min(2 * window, CAPPED_MAX_WINDOW)
        return claimed

    async def _claim_window(
        self, worker_id: str, need: int, lease_s: float, cap: int, window: int
    ) -> list[asyncpg.Record]:
        """One window of a capped claim: its target stripes locked, then counted and claimed, in one transaction."""
        with wrap_errors():
            async with self._pool().acquire(timeout=connection.ACQUIRE_TIMEOUT_S) as conn:
                async with conn.transaction():
                    stripes = await conn.fetchval(
                        statements.LOCK_TARGETS, cap, window, statements.TARGET_LOCK_CLASS, TARGET_LOCK_STRIPES
                    )
                    return await conn.fetch(
                        statements.CLAIM_CAPPED,
                        worker_id,
                        need,
                        lease_s,
                        cap,
                        window,
                        stripes,
                        TARGET_LOCK_STRIPES,
                    )


__all__ = ["TARGET_LOCK_STRIPES", "CappedClaims"]
