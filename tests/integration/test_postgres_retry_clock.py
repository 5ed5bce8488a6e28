"""PostgreSQL's two clocks of one claim: ``now()`` is fixed when its transaction starts, its snapshot later.

The flaky overlap of issue 19 (a retry's ``started_at`` 170 µs before its predecessor's
``finished_at``) came from that gap: the claim's transaction started (``now()`` = T_c),
a finish began after it (``finished_at`` = T_f > T_c) and committed before the claim took
its snapshot, and the retry was already due because the worker had set ``retry_at`` by its
own clock, earlier than T_c. Here the gap is made wide on purpose: the claim statement runs
in a transaction opened before the finish, as a claim planned (Bind) before the finish and
executed (snapshot) after it would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from scanq.ids import new_scan_id
from scanq.models import Finish, Lease, NewScan, Outcome, ScanStatus
from scanq.store.postgres import PostgresStore
from scanq.store.postgres.statements import CLAIM

LEASE_S = 30.0


async def test_a_claim_whose_now_precedes_the_finish_cannot_take_the_retry(postgres_database_url: str) -> None:
    async with PostgresStore(postgres_database_url) as store:
        created = await store.create(scan=NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)))
        [first] = await store.claim(worker_id="w1", limit=1, lease_s=LEASE_S)
        lease = Lease(scan_id=first.scan_id, worker_id="w1", attempt=first.attempt)
        claimer = await asyncpg.connect(postgres_database_url)
        try:
            async with claimer.transaction():  # READ COMMITTED: each statement takes a fresh snapshot
                claim_now = await claimer.fetchval("SELECT now()")
                lagging_retry_at = claim_now - timedelta(seconds=1)  # a worker clock behind the server's
                applied = await store.finish(
                    finishes=[Finish(lease=lease, outcome=Outcome.RETRY, error="flaky", retry_at=lagging_retry_at)]
                )
                early = await claimer.fetch(CLAIM, "w2", 1, LEASE_S)  # sees the retry; its now() is claim_now
        finally:
            await claimer.close()
        waiting = await store.get(scan_id=created.scan.scan_id)
        later = await store.claim(worker_id="w2", limit=1, lease_s=LEASE_S)

    assert applied == [True]
    finished_at = waiting.history[0].finished_at
    assert finished_at is not None and finished_at > claim_now
    # Due at the finish, which is after this claim's now(): not claimable to it (it would start before it).
    assert [(row["started_at"], finished_at) for row in early] == []
    assert waiting.available_at == finished_at
    [second] = later
    assert (second.status, second.attempt) == (ScanStatus.RUNNING, 2)
    assert second.history[1].started_at >= finished_at
